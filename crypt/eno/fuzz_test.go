package eno

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseSYNForm: ParseSYNForm never panics; what parses re-encodes (from
// the parsed fields, z bits cleared) into an option no longer than the
// original that parses to the same fields.
func FuzzParseSYNForm(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.opt)
	}
	f.Fuzz(func(t *testing.T, opt []byte) {
		o, err := ParseSYNForm(opt)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason == parseNone || pe.Offset < 0 || pe.Offset > len(opt) {
				t.Fatalf("bad error %v (%T)", err, err)
			}
			return
		}
		if !bytes.Equal(o.Raw, opt) {
			t.Fatal("Raw differs from input")
		}
		for _, s := range o.Subs {
			if s.TEP < firstTEP || s.TEP >= vBit || (!s.V && s.Data != nil) {
				t.Fatalf("bad suboption %+v", s)
			}
		}
		g := o.Global &^ globalZBits
		enc, err := AppendSYNForm(nil, g, o.HasGlobal, o.Subs)
		if err != nil {
			if errors.Is(err, ErrTooLong) && len(opt) > MaxOptionLen {
				return
			}
			t.Fatalf("re-encode of % x (%+v): %v", opt, o, err)
		}
		if len(enc) > len(opt) {
			t.Fatalf("re-encoding % x longer than original % x", enc, opt)
		}
		o2, err := ParseSYNForm(enc)
		if err != nil {
			t.Fatalf("re-parse of % x: %v", enc, err)
		}
		if o2.HasGlobal != o.HasGlobal || o2.Global != g || !subsEqual(o2.Subs, o.Subs) {
			t.Fatalf("re-parse %+v != %+v", o2, o)
		}
	})
}

// FuzzOptions: Options never panics, and every option it returns is a
// whole kind-69 option lying inside the area, in order, without overlap.
func FuzzOptions(f *testing.F) {
	for _, tc := range optionsCases {
		f.Add(tc.area)
	}
	f.Fuzz(func(t *testing.T, a []byte) {
		enos, legacy, err := Options(a)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason < ParseAreaTooLong {
				t.Fatalf("bad error %v", err)
			}
		}
		if len(a) > maxAreaLen && (err == nil || enos != nil || legacy) {
			t.Fatal("over-long area scanned")
		}
		next := 0
		for _, e := range enos {
			if len(e) < 2 || e[0] != Kind || int(e[1]) != len(e) {
				t.Fatalf("bad ENO option % x", e)
			}
			off := -1
			for i := next; i+len(e) <= len(a); i++ {
				if &a[i] == &e[0] {
					off = i
					break
				}
			}
			if off < 0 {
				t.Fatalf("option % x not inside the area after offset %d", e, next)
			}
			next = off + len(e)
		}
	})
}

// endpoint is one side of FuzzNegotiator's world plus what an observer on
// the wire knows about it.
type endpoint struct {
	n       *Negotiator
	passive bool
	off     bool

	synOpt     []byte // first SYN-form option it sent
	sentACKENO bool   // it sent an ACK segment carrying ENO
	rcvdACKENO bool   // it received an ACK segment carrying a kind-69 option
	rcvdSYNENO bool   // it received a SYN carrying a kind-69 option
	last       State
}

func fuzzOffer(v uint16) []Suboption {
	switch v & 3 {
	case 0:
		return subs(tepP256, tepX25519)
	case 1:
		return nil
	case 2:
		return []Suboption{{TEP: tepX25519, V: true, Data: h("01 02 03 04 05 06 07 08 09 0a")}, {TEP: tepP256}}
	}
	return subs(0x30, tepX448)
}

func newEndpoint(cfg uint16, passive, setB, aware, mandatory bool, mode uint16, acceptV bool, offer uint16) *endpoint {
	p := newFakePolicy()
	p.acceptV = acceptV
	c := Config{Mode: Mode(mode % 3), SetB: setB, AppAware: aware, MandatoryAppAware: mandatory, Policy: p}
	e := &endpoint{passive: passive, off: c.Mode == ModeOff}
	if passive {
		if offer&3 == 3 {
			p.answer = subs(tepP521, tepP256, tepX25519) // several, in preference order
		}
		e.n = NewPassive(c)
	} else {
		c.Offer = fuzzOffer(offer)
		e.n = NewActive(c)
	}
	e.last = e.n.State()
	return e
}

