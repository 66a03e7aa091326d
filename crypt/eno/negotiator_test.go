package eno

import (
	"bytes"
	"errors"
	"testing"
)

// ENO-17, ENO-18, ENO-21, ENO-31: RFC 8547 Figure 9 (§6) rendered in bytes:
// A offers P-256 and X25519, B picks X25519.
func TestFigure9SuccessfulHandshake(t *testing.T) {
	pa, pb := newFakePolicy(), newFakePolicy()
	a := NewActive(activeCfg(pa, tepP256, tepX25519))
	b := NewPassive(Config{Policy: pb})

	// (1) A -> B SYN ENO<X,Y>: implicit global 0x00 (ENO-12: b defaults to 0).
	s1 := xfer(a, b, true, false)
	wantOpt(t, "A SYN", s1.opt, "45 04 21 23")
	wantState(t, "B after SYN", b, StateNegotiating)
	if pb.answers != 1 || !bytes.Equal(pb.lastA.Raw, h("45 04 21 23")) {
		t.Fatalf("Answer calls %d with %+v", pb.answers, pb.lastA)
	}
	// (2) B -> A SYN-ACK ENO<b=1,Y> (ENO-14: explicit global with b = 1;
	// ENO-16: one TEP).
	s2 := xfer(b, a, true, true)
	wantOpt(t, "B SYN-ACK", s2.opt, "45 04 01 23")
	// A has received an ACK with ENO but not yet sent one (ENO-21).
	wantState(t, "A after SYN-ACK", a, StateNegotiating)
	wantState(t, "B after sending SYN-ACK", b, StateNegotiating)
	if _, err := b.Result(); !errors.Is(err, ErrPending) {
		t.Fatalf("B Result before third segment: %v", err)
	}
	// (3) A -> B ACK ENO<> (ENO-18: the third segment carries 45 02).
	s3 := send(a, false, true)
	wantOpt(t, "A ACK", s3.opt, "45 02")
	wantState(t, "A after sending ACK", a, StateEnabled)
	wantState(t, "B before third segment", b, StateNegotiating)
	deliver(b, s3)
	wantState(t, "B after ACK", b, StateEnabled)

	ra, rb := mustResult(t, "A", a), mustResult(t, "B", b)
	// ENO-31: transcript = A's option || B's option, raw.
	wantTranscript := h("45 04 21 23 45 04 01 23")
	for _, r := range []Result{ra, rb} {
		if r.TEP != tepX25519 || r.TEPByte != 0x23 {
			t.Errorf("TEP %#x byte %#x", r.TEP, r.TEPByte)
		}
		if !bytes.Equal(r.Transcript, wantTranscript) {
			t.Errorf("transcript % x, want % x", r.Transcript, wantTranscript)
		}
		if !subsEqual(r.ASubs, []Suboption{{TEP: 0x23}}) || !subsEqual(r.BSubs, []Suboption{{TEP: 0x23}}) {
			t.Errorf("ASubs %+v BSubs %+v", r.ASubs, r.BSubs)
		}
		if r.PeerAppAware {
			t.Error("PeerAppAware without a bits")
		}
	}
	if ra.Role != RoleA || rb.Role != RoleB || a.Role() != RoleA || b.Role() != RoleB {
		t.Errorf("roles %v %v", ra.Role, rb.Role)
	}

	// ENO-18: A keeps sending 45 02 (e.g. Init1, retransmissions) until it
	// receives a non-SYN segment; B received one already and sends none.
	wantOpt(t, "A data 1", a.Outgoing(false, true), "45 02")
	wantOpt(t, "A data 2", a.Outgoing(false, true), "45 02")
	wantOpt(t, "B data", b.Outgoing(false, true), "")
	xfer(b, a, false, true) // B's first non-SYN segment (e.g. Init2)
	wantOpt(t, "A after B's data", a.Outgoing(false, true), "")
	wantState(t, "A", a, StateEnabled)
	wantState(t, "B", b, StateEnabled)
}

// ENO-19: Figure 10, the SYN-ACK has no ENO (B lacks ENO, has no common TEP
// and answers nothing, or A's SYN lost its option on the way).
func TestFigure10FailedNegotiation(t *testing.T) {
	t.Run("B-without-ENO", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256, tepX25519))
		send(a, true, false)
		deliver(a, seg{syn: true, ack: true}) // legacy TCP SYN-ACK
		wantFallback(t, "A", a, ReasonNoENO)
		wantOpt(t, "A ACK", a.Outgoing(false, true), "")
		wantOpt(t, "A SYN retransmit", a.Outgoing(true, false), "")
	})
	t.Run("ENO-13-B-mandatory-app-aware-A-a0", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		b := NewPassive(Config{Policy: newFakePolicy(), MandatoryAppAware: true})
		xfer(a, b, true, false)
		wantFallback(t, "B", b, ReasonAppAware)
		s := xfer(b, a, true, true)
		wantOpt(t, "B SYN-ACK", s.opt, "")
		wantFallback(t, "A", a, ReasonNoENO)
		if ap, known := b.PeerAppAware(); ap || !known {
			t.Fatalf("B PeerAppAware = %v, %v", ap, known)
		}
	})
	t.Run("ENO-22-SYN-option-stripped", func(t *testing.T) {
		pb := newFakePolicy()
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		b := NewPassive(Config{Policy: pb})
		send(a, true, false)
		deliver(b, seg{syn: true}) // middlebox stripped the option
		wantFallback(t, "B", b, ReasonNoENO)
		// A passive opener must not send even a vacuous option now.
		wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, "")
		wantOpt(t, "B SYN-ACK retransmit", b.Outgoing(true, true), "")
		if pb.answers != 0 {
			t.Fatal("Answer called for a SYN without ENO")
		}
		wantFallback(t, "A", a, ReasonNoENO)
		if _, known := b.PeerAppAware(); known {
			t.Fatal("peer a bit known without an ENO option")
		}
	})
}

