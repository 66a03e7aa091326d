package tcpcrypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// resumeConfigs returns two hosts' configs with resumption on, each with
// its own cache and clock.
func resumeConfigs() (a, b *Config) {
	clk := newClock()
	a = &Config{Resumption: true, Cache: NewCache(CacheConfig{Now: clk.Now}), Time: clk.Now}
	b = &Config{Resumption: true, Cache: NewCache(CacheConfig{Now: clk.Now}), Time: clk.Now}
	return a, b
}

// chainSecret returns the next unused secret of the only chain in c.
func chainSecret(t testing.TB, c *Cache) *schedule.SessionSecret {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.chains) != 1 {
		t.Fatalf("cache holds %d chains, want 1", len(c.chains))
	}
	for _, ch := range c.chains {
		if ch.ss == nil {
			return nil
		}
		return schedule.SessionSecretFromBytes(ch.ss.Bytes(), ch.ss.Index())
	}
	return nil
}

// TestTC3_FreshOffer: the active opener offers each TEP as a one-byte
// suboption with v = 0, in increasing preference (TC-3); without a cached
// secret there is no resumption suboption.
func TestTC3_FreshOffer(t *testing.T) {
	cfg, _ := resumeConfigs()
	subs := cfg.NewSession("b", Policy{}).Offer()
	want := []eno.Suboption{{TEP: 0x22}, {TEP: 0x21}, {TEP: 0x24}, {TEP: 0x23}}
	if len(subs) != len(want) {
		t.Fatalf("offer = %v, want %v", subs, want)
	}
	for i := range want {
		if subs[i].TEP != want[i].TEP || subs[i].V || subs[i].Data != nil {
			t.Fatalf("offer = %v, want %v", subs, want)
		}
	}
	opt, err := eno.AppendSYNForm(nil, 0, false, subs)
	if err != nil || !bytes.Equal(opt, unhex(t, "4506 22212423")) {
		t.Fatalf("SYN option = % x, %v", opt, err)
	}
}

// TestResumption is the basic resumption round: the second connection
// resumes (no Init messages, TC-19), its session ID starts with a v = 1
// byte and differs from the first (TC-20), both sides agree, data flows
// both ways at once, and each later connection walks the chain (TC-23).
func TestResumption(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	c1a, c1b := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if c1a.Resumed() || c1b.Resumed() {
		t.Fatal("first connection resumed")
	}
	ss1a, ss1b := chainSecret(t, cfgA.Cache), chainSecret(t, cfgB.Cache)
	if ss1a.Index() != 1 || !ss1a.Equal(ss1b) {
		t.Fatalf("cached ss[%d] differ between hosts", ss1a.Index())
	}
	prev := c1a.SessionID()
	for i := 2; i <= 4; i++ {
		sa, sb := cfgA.NewSession(host(cfgB), Policy{}), cfgB.NewSession(host(cfgA), Policy{})
		ra, rb, err := negotiate(t, sa, sb)
		if err != nil {
			t.Fatal(err)
		}
		if ra.TEPByte != 0xa3 {
			t.Fatalf("TEP byte %#x, want 0xa3", ra.TEPByte)
		}
		pa, pb := net.Pipe()
		a, b := &recConn{Conn: pa}, &recConn{Conn: pb}
		ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, b)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if a.writes+b.writes != 0 {
			t.Fatal("resumed handshake sent bytes") // TC-19: no Init messages
		}
		if !ca.Resumed() || !cb.Resumed() || !bytes.Equal(ca.SessionID(), cb.SessionID()) {
			t.Fatalf("resumed %v/%v, IDs %x / %x", ca.Resumed(), cb.Resumed(), ca.SessionID(), cb.SessionID())
		}
		id := ca.SessionID()
		if id[0] != 0xa3 || bytes.Equal(id, prev) || len(id) != 33 {
			t.Fatalf("session ID %x (previous %x)", id, prev)
		}
		prev = id
		// Both may send immediately; frames start at offset 0.
		exchange(t, ca, cb, "from A")
		exchange(t, cb, ca, "from B")
		if got := chainSecret(t, cfgA.Cache); got.Index() != uint64(i) || !got.Equal(chainSecret(t, cfgB.Cache)) {
			t.Fatalf("after connection %d the caches hold ss[%d]", i, got.Index())
		}
		pa.Close()
		pb.Close()
		ca.Close()
		cb.Close()
	}
}

