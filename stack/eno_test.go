package stack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

func families() []struct {
	name string
	v6   bool
} {
	return []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}}
}

// ENO-3, ENO-14, ENO-18, ENO-21, ENO-33, TC-2: ENO appears on the wire exactly
// where RFC 8547 §4.6 puts it, both ends agree on the session ID, and the
// application's plaintext never crosses the wire.
func TestENO18_OptionPlacementAndEncryption(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name, func(t *testing.T) {
			p := newPair(t, pairOpts{})
			client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
			checkEncrypted(t, client, server)

			marker := "PLAINTEXT-MARKER-" + fam.name + "-"
			msgAB := pattern(200<<10, marker+"a->b|")
			msgBA := pattern(100<<10, marker+"b->a|")
			exchange(t, client, server, msgAB, msgBA)

			ab, ba := p.capAB.Segments(), p.capBA.Segments()
			logSegments(t, "a->b", ab, 6)
			logSegments(t, "b->a", ba, 6)
			checkENOPlacement(t, ab, ba)
			for _, c := range []struct {
				name string
				segs []wiretest.CapturedSegment
			}{{"a->b", ab}, {"b->a", ba}} {
				var wire []byte
				for _, s := range c.segs {
					wire = append(wire, s.Payload...)
				}
				if len(wire) < 100<<10 {
					t.Errorf("%s: only %d payload bytes captured", c.name, len(wire))
				}
				if bytes.Contains(wire, []byte(marker)) {
					t.Errorf("%s: plaintext marker found on the wire (ENO-21)", c.name)
				}
			}
			if got := p.a.Counters().Enabled.Load(); got != 1 {
				t.Errorf("a: enabled = %d", got)
			}
			if got := p.b.Counters().Enabled.Load(); got != 1 {
				t.Errorf("b: enabled = %d", got)
			}
		})
	}
}

// logSegments logs the first n segments: flags, ENO options, payload size.
func logSegments(t *testing.T, name string, segs []wiretest.CapturedSegment, n int) {
	t.Helper()
	for i, s := range segs[:min(n, len(segs))] {
		t.Logf("%s #%d %v seq=%d ack=%d eno=% x payload=%d", name, i, s.Flags, s.Seq, s.Ack, s.ENO(), len(s.Payload))
	}
}

// checkEncrypted asserts both ends run tcpcrypt with one session ID and
// opposite roles.
func checkEncrypted(t *testing.T, client, server *Conn) {
	t.Helper()
	cid, err := client.SessionID()
	if err != nil {
		t.Fatalf("client SessionID: %v (negotiation %+v)", err, client.Negotiation())
	}
	sid, err := server.SessionID()
	if err != nil {
		t.Fatalf("server SessionID: %v (negotiation %+v)", err, server.Negotiation())
	}
	if len(cid) < 33 || !bytes.Equal(cid, sid) {
		t.Fatalf("session IDs differ or short:\n%x\n%x", cid, sid)
	}
	cn, sn := client.Negotiation(), server.Negotiation()
	if !cn.Encrypted || !sn.Encrypted || cn.Role != eno.RoleA || sn.Role != eno.RoleB {
		t.Fatalf("negotiation: client %+v server %+v", cn, sn)
	}
	if cn.TEP != sn.TEP || cn.AEAD != sn.AEAD || cid[0]&0x7f != byte(cn.TEP) {
		t.Fatalf("TEP/AEAD mismatch: client %v/%v server %v/%v sid[0]=%#x", cn.TEP, cn.AEAD, sn.TEP, sn.AEAD, cid[0])
	}
}