// ENO-19: Figure 11, the network strips ENO from B's SYN-ACK only.
func TestFigure11StrippedSYNACK(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256, tepX25519))
	b := NewPassive(Config{Policy: newFakePolicy()})
	xfer(a, b, true, false)
	s2 := send(b, true, true)
	wantOpt(t, "B SYN-ACK", s2.opt, "45 04 01 23")
	s2.opt = nil // stripped by a middlebox
	deliver(a, s2)
	wantFallback(t, "A", a, ReasonNoENO)
	s3 := xfer(a, b, false, true)
	wantOpt(t, "A ACK", s3.opt, "")
	wantFallback(t, "B", b, ReasonStripped)
	wantOpt(t, "B later", b.Outgoing(false, true), "")
	wantOpt(t, "B SYN-ACK retransmit", b.Outgoing(true, true), "")
}

// ENO-20, ENO-17: RFC 8547 Figure 12, simultaneous open with X = 0x21,
// Y = 0x22, Z = 0x24; B set b = 1 by prior agreement.
func TestFigure12SimultaneousOpen(t *testing.T) {
	const X, Y, Z = tepP256, tepP521, tepX448
	a := NewActive(activeCfg(newFakePolicy(), Y, X))
	bc := activeCfg(newFakePolicy(), X, Y, Z)
	bc.SetB = true // ENO-12: the API to set b = 1 before an active open
	b := NewActive(bc)

	s1 := send(a, true, false) // (1) A -> B SYN ENO<Y,X>
	s2 := send(b, true, false) // (2) B -> A SYN ENO<b=1,X,Y,Z>
	wantOpt(t, "A SYN", s1.opt, "45 04 22 21")
	wantOpt(t, "B SYN", s2.opt, "45 06 01 21 22 24")
	deliver(b, s1)
	deliver(a, s2)
	wantState(t, "A", a, StateNegotiating)
	wantState(t, "B", b, StateNegotiating)
	s3 := send(a, true, true) // (3) A -> B SYN-ACK ENO<Y,X>
	s4 := send(b, true, true) // (4) B -> A SYN-ACK ENO<b=1,X,Y,Z>
	// ENO-20: the SYN-ACK option equals the SYN-only option.
	wantOpt(t, "A SYN-ACK", s3.opt, "45 04 22 21")
	wantOpt(t, "B SYN-ACK", s4.opt, "45 06 01 21 22 24")
	deliver(b, s3)
	deliver(a, s4)
	ra, rb := mustResult(t, "A", a), mustResult(t, "B", b)
	want := h("45 04 22 21 45 06 01 21 22 24")
	for _, r := range []Result{ra, rb} {
		if r.TEP != Y || r.TEPByte != Y || !bytes.Equal(r.Transcript, want) {
			t.Errorf("TEP %#x byte %#x transcript % x", r.TEP, r.TEPByte, r.Transcript)
		}
	}
	if ra.Role != RoleA || rb.Role != RoleB {
		t.Errorf("roles %v %v", ra.Role, rb.Role)
	}
	// Both keep sending 45 02 until a non-SYN segment arrives (ENO-18).
	wantOpt(t, "A ACK", a.Outgoing(false, true), "45 02")
	wantOpt(t, "B ACK", b.Outgoing(false, true), "45 02")
}

// Simultaneous open where A's SYN-ACK is lost: A enables on B's SYN-ACK,
// B on A's next segment, an ACK that still carries 45 02 (ENO-18).
func TestSimultaneousOpenLostSYNACK(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	bc := activeCfg(newFakePolicy(), tepP256)
	bc.SetB = true
	b := NewActive(bc)
	sa, sb := send(a, true, false), send(b, true, false)
	deliver(b, sa)
	deliver(a, sb)
	send(a, true, true) // A's SYN-ACK is lost
	deliver(a, send(b, true, true))
	wantState(t, "A", a, StateEnabled)
	wantState(t, "B", b, StateNegotiating)
	s := xfer(a, b, false, true) // A's ACK: first ACK B receives
	wantOpt(t, "A ACK", s.opt, "45 02")
	wantState(t, "B", b, StateEnabled)
}

// ENO-19 (same b) and ENO-20 (exception: no ENO in the SYN-ACK after a
// fallback in a simultaneous open): both sides kept the default b = 0.
func TestSimultaneousOpenSameRole(t *testing.T) {
	for _, setB := range []bool{false, true} {
		ca, cb := activeCfg(newFakePolicy(), tepP256), activeCfg(newFakePolicy(), tepP256)
		ca.SetB, cb.SetB = setB, setB
		a, b := NewActive(ca), NewActive(cb)
		sa, sb := send(a, true, false), send(b, true, false)
		deliver(b, sa)
		deliver(a, sb)
		wantFallback(t, "A", a, ReasonSameRole)
		wantFallback(t, "B", b, ReasonSameRole)
		wantOpt(t, "A SYN-ACK", a.Outgoing(true, true), "")
		wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")
	}
}