// TestTC19_TC20_ResumedVector: resuming with the vector's ss[1] and nonces
// gives the independent implementation's session ID (sn = nonce_a|nonce_b,
// v = 1 byte) and keys, in both role assignments: when the host that was
// originally B opens actively, sn still puts the original A's nonce first
// and each host keeps its original key direction (TC-19, TC-20, TC-26).
func TestTC19_TC20_ResumedVector(t *testing.T) {
	checkLeaks(t)
	v := loadVectors(t)
	for _, hv := range v.Handshakes {
		for _, swapped := range []bool{false, true} {
			name := hv.Name
			if swapped {
				name += "/original-B-opens"
			}
			t.Run(name, func(t *testing.T) {
				tep := kex.ID(hv.TEP)
				ss1 := []byte(hv.SS1)
				// Host X was A originally, host Y was B.
				cfgX := &Config{TEPs: []kex.ID{tep}, Resumption: true, Cache: NewCache(CacheConfig{}),
					AnswerSpace: 18, Rand: bytes.NewReader([]byte(hv.Resumed.NonceA))}
				cfgY := &Config{TEPs: []kex.ID{tep}, Resumption: true, Cache: NewCache(CacheConfig{}),
					AnswerSpace: 18, Rand: bytes.NewReader([]byte(hv.Resumed.NonceB))}
				cfgX.Cache.add("Y", tep, eno.RoleA, schedule.AEADID(hv.AEAD), schedule.SessionSecretFromBytes(ss1, 1))
				cfgY.Cache.add("X", tep, eno.RoleB, schedule.AEADID(hv.AEAD), schedule.SessionSecretFromBytes(ss1, 1))
				sx, sy := cfgX.NewSession("Y", Policy{}), cfgY.NewSession("X", Policy{})
				active, passive := sx, sy
				if swapped {
					active, passive = sy, sx
				}
				ra, rb, err := negotiate(t, active, passive)
				if err != nil {
					t.Fatal(err)
				}
				pa, pb := pipeStreams(t)
				a, b := &recConn{Conn: pa}, &recConn{Conn: pb}
				ca, cb, errA, errB := runHandshakes(t, active, passive, ra, rb, a, b)
				if errA != nil || errB != nil {
					t.Fatal(errA, errB)
				}
				for _, c := range []*Conn{ca, cb} {
					if got := hex.EncodeToString(c.SessionID()); got != hex.EncodeToString(hv.Resumed.SessionID) || c.AEAD() != schedule.AEADID(hv.AEAD) {
						t.Errorf("%v: session ID %s, want %x", c.Role(), got, hv.Resumed.SessionID)
					}
				}
				exchange(t, ca, cb, "from the active opener")
				exchange(t, cb, ca, "from the passive opener")
				// X's frames are under k_ab (its original direction) and Y's
				// under k_ba, from offset 0, whatever the current roles.
				wx, wy := a.bytes(), b.bytes()
				if swapped {
					wx, wy = wy, wx
				}
				aead, _ := schedule.LookupAEAD(schedule.AEADID(hv.AEAD))
				mk := schedule.MasterKeyFromBytes([]byte(hv.Resumed.MK0), 0)
				if got := openAll(t, aead, mk, schedule.DirAB, 0, wx); len(got) == 0 {
					t.Fatal("X sent nothing")
				}
				if got := openAll(t, aead, mk, schedule.DirBA, 0, wy); len(got) == 0 {
					t.Fatal("Y sent nothing")
				}
				pa.Close()
				pb.Close()
			})
		}
	}
}