// FuzzNegotiator drives two negotiators (active/passive or two active
// openers) with a script of segments over a channel that may drop, strip,
// duplicate, loop back or rewrite ENO options, and checks after every step
// that no ENO rule is broken; in particular, Enabled is never reported
// unless that side both sent and received an ACK segment carrying ENO.
func FuzzNegotiator(f *testing.F) {
	const passiveB = 1 // cfg bit 0: second endpoint is a passive opener
	for _, s := range []struct {
		cfg    uint16
		script []byte
	}{
		{passiveB, []byte{0x00, 0x03, 0x04, 0x05, 0x04}},                       // Figure 9
		{passiveB, []byte{0x00, 0x03 | 4<<3, 0x04, 0x05}},                      // Figure 11: SYN-ACK stripped
		{passiveB, []byte{0x00 | 4<<3, 0x03, 0x04}},                            // SYN stripped
		{passiveB, []byte{0x00, 0x03, 0x04 | 4<<3, 0x05}},                      // third segment stripped
		{passiveB, []byte{0x00, 0x00, 0x03, 0x03, 0x04 | 0x80, 0x05}},          // retransmissions
		{passiveB, []byte{0x00 | 6<<3, 0x00, 0x03, 0x04}},                      // looped back SYN
		{passiveB, []byte{0x00, 0x03 | 7<<3, 4, 0x45, 0x04, 0x01, 0x23, 0x04}}, // rewritten SYN-ACK
		{passiveB | 1<<3 | 1<<6, []byte{0x00, 0x03, 0x04}},                     // app-aware
		{passiveB | 1<<4, []byte{0x00, 0x03, 0x04}},                            // mandatory, peer a=0
		{passiveB | 1<<12, []byte{0x00, 0x03, 0x04}},                           // vacuous offer
		{passiveB | 3<<14, []byte{0x00, 0x03, 0x04}},                           // several TEPs from B
		{passiveB | 1<<7, []byte{0x00, 0x03, 0x04}},                            // A off
		{1 << 2, []byte{0x00, 0x01, 0x00, 0x02, 0x03, 0x05, 0x04}},             // Figure 12
		{0, []byte{0x00, 0x01, 0x00, 0x02, 0x03, 0x02}},                        // simultaneous, same b
		{passiveB | 1<<11 | 2<<12, []byte{0x00 | 0x40, 0x03, 0x04, 0x06}},      // v=1 data, SYN payload
	} {
		f.Add(s.cfg, s.script)
	}
	f.Fuzz(func(t *testing.T, cfg uint16, script []byte) {
		bit := func(i uint) bool { return cfg>>i&1 == 1 }
		acceptV := bit(11)
		eps := [2]*endpoint{
			newEndpoint(cfg, false, bit(1), bit(3), bit(4), cfg>>7&3, acceptV, cfg>>12),
			newEndpoint(cfg, bit(0), bit(2), bit(5), bit(6), cfg>>9&3, acceptV, cfg>>14),
		}
		tampered := false
		for i := 0; i < len(script); i++ {
			op := script[i]
			from, to := eps[op&1], eps[op&1^1]
			kind := op >> 1 & 3
			syn, ack := kind <= 1, kind == 1 || kind == 2
			opt := from.n.Outgoing(syn, ack)
			checkOutgoing(t, from, syn, ack, opt)

			switch op >> 3 & 7 {
			case 3: // dropped
				continue
			case 4: // option stripped
				opt = nil
			case 5: // option duplicated
				if opt != nil {
					opt = append(cloneBytes(opt), opt...)
				}
			case 6: // looped back to the sender (an echoing middlebox)
				to = from
				tampered = true
			case 7: // option rewritten with script bytes
				tampered = true
				if i+1 < len(script) {
					n := int(script[i+1])
					i++
					end := min(i+1+n, len(script))
					opt = cloneBytes(script[i+1 : end])
					i = end - 1
				}
			}
			var a []byte
			if syn {
				a = synArea(opt)
			} else {
				a = ackArea(opt)
			}
			if len(a) > maxAreaLen {
				a = opt // still exercises the error paths when too long
			}
			payload := 0
			if op&0x40 != 0 {
				payload = 100
			}
			enos, _, _ := Options(a)
			times := 1 + int(op>>7)
			for range times {
				if ack && len(enos) > 0 {
					to.rcvdACKENO = true
				}
				if syn && len(enos) > 0 {
					to.rcvdSYNENO = true
				}
				discard := to.n.Incoming(syn, ack, a, payload)
				if syn && payload > 0 && len(enos) > 0 && !discard {
					t.Fatal("ENO-25: SYN+ENO data not discarded")
				}
				if (!syn || payload == 0) && discard {
					t.Fatal("discard outside SYN data")
				}
			}
			for _, e := range eps {
				checkEndpoint(t, e)
			}
		}
		// Without tampering, two enabled sides agree on everything.
		if eps[0].last == StateEnabled && eps[1].last == StateEnabled && !tampered {
			r0, _ := eps[0].n.Result()
			r1, _ := eps[1].n.Result()
			if r0.TEP != r1.TEP || r0.TEPByte != r1.TEPByte || !bytes.Equal(r0.Transcript, r1.Transcript) || r0.Role == r1.Role {
				t.Fatalf("sides disagree: %+v vs %+v", r0, r1)
			}
		}
	})
}