// ENO-12, §8.1: a load balancer echoes A's SYN option back in the SYN-ACK.
func TestEchoedOptionFallsBack(t *testing.T) {
	for _, cfg := range []Config{
		activeCfg(newFakePolicy(), tepP256, tepX25519),
		{Policy: newFakePolicy(), Offer: []Suboption{{TEP: tepX25519}}, AppAware: true},
	} {
		a := NewActive(cfg)
		s1 := send(a, true, false)
		deliver(a, seg{syn: true, ack: true, opt: s1.opt}) // the echo
		wantFallback(t, "A", a, ReasonSameRole)
		wantOpt(t, "A ACK", a.Outgoing(false, true), "")
	}
}

// ENO-12: an active opener with b = 1 meets a passive opener (b = 1).
func TestActiveSetBMeetsPassive(t *testing.T) {
	ca := activeCfg(newFakePolicy(), tepP256)
	ca.SetB = true
	a := NewActive(ca)
	pb := newFakePolicy()
	b := NewPassive(Config{Policy: pb})
	s1 := xfer(a, b, true, false)
	wantOpt(t, "A SYN", s1.opt, "45 04 01 21")
	if a.Role() != RoleB {
		t.Fatal("SetB active opener is not B")
	}
	wantFallback(t, "B", b, ReasonSameRole)
	if pb.answers != 0 {
		t.Fatal("Answer called despite role conflict")
	}
	wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, "")
	wantFallback(t, "A", a, ReasonNoENO)
}

// ENO-20: retransmitted SYN and SYN-ACK carry identical options; Answer runs
// once; a retransmitted SYN from A does not disturb B.
func TestRetransmissionsIdentical(t *testing.T) {
	pb := newFakePolicy()
	a := NewActive(activeCfg(newFakePolicy(), tepP256, tepX25519))
	b := NewPassive(Config{Policy: pb})
	first := send(a, true, false)
	for range 3 {
		if s := send(a, true, false); !bytes.Equal(s.opt, first.opt) {
			t.Fatalf("SYN retransmission % x != % x", s.opt, first.opt)
		}
	}
	deliver(b, first)
	ack1 := send(b, true, true)
	deliver(b, first) // A's retransmitted SYN arrives too
	for range 3 {
		if s := send(b, true, true); !bytes.Equal(s.opt, ack1.opt) {
			t.Fatalf("SYN-ACK retransmission % x != % x", s.opt, ack1.opt)
		}
	}
	if pb.answers != 1 {
		t.Fatalf("Answer called %d times", pb.answers)
	}
	deliver(a, ack1)
	deliver(a, ack1) // duplicate SYN-ACK
	deliver(b, send(a, false, true))
	mustResult(t, "A", a)
	mustResult(t, "B", b)
	// Outgoing returns fresh copies: scribbling on one changes nothing.
	s := a.Outgoing(true, false)
	s[2] = 0xff
	wantOpt(t, "A SYN after scribble", a.Outgoing(true, false), "45 04 21 23")
}

// ENO-20 exception / Disable: an active opener may drop ENO between SYN-only
// retransmissions; the passive side then falls back on the ENO-less SYN.
func TestDropENOOnSYNRetransmission(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	b := NewPassive(Config{Policy: newFakePolicy()})
	deliver(b, send(a, true, false))
	send(b, true, true) // lost
	if !a.Disable(ReasonNone, "SYN retransmission without ENO") {
		t.Fatal("Disable refused while negotiating")
	}
	wantFallback(t, "A", a, ReasonLocal)
	s := xfer(a, b, true, false)
	wantOpt(t, "A SYN retransmission", s.opt, "")
	wantFallback(t, "B", b, ReasonNoENO)
	wantOpt(t, "B SYN-ACK retransmission", b.Outgoing(true, true), "")

	// Disable after enabling is refused.
	a2 := NewActive(activeCfg(newFakePolicy(), tepP256))
	b2 := NewPassive(Config{Policy: newFakePolicy()})
	handshake(a2, b2)
	if a2.Disable(ReasonLocal, "late") {
		t.Fatal("Disable accepted after enabling")
	}
	wantState(t, "A2", a2, StateEnabled)
}

// handshake runs a clean three-way handshake.
func handshake(a, b *Negotiator) {
	xfer(a, b, true, false)
	xfer(b, a, true, true)
	xfer(a, b, false, true)
}