// TestTC16_PassiveAgreesOnlyOnMatch: B agrees to resume only for a cached
// identifier half of the same TEP; otherwise it answers a fresh TEP
// (TC-16). TC-4: A's resumption offer doubles as a fresh offer.
func TestTC16_PassiveAgreesOnlyOnMatch(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)

	// Wrong half for a cached TEP: fresh answer with that TEP.
	sa := cfgA.NewSession(host(cfgB), Policy{})
	offer := sa.Offer()
	last := offer[len(offer)-1]
	if !last.V || last.TEP != 0x23 || len(last.Data) != ResumeHalfLen+DefaultNonceLen {
		t.Fatalf("offer's resumption suboption = %+v", last)
	}
	bad := cloneSubs(offer)
	bad[len(bad)-1].Data[0] ^= 1
	sb := cfgB.NewSession(host(cfgA), Policy{})
	if ans := sb.Answer(eno.SYNOption{Subs: bad}); len(ans) != 1 || ans[0].V || ans[0].TEP != 0x23 {
		t.Fatalf("answer to a wrong half = %+v, want fresh 0x23", ans)
	}
	sb.Abandon()
	// Same half under another TEP: not the cached session's TEP.
	other := []eno.Suboption{{TEP: 0x21, V: true, Data: last.Data}}
	sb = cfgB.NewSession(host(cfgA), Policy{})
	if ans := sb.Answer(eno.SYNOption{Subs: other}); len(ans) != 1 || ans[0].V || ans[0].TEP != 0x21 {
		t.Fatalf("answer for another TEP = %+v, want fresh 0x21", ans)
	}
	sb.Abandon()
	// Another peer name: no match.
	sb = cfgB.NewSession("someone-else", Policy{})
	if ans := sb.Answer(eno.SYNOption{Subs: offer}); len(ans) != 1 || ans[0].V {
		t.Fatalf("answer to another peer = %+v", ans)
	}
	sb.Abandon()
	// The right one: resumption with the other half.
	sb = cfgB.NewSession(host(cfgA), Policy{})
	ans := sb.Answer(eno.SYNOption{Subs: offer})
	if len(ans) != 1 || !ans[0].V || ans[0].TEP != 0x23 || len(ans[0].Data) != ResumeHalfLen+DefaultAnswerSpace-1-ResumeHalfLen {
		t.Fatalf("answer = %+v", ans)
	}
	if bytes.Equal(ans[0].Data[:ResumeHalfLen], last.Data[:ResumeHalfLen]) {
		t.Fatal("B sent A's half back")
	}
	if !sa.Valid(0x23, []eno.Suboption{last}, ans) {
		t.Fatal("A rejects B's matching half")
	}
	sa.Abandon()
	sb.Abandon()
}

// TestTC4_ResumptionOfferFallsBackToFresh: if B has no secret, A's
// resumption offer leads to a fresh exchange with the same TEP (TC-4).
func TestTC4_ResumptionOfferFallsBackToFresh(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	cfgB.Cache.FlushAll()
	ca, cb := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if ca.Resumed() || cb.Resumed() || ca.SessionID()[0] != 0x23 || !bytes.Equal(ca.SessionID(), cb.SessionID()) {
		t.Fatalf("resumed %v, session %x / %x", ca.Resumed(), ca.SessionID(), cb.SessionID())
	}
}

// TestTC17_ShortResumptionDataIsFresh: a v = 1 suboption with fewer than 9
// data bytes is a fresh offer of that TEP (TC-17).
func TestTC17_ShortResumptionDataIsFresh(t *testing.T) {
	cfgA, cfgB := resumeConfigs()
	for _, n := range []int{0, 1, 8} {
		sb := cfgB.NewSession(host(cfgA), Policy{})
		ans := sb.Answer(eno.SYNOption{Subs: []eno.Suboption{{TEP: 0x24, V: true, Data: make([]byte, n)}}})
		if len(ans) != 1 || ans[0].V || ans[0].TEP != 0x24 {
			t.Fatalf("%d data bytes: answer %+v, want fresh 0x24", n, ans)
		}
		if !sb.Valid(0x24, []eno.Suboption{{TEP: 0x24, V: true, Data: make([]byte, n)}}, ans) {
			t.Fatalf("%d data bytes: B finds its own answer invalid", n)
		}
	}
}