// checkENOPlacement applies RFC 8547 §4.6 to a captured handshake between
// active opener a and passive opener b (one connection per capture).
func checkENOPlacement(t *testing.T, ab, ba []wiretest.CapturedSegment) {
	t.Helper()
	if len(ab) == 0 || len(ba) == 0 {
		t.Fatal("nothing captured")
	}
	// SYN-only from a: one SYN-form option, b = 0 (no global or b clear).
	syn := ab[0]
	if !syn.SYNOnly() {
		t.Fatalf("first a->b segment is not a SYN: %v", syn.Flags)
	}
	enos := syn.ENO()
	if len(enos) != 1 {
		t.Fatalf("SYN carries %d ENO options (ENO-5)", len(enos))
	}
	o, err := eno.ParseSYNForm(enos[0])
	if err != nil || o.B() || o.Vacuous() {
		t.Fatalf("SYN ENO % x: %v b=%v vacuous=%v", enos[0], err, o.B(), o.Vacuous())
	}
	// ENO-23: no data in a SYN+ENO segment (tcpcrypt defines no SYN data);
	// ENO-24: no TCP Fast Open option (kind 34) next to ENO.
	for _, s := range append(append([]wiretest.CapturedSegment{}, ab...), ba...) {
		if s.SYN() && (len(s.Payload) != 0 || len(wiretest.OptionsOfKind(s.Options, 34)) != 0) {
			t.Fatalf("SYN with %d data bytes / TFO option", len(s.Payload))
		}
	}
	// SYN-ACK from b: SYN-form with an explicit global suboption, b = 1
	// (ENO-12, ENO-14), one TEP (ENO-16).
	var synack *wiretest.CapturedSegment
	for i := range ba {
		if ba[i].SYNACK() {
			synack = &ba[i]
			break
		}
	}
	if synack == nil {
		t.Fatal("no SYN-ACK captured")
	}
	enos = synack.ENO()
	if len(enos) != 1 {
		t.Fatalf("SYN-ACK carries %d ENO options", len(enos))
	}
	ob, err := eno.ParseSYNForm(enos[0])
	if err != nil || !ob.HasGlobal || !ob.B() || len(ob.Subs) != 1 {
		t.Fatalf("SYN-ACK ENO % x: %v", enos[0], err)
	}
	// Third segment: the first non-SYN from a carries exactly 45 02
	// (ENO-4, ENO-18).
	var aNonSYN []wiretest.CapturedSegment
	for _, s := range ab {
		if !s.SYN() {
			aNonSYN = append(aNonSYN, s)
		}
	}
	if len(aNonSYN) == 0 {
		t.Fatal("no non-SYN segment from a")
	}
	if e := aNonSYN[0].ENO(); len(e) != 1 || !bytes.Equal(e[0], eno.NonSYNForm) {
		t.Fatalf("third segment ENO = % x, want 45 02", e)
	}
	// a's non-SYN segments carrying ENO form a prefix (ENO stops once a
	// non-SYN segment from b arrived), and it does stop.
	stopped := false
	for i, s := range aNonSYN {
		e := s.ENO()
		switch {
		case len(e) > 0 && stopped:
			t.Fatalf("a->b non-SYN segment %d carries ENO after one without", i)
		case len(e) > 0 && !bytes.Equal(e[0], eno.NonSYNForm):
			t.Fatalf("a->b non-SYN segment %d ENO = % x", i, e[0])
		case len(e) == 0:
			stopped = true
		}
	}
	if !stopped {
		t.Fatal("a never stopped sending non-SYN ENO")
	}
	// b, the passive opener, received a's third segment before it sent any
	// non-SYN segment: none of them carries ENO. With the checks above, the
	// SYN form appears only in SYNs and the non-SYN form only in non-SYN
	// segments (ENO-3).
	for i, s := range ba {
		if !s.SYN() && len(s.ENO()) > 0 {
			t.Fatalf("b->a non-SYN segment %d carries ENO % x", i, s.ENO())
		}
	}
}

// A peer stack without the shim is a host without ENO: plain TCP, data
// intact, the reason recorded on our side (ENO-19).
func TestENO19_PeerWithoutENO(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name+"/we-dial", func(t *testing.T) {
			p := newPair(t, pairOpts{b: func(o *Options) { o.NoENO = true }})
			client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
			checkPlain(t, client, eno.ReasonNoENO)
			checkPlain(t, server, eno.ReasonLocal)
			exchange(t, client, server, pattern(50<<10, "x"), pattern(10<<10, "y"))
			if got := p.a.Counters().Fallback(eno.ReasonNoENO); got != 1 {
				t.Errorf("a: fallback no-eno = %d", got)
			}
			for _, s := range p.capBA.Segments() {
				if len(s.ENO()) > 0 {
					t.Fatal("plain peer sent ENO")
				}
			}
			// A host that disabled ENO sends no more ENO (ENO-19): a's
			// non-SYN segments carry none.
			for _, s := range p.capAB.Segments() {
				if !s.SYN() && len(s.ENO()) > 0 {
					t.Fatal("a sent non-SYN ENO after fallback")
				}
			}
		})
		t.Run(fam.name+"/they-dial", func(t *testing.T) {
			p := newPair(t, pairOpts{a: func(o *Options) { o.NoENO = true }})
			client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
			checkPlain(t, server, eno.ReasonNoENO)
			exchange(t, client, server, pattern(10<<10, "x"), pattern(50<<10, "y"))
			// ENO-22: a passive opener sends no ENO (not even vacuous) when
			// the SYN carried none.
			for _, s := range p.capBA.Segments() {
				if len(s.ENO()) > 0 {
					t.Fatalf("b sent ENO % x to a peer whose SYN had none", s.ENO())
				}
			}
		})
	}
}