// ENO-13: mandatory application-aware mode, both directions, and the API
// to read the peer's a bit also after a fallback.
func TestAppAware(t *testing.T) {
	for _, tc := range []struct {
		name           string
		aCfg, bCfg     Config
		aSYN, bSYNACK  string
		aReason        Reason
		bReason        Reason
		aPeerA, bPeerA bool
	}{
		{name: "default-a0", aSYN: "45 03 21", bSYNACK: "45 04 01 21"},
		{name: "A-app-aware", aCfg: Config{AppAware: true}, aSYN: "45 04 02 21", bSYNACK: "45 04 01 21", bPeerA: true},
		{name: "B-app-aware", bCfg: Config{AppAware: true}, aSYN: "45 03 21", bSYNACK: "45 04 03 21", aPeerA: true},
		{name: "A-mandatory-B-aware", aCfg: Config{MandatoryAppAware: true}, bCfg: Config{AppAware: true},
			aSYN: "45 04 02 21", bSYNACK: "45 04 03 21", aPeerA: true, bPeerA: true},
		{name: "B-mandatory-A-aware", aCfg: Config{AppAware: true}, bCfg: Config{MandatoryAppAware: true},
			aSYN: "45 04 02 21", bSYNACK: "45 04 03 21", aPeerA: true, bPeerA: true},
		{name: "both-mandatory", aCfg: Config{MandatoryAppAware: true}, bCfg: Config{MandatoryAppAware: true},
			aSYN: "45 04 02 21", bSYNACK: "45 04 03 21", aPeerA: true, bPeerA: true},
		{name: "A-mandatory-B-not", aCfg: Config{MandatoryAppAware: true},
			aSYN: "45 04 02 21", bSYNACK: "45 04 01 21", aReason: ReasonAppAware, bReason: ReasonStripped, bPeerA: true},
		{name: "B-mandatory-A-not", bCfg: Config{MandatoryAppAware: true},
			aSYN: "45 03 21", bSYNACK: "", aReason: ReasonNoENO, bReason: ReasonAppAware, aPeerA: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.aCfg.Policy, tc.aCfg.Offer = newFakePolicy(), []Suboption{{TEP: tepP256}}
			tc.bCfg.Policy = newFakePolicy()
			a, b := NewActive(tc.aCfg), NewPassive(tc.bCfg)
			wantOpt(t, "A SYN", xfer(a, b, true, false).opt, tc.aSYN)
			wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, tc.bSYNACK)
			xfer(a, b, false, true)
			if tc.aReason == ReasonNone {
				ra, rb := mustResult(t, "A", a), mustResult(t, "B", b)
				if ra.PeerAppAware != tc.aPeerA || rb.PeerAppAware != tc.bPeerA {
					t.Fatalf("PeerAppAware A=%v B=%v", ra.PeerAppAware, rb.PeerAppAware)
				}
			} else {
				wantFallback(t, "A", a, tc.aReason)
				wantFallback(t, "B", b, tc.bReason)
			}
			// The peer's a bit is readable whatever the outcome (ENO-13).
			if pa, known := a.PeerAppAware(); pa != tc.aPeerA || known != (tc.bSYNACK != "") {
				t.Errorf("A.PeerAppAware = %v,%v", pa, known)
			}
			if pa, known := b.PeerAppAware(); pa != tc.bPeerA || !known {
				t.Errorf("B.PeerAppAware = %v,%v", pa, known)
			}
		})
	}
}

// ENO-22: vacuous options.
func TestVacuous(t *testing.T) {
	t.Run("A-vacuous-probe", func(t *testing.T) {
		pb := newFakePolicy()
		a := NewActive(Config{Policy: newFakePolicy()}) // no Offer
		b := NewPassive(Config{Policy: pb})
		wantOpt(t, "A SYN", xfer(a, b, true, false).opt, "45 02")
		wantFallback(t, "B", b, ReasonVacuous)
		if pb.answers != 0 {
			t.Fatal("Answer called for a vacuous SYN")
		}
		// The SYN carried ENO, so B may (and does) answer vacuously, with
		// the explicit b = 1 global suboption (ENO-14), on every SYN-ACK.
		wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, "45 03 01")
		wantOpt(t, "B SYN-ACK retransmit", b.Outgoing(true, true), "45 03 01")
		wantFallback(t, "A", a, ReasonVacuous)
		wantOpt(t, "A ACK", xfer(a, b, false, true).opt, "")
		wantFallback(t, "B", b, ReasonVacuous)
		wantOpt(t, "B non-SYN", b.Outgoing(false, true), "")
		wantOpt(t, "B SYN-ACK after ACK", b.Outgoing(true, true), "")
	})
	t.Run("B-no-answer", func(t *testing.T) {
		pb := newFakePolicy()
		pb.none = true
		a := NewActive(activeCfg(newFakePolicy(), 0x30))
		b := NewPassive(Config{Policy: pb, AppAware: true})
		xfer(a, b, true, false)
		wantFallback(t, "B", b, ReasonNoCommonTEP)
		wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, "45 03 03")
		wantFallback(t, "A", a, ReasonVacuous)
		if pa, known := a.PeerAppAware(); !pa || !known {
			t.Fatal("A cannot read B's a bit from the vacuous option")
		}
	})
	t.Run("B-vacuous-then-SYN-without-ENO", func(t *testing.T) {
		a := NewActive(Config{Policy: newFakePolicy()})
		b := NewPassive(Config{Policy: newFakePolicy()})
		xfer(a, b, true, false)
		wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "45 03 01")
		deliver(b, seg{syn: true}) // retransmitted SYN without ENO
		wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")
	})
	t.Run("received-vacuous-SYN-ACK", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		send(a, true, false)
		deliver(a, seg{syn: true, ack: true, opt: h("45 03 01")})
		wantFallback(t, "A", a, ReasonVacuous)
	})
}