// TestTC18_MismatchingHalfRejected: A ignores (finds invalid) a resumption
// answer whose half does not match; as the only suboption, ENO falls back
// (TC-18). An unsolicited v = 1 answer is invalid too (docs/decisions.md).
func TestTC18_MismatchingHalfRejected(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	sa := cfgA.NewSession(host(cfgB), Policy{})
	offer := sa.Offer()
	mine := offer[len(offer)-1]
	wrong := eno.Suboption{TEP: 0x23, V: true, Data: bytes.Repeat([]byte{7}, 15)}
	if sa.Valid(0x23, []eno.Suboption{mine}, []eno.Suboption{wrong}) {
		t.Fatal("A accepts a mismatching half")
	}
	if sa.Valid(0x23, []eno.Suboption{mine}, []eno.Suboption{{TEP: 0x23, V: true, Data: []byte{1, 2}}}) {
		t.Fatal("A accepts a short v=1 answer")
	}
	if sa.Valid(0x24, []eno.Suboption{{TEP: 0x24}}, []eno.Suboption{{TEP: 0x24, V: true, Data: wrong.Data}}) {
		t.Fatal("A accepts an unsolicited resumption answer")
	}
	if !sa.Valid(0x23, []eno.Suboption{mine}, []eno.Suboption{{TEP: 0x23}}) {
		t.Fatal("A rejects a fresh answer to its resumption offer (TC-4)")
	}
	sa.Abandon()

	// End to end: B answers with a forged half; ENO at A falls back.
	sa2 := cfgA.NewSession(host(cfgB), Policy{})
	na := eno.NewActive(eno.Config{Offer: sa2.Offer(), Policy: sa2})
	nb := eno.NewPassive(eno.Config{Policy: &forgingPolicy{Session: cfgB.NewSession(host(cfgA), Policy{})}})
	nb.Incoming(true, false, na.Outgoing(true, false), 0)
	na.Incoming(true, true, nb.Outgoing(true, true), 0)
	_, err := na.Result()
	var fe *eno.FallbackError
	if !errors.As(err, &fe) || fe.Reason != eno.ReasonTEPRejected {
		t.Fatalf("A's result = %v, want fallback tep-rejected", err)
	}
	if out := na.Outgoing(false, true); out != nil {
		t.Fatalf("A still sends ENO %x after rejecting", out) // TC-18: no more ENO
	}
	sa2.Abandon()
}

// forgingPolicy answers like Session but flips a bit of its half.
type forgingPolicy struct{ *Session }

func (f *forgingPolicy) Answer(a eno.SYNOption) []eno.Suboption {
	ans := f.Session.Answer(a)
	for i := range ans {
		if ans[i].V {
			ans[i].Data[0] ^= 0x80
		}
	}
	return ans
}

func (f *forgingPolicy) Valid(tep byte, a, b []eno.Suboption) bool { return true }

// TestTC14_NonceLength: the nonce length is configurable, 8 by default,
// random (TC-14); it shrinks to fit the option space, other TEPs going
// first (Decision in session.go).
func TestTC14_NonceLength(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	offer := func(c *Config) []eno.Suboption {
		s := c.NewSession(host(cfgB), Policy{})
		defer s.Abandon()
		return s.Offer()
	}
	tests := []struct {
		name     string
		nonce    int
		space    int
		wantSubs int // including the resumption suboption; 0 = no resumption
		wantLen  int
	}{
		{"default", 0, 0, 1, 8},
		{"zero", NonceLenZero, 0, 4, 0},
		{"three", 3, 0, 4, 3},
		{"six", 6, 0, 3, 6},
		{"shrunk", 0, 15, 1, 5},
		{"floor", 0, 13, 0, 0},
		{"floor-configured", 2, 12, 1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfgA
			c.shared = nil
			c.NonceLen, c.OfferSpace = tc.nonce, tc.space
			c.shared = cfgA.state() // same randomness and pools
			subs := offer(&c)
			var res *eno.Suboption
			for i := range subs {
				if subs[i].V {
					if res != nil {
						t.Fatal("two resumption suboptions") // TC-22
					}
					res = &subs[i]
				}
			}
			if tc.wantSubs == 0 {
				if res != nil {
					t.Fatalf("offered resumption %+v", res)
				}
				return
			}
			if res == nil || len(subs) != tc.wantSubs || len(res.Data) != ResumeHalfLen+tc.wantLen {
				t.Fatalf("offer = %+v", subs)
			}
			if subs[len(subs)-1].V != true {
				t.Fatal("resumption suboption not last")
			}
			space := orDefault(tc.space, DefaultOfferSpace)
			opt, err := eno.AppendSYNForm(nil, 0, false, subs)
			if err != nil || len(opt)-2 > space {
				t.Fatalf("option % x (%v) exceeds %d bytes of suboptions", opt, err, space)
			}
		})
	}
	// Nonces are random: two offers (different i anyway) differ in nonce.
	n1, n2 := offer(cfgA), offer(cfgA)
	if bytes.Equal(n1[0].Data[ResumeHalfLen:], n2[0].Data[ResumeHalfLen:]) {
		t.Fatal("two offers carry the same nonce")
	}
}