func checkOutgoing(t *testing.T, e *endpoint, syn, ack bool, opt []byte) {
	t.Helper()
	if opt == nil {
		return
	}
	if e.off {
		t.Fatalf("ModeOff sent % x", opt)
	}
	if !syn {
		if !bytes.Equal(opt, NonSYNForm) {
			t.Fatalf("ENO-3/4: non-SYN option % x", opt)
		}
		if e.last == StateDisabled {
			t.Fatal("ENO-19: non-SYN ENO after fallback")
		}
	} else {
		o, err := ParseSYNForm(opt)
		if err != nil {
			t.Fatalf("ENO-3: SYN option % x does not parse: %v", opt, err)
		}
		if e.synOpt == nil {
			e.synOpt = cloneBytes(opt)
		} else if !bytes.Equal(opt, e.synOpt) {
			t.Fatalf("ENO-20: SYN option changed from % x to % x", e.synOpt, opt)
		}
		if e.passive {
			if !ack {
				t.Fatal("passive opener sent a SYN-only option")
			}
			if !e.rcvdSYNENO {
				t.Fatal("ENO-22: passive opener sent ENO without receiving a SYN with ENO")
			}
			if !o.HasGlobal || !o.B() {
				t.Fatal("ENO-12/14: passive opener's option without explicit b = 1")
			}
		}
		if e.last == StateDisabled && !(e.passive && o.Vacuous()) {
			t.Fatalf("ENO-19: SYN option % x after fallback", opt)
		}
	}
	if ack {
		e.sentACKENO = true
	}
}

func checkEndpoint(t *testing.T, e *endpoint) {
	t.Helper()
	st := e.n.State()
	if e.last != StateNegotiating && st != e.last {
		t.Fatalf("state went from %v to %v", e.last, st)
	}
	e.last = st
	r, err := e.n.Result()
	switch st {
	case StateEnabled:
		if !e.sentACKENO || !e.rcvdACKENO {
			t.Fatalf("ENO-21: enabled with sentACKENO=%v rcvdACKENO=%v", e.sentACKENO, e.rcvdACKENO)
		}
		if err != nil || len(r.ASubs) == 0 || len(r.BSubs) == 0 || r.TEP < firstTEP || r.TEP >= vBit || r.TEPByte&^vBit != r.TEP {
			t.Fatalf("bad result %+v, %v", r, err)
		}
		la := int(r.Transcript[1])
		if _, err := ParseSYNForm(r.Transcript[:la]); err != nil {
			t.Fatalf("transcript A part: %v", err)
		}
		if _, err := ParseSYNForm(r.Transcript[la:]); err != nil {
			t.Fatalf("transcript B part: %v", err)
		}
	case StateDisabled:
		var fe *FallbackError
		if !errors.As(err, &fe) || fe.Reason == ReasonNone {
			t.Fatalf("disabled without a reason: %v", err)
		}
	default:
		if !errors.Is(err, ErrPending) {
			t.Fatalf("negotiating but Result says %v", err)
		}
	}
}