// ENO-17, ENO-19 rule 2: TEP choice and the lack of a valid TEP.
func TestTEPSelection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offer   []Suboption
		answer  []Suboption
		reject  []byte
		acceptV bool
		tep     byte
		tepByte byte
		reason  Reason
	}{
		{name: "ENO-17-last-valid-in-B", offer: subs(0x21, 0x22, 0x23), answer: subs(0x23, 0x21, 0x22), tep: 0x22, tepByte: 0x22},
		{name: "ENO-17-A-order-irrelevant", offer: subs(0x23, 0x22, 0x21), answer: subs(0x21, 0x23), tep: 0x23, tepByte: 0x23},
		{name: "ENO-17-skip-invalid", offer: subs(0x21, 0x22, 0x23), answer: subs(0x21, 0x22, 0x23), reject: []byte{0x23, 0x22}, tep: 0x21, tepByte: 0x21},
		{name: "ENO-17-skip-not-in-A", offer: subs(0x21, 0x22), answer: subs(0x21, 0x22, 0x24), tep: 0x22, tepByte: 0x22},
		{name: "no-common-tep", offer: subs(0x21), answer: subs(0x22), reason: ReasonNoCommonTEP},
		{name: "tep-rejected", offer: subs(0x21, 0x22), answer: subs(0x21, 0x22), reject: []byte{0x21, 0x22}, reason: ReasonTEPRejected},
		{name: "unknown-tep-rejected", offer: subs(0x30), answer: subs(0x30), reason: ReasonTEPRejected},
		// §4.5 rule 3: repetition must be defined by the TEP; the fake
		// policy defines none.
		{name: "repeated-tep-rejected", offer: subs(0x21, 0x21), answer: subs(0x21), reason: ReasonTEPRejected},
		{name: "repeated-in-B-falls-to-earlier", offer: subs(0x21, 0x22), answer: subs(0x21, 0x22, 0x22), tep: 0x21, tepByte: 0x21},
		// v bits do not affect the choice; TEPByte keeps B's v bit, the
		// session ID's byte 0 (ENO-34, the ENO layer's part).
		{name: "v-bit-kept-in-TEPByte", acceptV: true,
			offer:  []Suboption{{TEP: 0x23, V: true, Data: h("01 02 03 04 05 06 07 08 09")}},
			answer: []Suboption{{TEP: 0x23, V: true, Data: h("aa bb")}}, tep: 0x23, tepByte: 0xa3},
		{name: "v-bit-rejected-by-policy",
			offer:  []Suboption{{TEP: 0x23, V: true, Data: h("01")}},
			answer: []Suboption{{TEP: 0x23}}, reason: ReasonTEPRejected},
		{name: "unencodable-answer", offer: subs(0x21), answer: []Suboption{{TEP: 0x21, Data: h("01")}}, reason: ReasonTEPRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := newFakePolicy(), newFakePolicy()
			pb.answer = tc.answer
			for _, p := range []*fakePolicy{pa, pb} {
				p.acceptV = tc.acceptV
				p.reject = map[byte]bool{}
				for _, r := range tc.reject {
					p.reject[r] = true
				}
			}
			a := NewActive(Config{Policy: pa, Offer: tc.offer})
			b := NewPassive(Config{Policy: pb})
			handshake(a, b)
			if tc.reason != ReasonNone {
				wantFallback(t, "B", b, tc.reason)
				return
			}
			for _, n := range []*Negotiator{a, b} {
				r := mustResult(t, "side", n)
				if r.TEP != tc.tep || r.TEPByte != tc.tepByte {
					t.Fatalf("TEP %#x byte %#x, want %#x %#x", r.TEP, r.TEPByte, tc.tep, tc.tepByte)
				}
				if !subsEqual(r.ASubs, filterTEP(tc.offer, tc.tep)) || !subsEqual(r.BSubs, normSubs(filterTEP(tc.answer, tc.tep))) {
					t.Fatalf("ASubs %+v BSubs %+v", r.ASubs, r.BSubs)
				}
			}
		})
	}
}

func subs(teps ...byte) []Suboption {
	var s []Suboption
	for _, t := range teps {
		s = append(s, Suboption{TEP: t})
	}
	return s
}

// The active side (A) also checks B's answer: B's policy answering a TEP A
// did not offer makes A fall back even if B thinks otherwise.
func TestActiveChecksAnswer(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	send(a, true, false)
	deliver(a, seg{syn: true, ack: true, opt: h("45 04 01 22")})
	wantFallback(t, "A", a, ReasonNoCommonTEP)
	wantOpt(t, "A ACK", a.Outgoing(false, true), "")
}

// Policy off: no ENO at all, not even vacuous; SYN data still discarded
// (ENO-25 applies "even when ENO has been disabled by configuration").
func TestModeOff(t *testing.T) {
	pa := newFakePolicy()
	a := NewActive(Config{Mode: ModeOff, Policy: pa, Offer: subs(tepP256)})
	wantFallback(t, "A", a, ReasonPolicyOff)
	for _, f := range [][2]bool{{true, false}, {true, true}, {false, true}, {false, false}} {
		wantOpt(t, "A", a.Outgoing(f[0], f[1]), "")
	}
	b := NewPassive(Config{Mode: ModeOff})
	if !b.Incoming(true, false, synArea(h("45 04 21 23")), 10) {
		t.Fatal("SYN data with ENO not discarded in ModeOff")
	}
	wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")
	wantFallback(t, "B", b, ReasonPolicyOff)
	if pa, known := b.PeerAppAware(); pa || !known {
		t.Fatal("peer a bit not readable in ModeOff")
	}
	if a.Required() || b.Required() {
		t.Fatal("Required in ModeOff")
	}
}