func checkPlain(t *testing.T, c *Conn, reason eno.Reason) {
	t.Helper()
	n := c.Negotiation()
	if n.Encrypted || c.Encrypted() {
		t.Fatalf("connection encrypted: %+v", n)
	}
	if n.Reason != reason {
		t.Fatalf("reason = %v (%s), want %v", n.Reason, n.Detail, reason)
	}
	if _, err := c.SessionID(); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("SessionID on a plain conn: %v (ENO-33)", err)
	}
}

// ENO-19 (Figure 11 of RFC 8547): ENO stripped from one direction only
// makes both ends fall back, consistently, and data stays intact.
func TestENO19_StrippedOneWay(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name+"/synack", func(t *testing.T) {
			p := newPair(t, pairOpts{hookBA: wiretest.StripENOWhen(wiretest.Segment.SYNACK)})
			client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
			checkPlain(t, client, eno.ReasonNoENO)
			checkPlain(t, server, eno.ReasonStripped)
			exchange(t, client, server, pattern(30<<10, "x"), pattern(30<<10, "y"))
			if p.b.Counters().Fallback(eno.ReasonStripped) != 1 || p.a.Counters().Fallback(eno.ReasonNoENO) != 1 {
				t.Errorf("fallback counters: a %v b %v", p.a.Counters().Snapshot(), p.b.Counters().Snapshot())
			}
		})
		t.Run(fam.name+"/syn", func(t *testing.T) {
			p := newPair(t, pairOpts{hookAB: wiretest.StripENOWhen(wiretest.Segment.SYNOnly)})
			client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
			checkPlain(t, client, eno.ReasonNoENO)
			checkPlain(t, server, eno.ReasonNoENO)
			exchange(t, client, server, pattern(30<<10, "x"), pattern(30<<10, "y"))
		})
		t.Run(fam.name+"/third-segment", func(t *testing.T) {
			// Stripping only a's non-SYN ENO: b falls back when the first ACK
			// lacks ENO while a has enabled encryption — the type-2 failure
			// of RFC 8547 §9. The connection must fail, not carry plaintext.
			p := newPair(t, pairOpts{hookAB: wiretest.StripENOWhen(func(s wiretest.Segment) bool { return !s.SYN() })})
			l, err := p.b.Listen(netip.Addr{}, 81, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			dst := addrB4
			if fam.v6 {
				dst = addrB6
			}
			ctx := ctxT(t)
			go func() {
				if c, err := l.AcceptConn(ctx); err == nil {
					// b thinks the connection is plain; the handshake bytes it
					// reads are not plaintext of a's application.
					c.Write([]byte("plain answer from b"))
					c.Close()
				}
			}()
			c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 81), &Policy{Default: eno.ModeOpportunistic})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded although b fell back")
			}
			t.Logf("dial failed as expected: %v", err)
		})
	}
}