// TestTC15_HalvesByOriginalRole: the half sent depends on the original
// role: the original A sends resume[i]{0..8}, the original B {9..17},
// with the v bit set (TC-15).
func TestTC15_HalvesByOriginalRole(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	id := chainSecret(t, cfgA.Cache).ResumeID()
	sub := cfgA.NewSession(host(cfgB), Policy{}).Offer()[0]
	if sub.Byte() != 0xa3 || !bytes.Equal(sub.Data[:9], id[:9]) {
		t.Fatalf("original A offers %x, want first half %x", sub.Data[:9], id[:9])
	}
	// The original B, opening actively, sends the second half of the same
	// (unused) index.
	sub = cfgB.NewSession(host(cfgA), Policy{}).Offer()[0]
	if sub.Byte() != 0xa3 || !bytes.Equal(sub.Data[:9], id[9:]) {
		t.Fatalf("original B offers %x, want second half %x", sub.Data[:9], id[9:])
	}
}

// TestTC24_LowestUnusedIndex: a failed offer counts: the next offer uses
// i+1, and the passive side's look-ahead still finds it (TC-24).
func TestTC24_LowestUnusedIndex(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	ss1 := chainSecret(t, cfgA.Cache)
	want := ss1
	for i := 0; i < 3; i++ {
		s := cfgA.NewSession(host(cfgB), Policy{})
		sub := s.Offer()[0]
		id := want.ResumeID()
		if !bytes.Equal(sub.Data[:9], id[:9]) {
			t.Fatalf("attempt %d offered %x, want resume[%d] %x", i, sub.Data[:9], want.Index(), id[:9])
		}
		s.Abandon() // SYN lost, connection refused, ...
		want = want.Next()
	}
	// B never saw those: its next unused is ss[1], A offers ss[4]: within
	// the look-ahead (3), so resumption still works.
	ca, _ := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if !ca.Resumed() {
		t.Fatal("resumption at ss[4] failed")
	}
	if got := chainSecret(t, cfgB.Cache); got.Index() != 5 {
		t.Fatalf("B's chain at ss[%d], want ss[5]", got.Index())
	}
	// Beyond the look-ahead: fresh.
	for i := 0; i < DefaultLookAhead+1; i++ {
		cfgA.NewSession(host(cfgB), Policy{}).Abandon()
		s := cfgA.NewSession(host(cfgB), Policy{})
		s.Offer()
		s.Abandon()
	}
	ca, _ = connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if ca.Resumed() {
		t.Fatal("resumed beyond the look-ahead")
	}
}