// ModeRequired negotiates as usual; a fallback is observable through
// Required() and State().
func TestModeRequired(t *testing.T) {
	a := NewActive(Config{Mode: ModeRequired, Policy: newFakePolicy(), Offer: subs(tepP256)})
	b := NewPassive(Config{Mode: ModeRequired, Policy: newFakePolicy()})
	if !a.Required() || !b.Required() {
		t.Fatal("Required() false")
	}
	handshake(a, b)
	mustResult(t, "A", a)
	mustResult(t, "B", b)

	a = NewActive(Config{Mode: ModeRequired, Policy: newFakePolicy(), Offer: subs(tepP256)})
	send(a, true, false)
	deliver(a, seg{syn: true, ack: true})
	wantFallback(t, "A", a, ReasonNoENO) // the stack refuses the connection
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    *Negotiator
	}{
		{"no-policy-active", NewActive(Config{Offer: subs(tepP256)})},
		{"no-policy-passive", NewPassive(Config{})},
		{"bad-mode", NewActive(Config{Mode: 9, Policy: newFakePolicy()})},
		{"offer-too-long", NewActive(Config{Policy: newFakePolicy(), Offer: []Suboption{{TEP: 0x21, V: true, Data: ones(38)}}})},
		{"offer-bad-tep", NewActive(Config{Policy: newFakePolicy(), Offer: subs(0x10)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFallback(t, tc.name, tc.n, ReasonConfig)
			wantOpt(t, "SYN", tc.n.Outgoing(true, false), "")
			wantOpt(t, "SYN-ACK", tc.n.Outgoing(true, true), "")
		})
	}
}

// ENO-5: several ENO options in a SYN count as none; ENO-1 and the legacy
// Decision: kind 253/0x454E next to or instead of kind 69.
func TestSYNOptionCount(t *testing.T) {
	for _, tc := range []struct {
		name   string
		area   []byte
		reason Reason
	}{
		{"ENO-5-two-eno", synArea(h("45 03 21 45 03 22")), ReasonMultipleENO},
		{"ENO-5-two-identical", synArea(h("45 03 21 45 03 21")), ReasonMultipleENO},
		{"ENO-1-legacy-and-69", area(optMSS, h("fd 05 45 4e 21"), h("45 03 21")), ReasonLegacyOption},
		{"ENO-1-legacy-only", area(optMSS, h("fd 05 45 4e 21")), ReasonLegacyOption},
		{"other-kind-253-ignored", area(h("fd 04 12 34"), h("45 03 21")), ReasonNone},
		{"malformed-area", area(optMSS, h("45 03 21"), h("08 0a 00")), ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewPassive(Config{Policy: newFakePolicy()})
			b.Incoming(true, false, tc.area, 0)
			if tc.reason == ReasonNone {
				wantState(t, "B", b, StateNegotiating)
				wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "45 04 01 21")
				return
			}
			wantFallback(t, "B", b, tc.reason)
			wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")
		})
	}
}

// ENO-11, ENO-19: an ill-formed SYN-form option disables ENO, for a SYN and
// for a SYN-ACK.
func TestMalformedSYNForm(t *testing.T) {
	for _, tc := range parseCases {
		if tc.reason == parseNone || len(tc.opt) < 2 || tc.opt[0] != Kind || int(tc.opt[1]) != len(tc.opt) {
			continue // only options an area can carry with their own length
		}
		t.Run(tc.name, func(t *testing.T) {
			b := NewPassive(Config{Policy: newFakePolicy()})
			b.Incoming(true, false, synArea(tc.opt), 0)
			wantFallback(t, "B", b, ReasonMalformed)
			wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")

			a := NewActive(activeCfg(newFakePolicy(), tepP256))
			send(a, true, false)
			a.Incoming(true, true, synArea(tc.opt), 0)
			wantFallback(t, "A", a, ReasonMalformed)
			wantOpt(t, "A ACK", a.Outgoing(false, true), "")
		})
	}
}

// ENO-19 rule 1 for the passive opener's first ACK, and ENO-4 / ENO-6 for
// non-SYN contents and counts (received non-SYN contents are never
// interpreted, so none reach a TEP unauthenticated: ENO-37's ENO side).
func TestFirstACK(t *testing.T) {
	for _, tc := range []struct {
		name   string
		area   []byte
		reason Reason
	}{
		{"plain-45-02", ackArea(h("45 02")), ReasonNone},
		{"ENO-4-contents-ignored", ackArea(h("45 05 01 02 03")), ReasonNone},
		{"ENO-4-syn-form-looking", ackArea(h("45 04 21 23")), ReasonNone},
		{"ENO-4-malformed-syn-form-ignored", ackArea(h("45 03 80")), ReasonNone},
		{"ENO-6-several", ackArea(h("45 02 45 02")), ReasonNone},
		{"eno-before-malformed-part", area(h("45 02"), h("08 0a 00")), ReasonNone},
		{"ENO-19-stripped", ackArea(nil), ReasonStripped},
		{"legacy-only-is-stripped", ackArea(h("fd 04 45 4e")), ReasonStripped},
		{"malformed-area", area(h("08 0a 00")), ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewActive(activeCfg(newFakePolicy(), tepP256))
			b := NewPassive(Config{Policy: newFakePolicy()})
			xfer(a, b, true, false)
			xfer(b, a, true, true)
			b.Incoming(false, true, tc.area, 100)
			if tc.reason == ReasonNone {
				mustResult(t, "B", b)
			} else {
				wantFallback(t, "B", b, tc.reason)
			}
			// Later segments without ENO change nothing.
			b.Incoming(false, true, nil, 100)
			if tc.reason == ReasonNone {
				mustResult(t, "B", b)
			}
		})
	}
}