// Policy "required" refuses a connection ENO cannot protect, at either end.
func TestRequiredRefused(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name+"/dialer", func(t *testing.T) {
			p := newPair(t, pairOpts{b: func(o *Options) { o.NoENO = true }})
			dst := addrB4
			if fam.v6 {
				dst = addrB6
			}
			l, err := p.b.Listen(dst, 80, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(t)
			accepted := make(chan *Conn, 1)
			go func() {
				c, err := l.AcceptConn(ctx)
				if err == nil {
					accepted <- c
				}
			}()
			_, err = p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 80), &Policy{Default: eno.ModeRequired})
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrENORequired) || re.Reason != eno.ReasonNoENO {
				t.Fatalf("Dial error = %v, want RefusedError(no-eno)", err)
			}
			// The peer sees the connection reset.
			c := <-accepted
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c); err == nil {
				t.Fatal("peer read EOF, want a reset")
			}
			if p.a.Counters().RequiredRefusals.Load() != 1 {
				t.Error("refusal not counted")
			}
		})
		t.Run(fam.name+"/listener", func(t *testing.T) {
			// The SYN already rules encryption out: b refuses it with a RST,
			// as a closed port would, before its stack answers.
			p := newPair(t, pairOpts{a: func(o *Options) { o.NoENO = true }})
			dst := addrB4
			if fam.v6 {
				dst = addrB6
			}
			l, err := p.b.Listen(dst, 80, &Policy{Rules: []Rule{{Prefix: netip.PrefixFrom(dst, dst.BitLen()), Port: 80, Mode: eno.ModeRequired}}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(t)
			c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 80), nil)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), "refused") {
				t.Fatalf("Dial error = %v, want connection refused", err)
			}
			if p.b.Counters().RequiredRefusals.Load() != 1 || p.b.Flows() != 0 {
				t.Errorf("b: refusals %d, flows %d", p.b.Counters().RequiredRefusals.Load(), p.b.Flows())
			}
		})
		t.Run(fam.name+"/listener-after-handshake", func(t *testing.T) {
			// ENO stripped from a's third segment only: b learns that
			// encryption failed after the TCP handshake and resets.
			p := newPair(t, pairOpts{hookAB: wiretest.StripENOWhen(func(s wiretest.Segment) bool { return !s.SYN() })})
			dst := addrB4
			if fam.v6 {
				dst = addrB6
			}
			l, err := p.b.Listen(dst, 80, &Policy{Default: eno.ModeRequired})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(t)
			c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 80), nil)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			for p.b.Counters().RequiredRefusals.Load() != 1 {
				if ctx.Err() != nil {
					t.Fatal("refusal not counted")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// ENO-21 / RFC 8548 §3.6: a bit flipped in the encrypted stream (with the
// TCP checksum fixed, as an on-path attacker would) makes the receiver fail
// with tcpcrypt.ErrAuth, delivering none of the corrupted frame, and the
// connection is aborted.
func TestFlippedBitErrAuth(t *testing.T) {
	for _, fam := range families() {
		for _, dir := range []string{"a->b", "b->a"} {
			t.Run(fam.name+"/"+dir, func(t *testing.T) {
				var armed atomic.Bool
				flip := wiretest.FlipPayloadBit(func(wiretest.Segment) bool { return armed.Load() }, 40, 3)
				po := pairOpts{hookAB: flip}
				if dir == "b->a" {
					po = pairOpts{hookBA: flip}
				}
				p := newPair(t, po)
				client, server := dialAccept(t, p, fam.v6, 80, nil, nil)
				checkEncrypted(t, client, server)
				sender, receiver := client, server
				if dir == "b->a" {
					sender, receiver = server, client
				}
				first := pattern(1000, "clean-")
				if _, err := sender.Write(first); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(first))
				if _, err := io.ReadFull(receiver, got); err != nil || !bytes.Equal(got, first) {
					t.Fatalf("clean frame: %v", err)
				}
				armed.Store(true)
				if _, err := sender.Write(pattern(5000, "tampered-")); err != nil {
					t.Fatal(err)
				}
				receiver.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := io.ReadFull(receiver, make([]byte, 5000))
				if !errors.Is(err, tcpcrypt.ErrAuth) {
					t.Fatalf("receiver: %d bytes, err %v, want ErrAuth", n, err)
				}
				if n != 0 {
					t.Fatalf("receiver got %d bytes of the corrupted frame", n)
				}
				// The receiver aborted: the sender sees the connection fail.
				sender.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = sender.Read(make([]byte, 10))
				if err == nil || errors.Is(err, io.EOF) {
					t.Fatalf("sender read after abort: %v, want an error distinct from EOF", err)
				}
				t.Logf("sender: %v", err)
			})
		}
	}
}

// Both ends fail with ErrAuth when frames are corrupted in both directions.
func TestFlippedBitBothWays(t *testing.T) {
	var armedAB, armedBA atomic.Bool
	p := newPair(t, pairOpts{
		hookAB: wiretest.FlipPayloadBit(func(wiretest.Segment) bool { return armedAB.Load() }, 30, 0),
		hookBA: wiretest.FlipPayloadBit(func(wiretest.Segment) bool { return armedBA.Load() }, 30, 0),
	})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
	// Hold b's frame back until a's corrupted frame was read by b: each
	// side writes only after arming its own link, then both read.
	armedAB.Store(true)
	armedBA.Store(true)
	// Both corrupted frames go out before either end reads: an end that
	// read its corrupted frame first aborts at once, and could not send
	// its own any more.
	for _, c := range []*Conn{client, server} {
		if _, err := c.Write(pattern(100, fmt.Sprintf("%p", c))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // each frame reaches the other end's receive buffer
	errs := make(chan error, 2)
	for _, c := range []*Conn{client, server} {
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.ReadFull(c, make([]byte, 100))
			errs <- err
		}()
	}
	auth := 0
	for range 2 {
		err := <-errs
		if errors.Is(err, tcpcrypt.ErrAuth) {
			auth++
		} else {
			t.Logf("read error: %v", err)
		}
	}
	if auth != 2 {
		t.Fatalf("%d of 2 ends failed with ErrAuth", auth)
	}
}