// TestTC25_SingleUse: a secret secures at most one connection: a second
// connection in flight at the same time offers the next secret, and a
// replayed resumption SYN finds nothing (TC-25).
func TestTC25_SingleUse(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	sa := cfgA.NewSession(host(cfgB), Policy{})
	syn := eno.SYNOption{Subs: sa.Offer()}
	// While A's first offer is in flight, a second connection offers
	// ss[2], not ss[1] again.
	sa2 := cfgA.NewSession(host(cfgB), Policy{})
	syn2 := eno.SYNOption{Subs: sa2.Offer()}
	r1, r2 := syn.Subs[len(syn.Subs)-1], syn2.Subs[len(syn2.Subs)-1]
	if !r1.V || !r2.V || bytes.Equal(r1.Data[:ResumeHalfLen], r2.Data[:ResumeHalfLen]) {
		t.Fatal("concurrent connections offered the same secret")
	}
	sb := cfgB.NewSession(host(cfgA), Policy{})
	if ans := sb.Answer(syn); !ans[0].V {
		t.Fatal("B did not resume")
	}
	// The second connection resumes too, with its own session ID.
	sb2 := cfgB.NewSession(host(cfgA), Policy{})
	ra2, rb2 := resumedResults(t, sa2, sb2, syn2.Subs, sb2.Answer(syn2))
	a2, b2 := pipeStreams(t)
	ca2, cb2, errA, errB := runHandshakes(t, sa2, sb2, ra2, rb2, a2, b2)
	if errA != nil || errB != nil || !ca2.Resumed() || !cb2.Resumed() {
		t.Fatal("second concurrent connection did not resume", errA, errB)
	}
	// A replay of the first SYN once B took its secret: fresh.
	sb2 = cfgB.NewSession(host(cfgA), Policy{})
	if ans := sb2.Answer(syn); ans[0].V {
		t.Fatal("B agreed twice to one secret")
	}
	sb2.Abandon()
	// Complete the connection; a later replay still finds nothing.
	ra, rb := resumedResults(t, sa, sb, syn.Subs, sb.Answer(syn))
	a, b := pipeStreams(t)
	ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, b)
	if errA != nil || errB != nil || !ca.Resumed() || !cb.Resumed() {
		t.Fatal(errA, errB)
	}
	if bytes.Equal(ca.SessionID(), ca2.SessionID()) {
		t.Fatal("two connections share a session ID")
	}
	sb3 := cfgB.NewSession(host(cfgA), Policy{})
	if ans := sb3.Answer(syn); ans[0].V {
		t.Fatal("B resumed a used secret on replay")
	}
	sb3.Abandon()
}

// resumedResults builds the ENO results of a resumption by hand.
func resumedResults(t testing.TB, sa, sb *Session, aSubs, bSubs []eno.Suboption) (ra, rb eno.Result) {
	t.Helper()
	aOpt, err := eno.AppendSYNForm(nil, 0, false, aSubs)
	if err != nil {
		t.Fatal(err)
	}
	bOpt, err := eno.AppendSYNForm(nil, eno.GlobalB, true, bSubs)
	if err != nil {
		t.Fatal(err)
	}
	last := bSubs[len(bSubs)-1]
	var as []eno.Suboption
	for _, s := range aSubs {
		if s.TEP == last.TEP {
			as = append(as, s)
		}
	}
	ra = eno.Result{TEP: last.TEP, TEPByte: last.Byte(), Role: eno.RoleA, Transcript: append(aOpt, bOpt...),
		ASubs: as, BSubs: []eno.Suboption{last}}
	rb = ra
	rb.Role = eno.RoleB
	return ra, rb
}

// TestTC25_AbandonedAnswerCountsAsUsed: a secret B agreed to for a
// connection that never completes is gone, like the index A offered
// (TC-24, TC-25; Cache.takeForAnswer), and the next connection resumes
// with ss[2].
func TestTC25_AbandonedAnswerCountsAsUsed(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	sa, sb := cfgA.NewSession(host(cfgB), Policy{}), cfgB.NewSession(host(cfgA), Policy{})
	if _, _, err := negotiate(t, sa, sb); err != nil {
		t.Fatal(err)
	}
	sa.Abandon()
	sb.Abandon()
	if got := chainSecret(t, cfgB.Cache).Index(); got != 2 {
		t.Fatalf("B's chain at ss[%d] after abandon, want ss[2]", got)
	}
	if got := chainSecret(t, cfgA.Cache).Index(); got != 2 {
		t.Fatalf("A's chain at ss[%d] after abandon, want ss[2]", got)
	}
	ca, _ := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if !ca.Resumed() {
		t.Fatal("no resumption after an abandoned attempt")
	}
}