// Decision on Incoming: stray non-SYN segments before the peer's SYN, and
// non-SYN segments without ACK, are not part of the handshake.
func TestStraySegmentsIgnored(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	b := NewPassive(Config{Policy: newFakePolicy()})
	send(a, true, false)
	a.Incoming(false, true, nil, 0) // stray ACK in SYN-SENT
	b.Incoming(false, true, nil, 0) // stray ACK in LISTEN
	deliver(b, send(a, true, false))
	deliver(a, send(b, true, true))
	b.Incoming(false, false, nil, 0) // no ACK bit: TCP drops it
	wantOpt(t, "A ACK", a.Outgoing(false, true), "45 02")
	deliver(b, seg{ack: true, opt: h("45 02")})
	mustResult(t, "A", a)
	mustResult(t, "B", b)
}

// A later SYN up to the first ACK: an ill-formed or missing option still
// triggers §4.6 rule 1; a well-formed different one is ignored (Decision).
func TestLaterSYN(t *testing.T) {
	t.Run("different-option-ignored", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256, tepX25519))
		b := NewPassive(Config{Policy: newFakePolicy()})
		xfer(a, b, true, false)
		deliver(b, seg{syn: true, opt: h("45 03 22")})
		wantOpt(t, "B SYN-ACK", xfer(b, a, true, true).opt, "45 04 01 23")
		xfer(a, b, false, true)
		rb := mustResult(t, "B", b)
		if !bytes.Equal(rb.Transcript, h("45 04 21 23 45 04 01 23")) {
			t.Fatalf("transcript % x", rb.Transcript)
		}
	})
	t.Run("malformed-later-SYN", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		b := NewPassive(Config{Policy: newFakePolicy()})
		xfer(a, b, true, false)
		deliver(b, seg{syn: true, opt: h("45 03 80")})
		wantFallback(t, "B", b, ReasonMalformed)
		wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "")
	})
	t.Run("simultaneous-SYN-ACK-without-ENO", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		bc := activeCfg(newFakePolicy(), tepP256)
		bc.SetB = true
		b := NewActive(bc)
		sa, sb := send(a, true, false), send(b, true, false)
		deliver(b, sa)
		deliver(a, sb)
		send(a, true, true)
		deliver(a, seg{syn: true, ack: true}) // B's SYN-ACK lost its option
		wantFallback(t, "A", a, ReasonNoENO)
	})
	t.Run("SYN-after-first-ACK-ignored", func(t *testing.T) {
		a := NewActive(activeCfg(newFakePolicy(), tepP256))
		b := NewPassive(Config{Policy: newFakePolicy()})
		handshake(a, b)
		deliver(b, seg{syn: true})
		deliver(a, seg{syn: true, ack: true})
		mustResult(t, "A", a)
		mustResult(t, "B", b)
	})
}

// ENO-25, §4.7: SYN data in SYN+ENO segments is always discarded; other
// segments' data never.
func TestSYNDataDiscard(t *testing.T) {
	for _, tc := range []struct {
		name          string
		syn, ack      bool
		area          []byte
		payload       int
		want          bool
		mode          Mode
		activeNegotor bool
	}{
		{name: "ENO-25-SYN-with-ENO", syn: true, area: synArea(h("45 04 21 23")), payload: 1, want: true},
		{name: "ENO-25-SYN-ACK-with-ENO", syn: true, ack: true, area: synArea(h("45 04 01 21")), payload: 5, want: true, activeNegotor: true},
		{name: "ENO-25-malformed-ENO", syn: true, area: synArea(h("45 03 80")), payload: 1, want: true},
		{name: "ENO-25-two-ENO", syn: true, area: synArea(h("45 02 45 02")), payload: 1, want: true},
		{name: "ENO-25-legacy-ENO", syn: true, area: area(h("fd 05 45 4e 21")), payload: 1, want: true},
		{name: "ENO-25-malformed-area", syn: true, area: h("02 09 00"), payload: 1, want: true},
		{name: "ENO-25-disabled-by-config", syn: true, area: synArea(h("45 03 21")), payload: 1, want: true, mode: ModeOff},
		{name: "SYN-without-ENO", syn: true, area: synArea(nil), payload: 1},
		{name: "SYN-ENO-no-data", syn: true, area: synArea(h("45 03 21"))},
		{name: "non-SYN-data", ack: true, area: ackArea(h("45 02")), payload: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n *Negotiator
			if tc.activeNegotor {
				n = NewActive(Config{Mode: tc.mode, Policy: newFakePolicy(), Offer: subs(0x21)})
				n.Outgoing(true, false)
			} else {
				n = NewPassive(Config{Mode: tc.mode, Policy: newFakePolicy()})
			}
			if got := n.Incoming(tc.syn, tc.ack, tc.area, tc.payload); got != tc.want {
				t.Fatalf("discardSYNData = %v, want %v", got, tc.want)
			}
		})
	}
	// The discard holds even when negotiation succeeds: no TEP we know
	// defines SYN data (§4.7 third bullet).
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	b := NewPassive(Config{Policy: newFakePolicy()})
	s1 := send(a, true, false)
	if !b.Incoming(true, false, s1.area(), 3) {
		t.Fatal("SYN data kept")
	}
	xfer(b, a, true, true)
	xfer(a, b, false, true)
	mustResult(t, "B", b)
}

