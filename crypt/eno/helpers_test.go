package eno

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// TEP identifiers used in tests. They are tcpcrypt's numbers, but the fake
// policy below knows nothing of tcpcrypt.
const (
	tepP256   byte = 0x21
	tepP521   byte = 0x22
	tepX25519 byte = 0x23
	tepX448   byte = 0x24
)

// fakePolicy is a tiny TEPPolicy: it accepts TEPs 0x21-0x24, each listed
// once by each side, with v = 0 only (unless acceptV). Answer picks the most
// preferred of prefs (increasing preference) that A offered and returns it
// alone, with v = 0 — or answer verbatim if set.
type fakePolicy struct {
	prefs   []byte
	acceptV bool
	answer  []Suboption // if non-nil: returned by Answer as is
	none    bool        // Answer returns nothing

	answers int // Answer calls
	lastA   SYNOption
	valids  []byte // TEPs Valid was asked about, in order
	reject  map[byte]bool
}

func newFakePolicy() *fakePolicy {
	return &fakePolicy{prefs: []byte{tepP521, tepP256, tepX448, tepX25519}}
}

func (p *fakePolicy) Answer(a SYNOption) []Suboption {
	p.answers++
	p.lastA = a
	if p.none {
		return nil
	}
	if p.answer != nil {
		return p.answer
	}
	for i := len(p.prefs) - 1; i >= 0; i-- {
		if containsTEP(a.Subs, p.prefs[i]) {
			return []Suboption{{TEP: p.prefs[i]}}
		}
	}
	return nil
}

func (p *fakePolicy) Valid(tep byte, a, b []Suboption) bool {
	p.valids = append(p.valids, tep)
	if tep < tepP256 || tep > tepX448 || p.reject[tep] || len(a) != 1 || len(b) != 1 {
		return false
	}
	if !p.acceptV && (a[0].V || b[0].V) {
		return false
	}
	return true
}

var _ TEPPolicy = (*fakePolicy)(nil)

// h decodes hex with optional spaces; it panics on bad test input only.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Other options used to build realistic options areas.
var (
	optMSS    = h("02 04 05 b4")
	optWS     = h("03 03 07")
	optSACKOK = h("04 02")
	optTS     = h("08 0a 00 00 00 01 00 00 00 00")
	optNOP    = []byte{kindNOP}
)

// area concatenates options into a TCP options area.
func area(opts ...[]byte) []byte {
	var a []byte
	for _, o := range opts {
		a = append(a, o...)
	}
	return a
}

// synArea is a typical SYN's options area with the ENO option opt (nil for
// none): MSS, SACK-permitted, NOP, window scale, then ENO.
func synArea(opt []byte) []byte { return area(optMSS, optSACKOK, optNOP, optWS, opt) }

// ackArea is a typical non-SYN options area: NOP, NOP, timestamps, then opt.
func ackArea(opt []byte) []byte { return area(optNOP, optNOP, optTS, opt) }

// seg is one segment in flight between two negotiators.
type seg struct {
	syn, ack bool
	opt      []byte // the ENO option the sender attached (nil: none)
}

func (s seg) area() []byte {
	if s.syn {
		return synArea(s.opt)
	}
	return ackArea(s.opt)
}

// send asks from for the option of a segment with flags syn/ack.
func send(from *Negotiator, syn, ack bool) seg {
	return seg{syn: syn, ack: ack, opt: from.Outgoing(syn, ack)}
}

// deliver hands s to to, as received (payload 0).
func deliver(to *Negotiator, s seg) {
	to.Incoming(s.syn, s.ack, s.area(), 0)
}

// xfer sends a segment from one negotiator to the other and returns it.
func xfer(from, to *Negotiator, syn, ack bool) seg {
	s := send(from, syn, ack)
	deliver(to, s)
	return s
}

func wantOpt(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var w []byte
	if want != "" {
		w = h(want)
	}
	if !bytes.Equal(got, w) || (got == nil) != (w == nil) {
		t.Fatalf("%s: option = % x, want % x", what, got, w)
	}
}

func wantState(t *testing.T, who string, n *Negotiator, want State) {
	t.Helper()
	if got := n.State(); got != want {
		_, err := n.Result()
		t.Fatalf("%s: state = %v, want %v (result err: %v)", who, got, want, err)
	}
}

func wantFallback(t *testing.T, who string, n *Negotiator, want Reason) {
	t.Helper()
	wantState(t, who, n, StateDisabled)
	_, err := n.Result()
	fe, ok := err.(*FallbackError)
	if !ok {
		t.Fatalf("%s: Result error = %v (%T), want *FallbackError", who, err, err)
	}
	if fe.Reason != want {
		t.Fatalf("%s: fallback reason = %v (%s), want %v", who, fe.Reason, fe.Detail, want)
	}
}

func mustResult(t *testing.T, who string, n *Negotiator) Result {
	t.Helper()
	wantState(t, who, n, StateEnabled)
	r, err := n.Result()
	if err != nil {
		t.Fatalf("%s: Result: %v", who, err)
	}
	return r
}

// activeCfg is an opportunistic active opener offering offer (v = 0).
func activeCfg(p TEPPolicy, offer ...byte) Config {
	c := Config{Policy: p}
	for _, t := range offer {
		c.Offer = append(c.Offer, Suboption{TEP: t})
	}
	return c
}