// TestTC27_CachePolicies: IgnoreResumption forces a fresh exchange (either
// side), NoCache caches nothing, FlushCache drops what a connection used
// or created (TC-27).
func TestTC27_CachePolicies(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	ca, _ := connPair(t, cfgA, cfgB, Policy{NoCache: true}, Policy{}, pipeStreams)
	if cfgA.Cache.Len() != 0 || cfgB.Cache.Len() != 1 {
		t.Fatalf("NoCache: caches hold %d and %d chains", cfgA.Cache.Len(), cfgB.Cache.Len())
	}
	ca.FlushCache() // nothing to flush at A
	cfgB.Cache.FlushAll()

	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	for _, side := range []string{"A", "B"} {
		pa, pb := Policy{}, Policy{}
		if side == "A" {
			pa.IgnoreResumption = true
		} else {
			pb.IgnoreResumption = true
		}
		ca, cb := connPair(t, cfgA, cfgB, pa, pb, pipeStreams)
		if ca.Resumed() || cb.Resumed() {
			t.Fatalf("IgnoreResumption at %s: resumed", side)
		}
	}
	// Flush: the resumed connection's chain disappears at both ends when
	// both flush; a later connection is fresh.
	cfgA.Cache.FlushAll()
	cfgB.Cache.FlushAll()
	ca, cb := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	ca2, cb2 := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if !ca2.Resumed() {
		t.Fatal("no resumption")
	}
	ca2.FlushCache()
	cb2.FlushCache()
	if cfgA.Cache.Len() != 0 || cfgB.Cache.Len() != 0 {
		t.Fatalf("after FlushCache caches hold %d / %d", cfgA.Cache.Len(), cfgB.Cache.Len())
	}
	_ = ca
	_ = cb
	ca3, _ := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if ca3.Resumed() {
		t.Fatal("resumed after flush")
	}
	// NoCache on a resumed connection: the chain ends there.
	ca4, _ := connPair(t, cfgA, cfgB, Policy{NoCache: true}, Policy{}, pipeStreams)
	if !ca4.Resumed() || cfgA.Cache.Len() != 0 {
		t.Fatalf("NoCache resumed: resumed %v, A holds %d chains", ca4.Resumed(), cfgA.Cache.Len())
	}
}

// TestTC26_OriginalBResumes: the host that was B may open actively and
// resume; keys keep their original direction (TC-26, also covered by the
// vector test).
func TestTC26_OriginalBResumes(t *testing.T) {
	checkLeaks(t)
	cfgA, cfgB := resumeConfigs()
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	// cfgB's host now opens: connPair(active, passive).
	cb, ca := connPair(t, cfgB, cfgA, Policy{}, Policy{}, pipeStreams)
	if !cb.Resumed() || !ca.Resumed() || cb.Role() != eno.RoleA {
		t.Fatalf("resumed %v/%v role %v", cb.Resumed(), ca.Resumed(), cb.Role())
	}
	exchange(t, ca, cb, "x")
	exchange(t, cb, ca, "y")
}

// TestSplitByRole: with SplitByRole, chains are only offered by their
// original A and only answered by their original B (§3.5 MAY).
func TestSplitByRole(t *testing.T) {
	checkLeaks(t)
	clk := newClock()
	cfgA := &Config{Resumption: true, Cache: NewCache(CacheConfig{SplitByRole: true, Now: clk.Now})}
	cfgB := &Config{Resumption: true, Cache: NewCache(CacheConfig{SplitByRole: true, Now: clk.Now})}
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if subs := cfgB.NewSession(host(cfgA), Policy{}).Offer(); subs[len(subs)-1].V {
		t.Fatal("original B offered resumption")
	}
	cb, _ := connPair(t, cfgB, cfgA, Policy{}, Policy{}, pipeStreams)
	if cb.Resumed() {
		t.Fatal("original A answered resumption")
	}
	ca, _ := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if !ca.Resumed() {
		t.Fatal("original A could not resume")
	}
}

// TestHandshakeRejectsUnknownResumption: a result claiming resumption that
// this session never negotiated is a handshake error.
func TestHandshakeRejectsUnknownResumption(t *testing.T) {
	checkLeaks(t)
	a, _ := pipeStreams(t)
	r := eno.Result{TEP: 0x23, TEPByte: 0xa3, Role: eno.RoleA}
	_, err := (&Config{}).NewSession("b", Policy{}).Handshake(t.Context(), a, r)
	wantHandshakeError(t, hsResult{err: err}, "no-resumption-secret")
	s := (&Config{}).NewSession("b", Policy{})
	s.Abandon()
	_, err = s.Handshake(t.Context(), a, r)
	wantHandshakeError(t, hsResult{err: err}, "internal")
}