// ENO-3, ENO-1: what we put in SYN segments is one SYN-form kind-69 option,
// in non-SYN segments only the non-SYN form; never kind 253.
func TestOutgoingForms(t *testing.T) {
	a := NewActive(Config{Policy: newFakePolicy(), Offer: []Suboption{
		{TEP: tepP256, V: true, Data: h("01 02")}, {TEP: tepX25519}}, AppAware: true})
	b := NewPassive(Config{Policy: newFakePolicy()})
	var sent []seg
	sent = append(sent, xfer(a, b, true, false), xfer(b, a, true, true), xfer(a, b, false, true), send(a, false, false))
	for i, s := range sent {
		if s.opt == nil {
			t.Fatalf("segment %d without ENO", i)
		}
		if s.opt[0] != Kind {
			t.Fatalf("segment %d: kind %d", i, s.opt[0])
		}
		enos, legacy, err := Options(s.area())
		if err != nil || legacy || len(enos) != 1 {
			t.Fatalf("segment %d: %v %v %d", i, err, legacy, len(enos))
		}
		if s.syn {
			if _, err := ParseSYNForm(s.opt); err != nil {
				t.Fatalf("segment %d: SYN form does not parse: %v", i, err)
			}
		} else if !bytes.Equal(s.opt, NonSYNForm) {
			t.Fatalf("segment %d: non-SYN form % x", i, s.opt)
		}
	}
	wantOpt(t, "A SYN", sent[0].opt, "45 08 02 81 a1 01 02 23")
	// A passive opener never sends a SYN-only option.
	wantOpt(t, "B SYN-only", b.Outgoing(true, false), "")
}

// Result hands out deep copies.
func TestResultIsACopy(t *testing.T) {
	pa, pb := newFakePolicy(), newFakePolicy()
	pa.acceptV, pb.acceptV = true, true
	pb.answer = []Suboption{{TEP: tepX25519, V: true, Data: h("aa bb")}}
	a := NewActive(Config{Policy: pa, Offer: []Suboption{{TEP: tepX25519, V: true, Data: h("01 02 03")}}})
	b := NewPassive(Config{Policy: pb})
	handshake(a, b)
	for _, n := range []*Negotiator{a, b} {
		r1 := mustResult(t, "n", n)
		r1.Transcript[0] = 0
		r1.ASubs[0].Data[0] = 0
		r1.BSubs[0].Data[0] = 0
		r2 := mustResult(t, "n", n)
		if !bytes.Equal(r2.Transcript, h("45 06 a3 01 02 03 45 06 01 a3 aa bb")) ||
			r2.ASubs[0].Data[0] != 1 || r2.BSubs[0].Data[0] != 0xaa || r2.TEPByte != 0xa3 {
			t.Fatalf("result changed: %+v", r2)
		}
	}
	// The policy's answer slice is not retained either.
	pb.answer[0].Data[0] = 0
	wantOpt(t, "B SYN-ACK", b.Outgoing(true, true), "45 06 01 a3 aa bb")
}

func TestReasonAndStateStrings(t *testing.T) {
	seen := map[string]bool{}
	for r := ReasonNone; r <= ReasonConfig; r++ {
		s := r.String()
		if seen[s] || s == "" || s == "unknown" {
			t.Fatalf("bad or duplicate reason name %q", s)
		}
		seen[s] = true
	}
	if Reason(99).String() != "reason-99" || State(9).String() != "state-9" || Mode(7).String() != "mode-7" {
		t.Fatal("unknown values")
	}
	fe := &FallbackError{Reason: ReasonStripped, Detail: "first ACK without ENO"}
	if fe.Error() != "eno: fallback to plain TCP: stripped: first ACK without ENO" {
		t.Fatal(fe.Error())
	}
	if RoleA.String() != "A" || RoleB.String() != "B" || ModeRequired.String() != "required" || StateEnabled.String() != "enabled" {
		t.Fatal("names")
	}
}

// A side that never sent an ACK carrying ENO (its SYN-ACK went out without
// consulting Outgoing) cannot enable; it falls back instead of negotiating
// for ever once a non-SYN segment arrives.
func TestNoStuckNegotiation(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	b := NewPassive(Config{Policy: newFakePolicy()})
	xfer(a, b, true, false)
	deliver(a, seg{syn: true, ack: true, opt: h("45 04 01 21")}) // B's SYN-ACK, forged by the caller
	xfer(a, b, false, true)
	wantFallback(t, "B", b, ReasonLocal)
}

// Peek shows the option without recording it: peeking at the third
// segment does not enable encryption.
func TestPeek(t *testing.T) {
	a := NewActive(activeCfg(newFakePolicy(), tepP256))
	b := NewPassive(Config{Policy: newFakePolicy()})
	wantOpt(t, "A peek SYN", a.Peek(true, false), "45 03 21")
	wantOpt(t, "A peek ACK before SYN", a.Peek(false, true), "")
	xfer(a, b, true, false)
	wantOpt(t, "B peek SYN-ACK", b.Peek(true, true), "45 04 01 21")
	xfer(b, a, true, true)
	for range 2 {
		wantOpt(t, "A peek ACK", a.Peek(false, true), "45 02")
		wantState(t, "A", a, StateNegotiating)
	}
	xfer(a, b, false, true)
	mustResult(t, "A", a)
	mustResult(t, "B", b)
}