// openAll opens every frame of a recorded stream direction and returns the
// concatenated data.
func openAll(t testing.TB, aead *schedule.AEAD, mk *schedule.MasterKey, d schedule.Direction, off uint64, wire []byte) []byte {
	t.Helper()
	op, err := frame.NewOpener(aead, mk, d, off)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for len(wire) > 0 {
		n, ok := frame.FrameLen(wire)
		if !ok || n > len(wire) {
			t.Fatalf("partial frame at the end (%d bytes)", len(wire))
		}
		data, _, _, _, err := op.Open(nil, bytes.Clone(wire[:n]))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		out = append(out, data...)
		wire = wire[n:]
	}
	return out
}

// TestTC21_SimultaneousOpenResumption: two hosts that open simultaneously
// (one with b = 1 by prior agreement) and offer the same secret resume;
// with different secrets ENO finds the TEP invalid on both sides alike
// (TC-21; roles by crypt/eno).
func TestTC21_SimultaneousOpenResumption(t *testing.T) {
	checkLeaks(t)
	cfgX, cfgY := resumeConfigs()
	connPair(t, cfgX, cfgY, Policy{}, Policy{}, pipeStreams) // X was A, Y was B
	simOpen := func(sx, sy *Session) (rx, ry eno.Result, errX, errY error) {
		nx := eno.NewActive(eno.Config{Offer: sx.Offer(), Policy: sx})
		ny := eno.NewActive(eno.Config{Offer: sy.Offer(), Policy: sy, SetB: true})
		synX, synY := nx.Outgoing(true, false), ny.Outgoing(true, false)
		ny.Incoming(true, false, synX, 0)
		nx.Incoming(true, false, synY, 0)
		saX, saY := nx.Outgoing(true, true), ny.Outgoing(true, true)
		ny.Incoming(true, true, saX, 0)
		nx.Incoming(true, true, saY, 0)
		ny.Incoming(false, true, nx.Outgoing(false, true), 0)
		nx.Incoming(false, true, ny.Outgoing(false, true), 0)
		rx, errX = nx.Result()
		ry, errY = ny.Result()
		return
	}
	sx, sy := cfgX.NewSession(host(cfgY), Policy{}), cfgY.NewSession(host(cfgX), Policy{})
	rx, ry, errX, errY := simOpen(sx, sy)
	if errX != nil || errY != nil {
		t.Fatalf("simultaneous open: %v / %v", errX, errY)
	}
	if rx.Role != eno.RoleA || ry.Role != eno.RoleB || rx.TEPByte != 0xa3 {
		t.Fatalf("roles %v/%v, TEP byte %#x", rx.Role, ry.Role, rx.TEPByte)
	}
	a, b := pipeStreams(t)
	cx, cy, err1, err2 := runHandshakes(t, sx, sy, rx, ry, a, b)
	if err1 != nil || err2 != nil || !cx.Resumed() || !bytes.Equal(cx.SessionID(), cy.SessionID()) {
		t.Fatalf("handshake %v / %v", err1, err2)
	}
	exchange(t, cx, cy, "crossing")
	exchange(t, cy, cx, "SYNs")

	// Out of step (X skipped an index): both sides reject the TEP.
	cfgX.NewSession(host(cfgY), Policy{}).Abandon()
	skip := cfgX.NewSession(host(cfgY), Policy{})
	skip.Offer()
	skip.Abandon()
	sx, sy = cfgX.NewSession(host(cfgY), Policy{}), cfgY.NewSession(host(cfgX), Policy{})
	_, _, errX, errY = simOpen(sx, sy)
	var fx, fy *eno.FallbackError
	if !errors.As(errX, &fx) || !errors.As(errY, &fy) {
		t.Fatalf("out-of-step simultaneous open: %v / %v, want fallback on both", errX, errY)
	}
	sx.Abandon()
	sy.Abandon()
}
