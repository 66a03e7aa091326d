package stack

import (
	"bytes"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// countingRand counts the random bytes a stack's tcpcrypt draws: a fresh
// key exchange draws a nonce and a private key, a resumed session only its
// resumption nonce (at most 8 bytes).
type countingRand struct{ n atomic.Int64 }

func (c *countingRand) Read(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return rand.Read(b)
}

// resumingHost is one side's resumption cache and randomness counter.
type resumingHost struct {
	cache *tcpcrypt.Cache
	rand  *countingRand
}

func (h *resumingHost) options(o *Options) {
	h.cache = tcpcrypt.NewCache(tcpcrypt.CacheConfig{})
	h.rand = &countingRand{}
	o.TCPCrypt = &tcpcrypt.Config{Resumption: true, Cache: h.cache, Rand: h.rand}
}

// isResumptionSYN reports whether s is a SYN offering resumption: a
// tcpcrypt suboption with the v bit and data (RFC 8548 §3.5).
func isResumptionSYN(s wiretest.Segment) bool {
	if !s.SYNOnly() {
		return false
	}
	for _, opt := range s.ENO() {
		o, err := eno.ParseSYNForm(opt)
		if err != nil {
			continue
		}
		for _, sub := range o.Subs {
			if sub.V && len(sub.Data) >= 9 {
				return true
			}
		}
	}
	return false
}

// startsWithInit reports whether a stream starts with an Init1 or Init2
// message (RFC 8548 §4.1 magic numbers).
func startsWithInit(stream []byte) bool {
	return bytes.HasPrefix(stream, []byte{0x15, 0x10, 0x1a, 0x0e}) ||
		bytes.HasPrefix(stream, []byte{0x09, 0x71, 0x05, 0xe0})
}

func addrPort(t testing.TB, c *Conn, local bool) netip.AddrPort {
	t.Helper()
	a := c.RemoteAddr()
	if local {
		a = c.LocalAddr()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("address %v: %v", a, err)
	}
	return ap
}

// A resumed connection between two stacks (RFC 8548 §3.5) sends no Init1
// or Init2 and does no key generation (TC-19), and gets a session ID of its
// own that starts with the v bit (TC-20), equal at both ends.
func TestResumedSessionSkipsKeyExchange(t *testing.T) {
	var ha, hb resumingHost
	p := newPair(t, pairOpts{a: ha.options, b: hb.options})
	var ids [][]byte
	for i, wantResumed := range []bool{false, true, true} {
		ra, rb := ha.rand.n.Load(), hb.rand.n.Load()
		client, server := dialAccept(t, p, false, uint16(90+i), nil, nil)
		c, s := addrPort(t, client, true), addrPort(t, client, false)
		checkEncrypted(t, client, server)
		exchange(t, client, server, []byte("question"), []byte("answer"))
		cn, sn := client.Negotiation(), server.Negotiation()
		if cn.Resumed != wantResumed || sn.Resumed != wantResumed {
			t.Fatalf("connection %d: resumed client=%v server=%v, want %v", i, cn.Resumed, sn.Resumed, wantResumed)
		}
		if !bytes.Equal(cn.SessionID, sn.SessionID) {
			t.Fatalf("connection %d: session IDs differ", i)
		}
		for _, id := range ids {
			if bytes.Equal(id, cn.SessionID) {
				t.Fatalf("connection %d reuses a session ID", i)
			}
		}
		ids = append(ids, cn.SessionID)

		up, down := p.capAB.Payloads(c, s), p.capBA.Payloads(s, c)
		drawnA, drawnB := ha.rand.n.Load()-ra, hb.rand.n.Load()-rb
		t.Logf("connection %d: resumed %v, random bytes drawn A %d B %d, session ID %x", i, cn.Resumed, drawnA, drawnB, cn.SessionID[:4])
		if !wantResumed {
			if !startsWithInit(up) || !startsWithInit(down) {
				t.Fatalf("fresh connection %d: streams do not start with Init1/Init2", i)
			}
			continue
		}
		if startsWithInit(up) || startsWithInit(down) {
			t.Fatalf("resumed connection %d: Init message on the wire", i)
		}
		if drawnA > 8 || drawnB > 8 {
			t.Fatalf("resumed connection %d drew %d/%d random bytes: a key was generated", i, drawnA, drawnB)
		}
		if cn.SessionID[0]&0x80 == 0 {
			t.Fatalf("resumed session ID starts with %#x, want the v bit (TC-20)", cn.SessionID[0])
		}
	}
}

// Connections dialled while others are still in their handshake each
// resume with a secret of their own (RFC 8548 §3.5: the lowest index not
// yet used), in whatever order their SYNs reach the passive side, instead
// of all but one falling back to a fresh key exchange while the first
// held the chain (TC-24, TC-25). LookAhead+1 dials at once stay within the
// passive side's look-ahead and skipped secrets in any arrival order.
func TestConcurrentDialsResume(t *testing.T) {
	var ha, hb resumingHost
	p := newPair(t, pairOpts{a: ha.options, b: hb.options})
	dialAccept(t, p, false, 97, nil, nil) // fresh: starts the chain
	l, err := p.b.Listen(addrB4, 98, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := ctxT(t)
	const n = tcpcrypt.DefaultLookAhead + 1
	type result struct {
		neg Negotiation
		err error
	}
	accepted, dialled := make(chan result, n), make(chan result, n)
	go func() {
		for range n {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				accepted <- result{err: err}
				return
			}
			accepted <- result{neg: c.Negotiation()}
			t.Cleanup(func() { c.Close() })
		}
	}()
	for range n {
		go func() {
			c, err := p.a.Dial(ctx, netip.AddrPortFrom(addrA4, 0), netip.AddrPortFrom(addrB4, 98), nil)
			if err != nil {
				dialled <- result{err: err}
				return
			}
			dialled <- result{neg: c.Negotiation()}
			t.Cleanup(func() { c.Close() })
		}()
	}
	ids := map[string]int{}
	for _, ch := range []chan result{dialled, accepted} {
		for range n {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !r.neg.Resumed {
				t.Fatalf("a concurrent connection did not resume: %+v", r.neg)
			}
			ids[string(r.neg.SessionID)]++
		}
	}
	for id, k := range ids {
		if k != 2 {
			t.Fatalf("session ID %x seen %d times, want once at each end", id[:4], k)
		}
	}
}

// A resumption SYN that is lost, refused by the passive opener, or stripped
// of its ENO option by the path falls back correctly: the data arrives,
// and later connections still work (RFC 8548 §3.5, TC-24).
func TestResumptionSYNLostOrRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		// tamper applies to the first resumption SYN only.
		drop, strip bool
		flushB      bool // B forgets its cached secrets before the attempt
		// What the attempt ends as, and whether the next connection
		// resumes.
		wantEncrypted, wantResumed, nextResumed bool
	}{
		// The retransmitted SYN carries the same option (ENO-20) and
		// resumes.
		{name: "lost", drop: true, wantEncrypted: true, wantResumed: true, nextResumed: true},
		// B has no matching secret: it answers a fresh exchange (TC-16).
		{name: "refused", flushB: true, wantEncrypted: true, wantResumed: false},
		// The path strips ENO: plain TCP. A counts the offered index as
		// used (TC-24); B's look-ahead finds the next one.
		{name: "stripped", strip: true, wantEncrypted: false, nextResumed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ha, hb resumingHost
			var armed atomic.Bool
			var tampered atomic.Int32
			hook := func(pk *wiretest.Packet) wiretest.Verdict {
				s, ok := wiretest.ParseTCP(pk.Data)
				if !ok || !armed.Load() || !isResumptionSYN(s) {
					return wiretest.Verdict{}
				}
				armed.Store(false)
				tampered.Add(1)
				if tc.strip {
					wiretest.StripENO(pk.Data)
				}
				return wiretest.Verdict{Drop: tc.drop}
			}
			p := newPair(t, pairOpts{a: ha.options, b: hb.options, hookAB: hook})

			client, server := dialAccept(t, p, false, 100, nil, nil)
			checkEncrypted(t, client, server)
			exchange(t, client, server, []byte("prime"), []byte("cache"))

			if tc.flushB {
				hb.cache.FlushAll()
			}
			armed.Store(tc.drop || tc.strip)
			client, server = dialAccept(t, p, false, 101, nil, nil)
			if want := tc.drop || tc.strip; want && tampered.Load() != 1 {
				t.Fatalf("the hook tampered with %d resumption SYNs, want 1", tampered.Load())
			}
			cn, sn := client.Negotiation(), server.Negotiation()
			if cn.Encrypted != tc.wantEncrypted || sn.Encrypted != tc.wantEncrypted {
				t.Fatalf("encrypted client=%v server=%v, want %v (reason %v %s)", cn.Encrypted, sn.Encrypted, tc.wantEncrypted, cn.Reason, cn.Detail)
			}
			if cn.Resumed != tc.wantResumed || sn.Resumed != tc.wantResumed {
				t.Fatalf("resumed client=%v server=%v, want %v", cn.Resumed, sn.Resumed, tc.wantResumed)
			}
			if !tc.wantEncrypted && cn.Reason == eno.ReasonNone {
				t.Fatal("plain connection without a recorded reason")
			}
			exchange(t, client, server, []byte("after "+tc.name), []byte("intact"))

			client, server = dialAccept(t, p, false, 102, nil, nil)
			checkEncrypted(t, client, server)
			exchange(t, client, server, []byte("next"), []byte("works"))
			if tc.nextResumed && (!client.Negotiation().Resumed || !server.Negotiation().Resumed) {
				t.Fatalf("the next connection did not resume")
			}
		})
	}
}

// ENO-18, ENO-19 with resumption: a resumed A may send full-sized data
// segments at once (no Init messages to wait for), before any non-SYN
// segment from B. Each must still carry 45 02 (RFC 8547 §4.6), or B, whose
// first ACK segment is then a data segment because the third segment was
// lost, would fall back while A encrypts. The shim keeps room for the
// option by clamping the MSS the peer announced.
func TestENO18_ResumedDataCarriesENO(t *testing.T) {
	// With SACK, gVisor keeps option space free on data segments; without
	// it (the path or the peer declines SACK) segments are full-sized.
	t.Run("sack", func(t *testing.T) { resumedDataCarriesENO(t, false) })
	t.Run("no-sack", func(t *testing.T) { resumedDataCarriesENO(t, true) })
}

// noSACK replaces the SACK-permitted option of SYN segments with NOPs.
func noSACK(pk *wiretest.Packet) wiretest.Verdict {
	s, ok := wiretest.ParseTCP(pk.Data)
	if !ok || !s.SYN() {
		return wiretest.Verdict{}
	}
	for i := 0; i < len(s.Options); {
		switch k := s.Options[i]; {
		case k == 0:
			i = len(s.Options)
		case k == 1:
			i++
		case i+1 >= len(s.Options) || s.Options[i+1] < 2:
			i = len(s.Options)
		default:
			l := int(s.Options[i+1])
			if k == 4 && l == 2 {
				s.Options[i], s.Options[i+1] = 1, 1
			}
			i += l
		}
	}
	wiretest.FixTCPChecksum(pk.Data, s)
	return wiretest.Verdict{}
}

func resumedDataCarriesENO(t *testing.T, withoutSACK bool) {
	var ha, hb resumingHost
	var armed atomic.Bool
	var dropped atomic.Int32
	p := newPair(t, pairOpts{a: ha.options, b: hb.options, hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
		// Drop A's third segment (its first pure ACK) once armed.
		if s, ok := wiretest.ParseTCP(pk.Data); ok && armed.Load() && !s.SYN() && len(s.Payload) == 0 && dropped.Add(1) == 1 {
			return wiretest.Verdict{Drop: true}
		}
		return wiretest.Verdict{}
	}})
	if withoutSACK {
		p.hub.SetHook(p.pb, p.pa, p.capBA.Hook(noSACK))
	}
	c0, s0 := dialAccept(t, p, false, 110, nil, nil)
	exchange(t, c0, s0, []byte("prime"), []byte("cache"))

	l, err := p.b.Listen(addrB4, 111, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := ctxT(t)
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	p.capAB.Reset()
	armed.Store(true)
	client, err := p.a.Dial(ctx, netip.AddrPortFrom(addrA4, 0), netip.AddrPortFrom(addrB4, 111), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	want := pattern(200<<10, "RESUMED-EARLY-DATA|")
	go func() {
		client.Write(want)
		client.CloseWrite()
	}()
	server := <-accepted
	if server == nil {
		t.Fatal("no connection accepted")
	}
	defer server.Close()
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("read: %v (server %+v)", err, server.Negotiation())
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("received %d bytes, want %d identical; first difference at %d: got %q want %q", len(got), len(want), i, got[max(0, i-40):min(len(got), i+60)], want[max(0, i-40):min(len(want), i+60)])
	}
	if !client.Negotiation().Resumed || !server.Negotiation().Resumed {
		t.Fatalf("not resumed: client %+v server %+v", client.Negotiation(), server.Negotiation())
	}
	if dropped.Load() == 0 {
		t.Fatal("the third segment was not dropped")
	}
	if p.a.Counters().MSSClamped.Load() == 0 {
		t.Fatal("no SYN-ACK had its MSS clamped")
	}
	if n := p.a.Counters().NoRoom.Load(); n != 0 {
		t.Fatalf("%d segments went out without ENO for lack of room", n)
	}
	// Every data segment A sent carried 45 02 until B's first non-SYN
	// segment, which here comes after A's first data.
	for _, s := range p.capAB.Segments() {
		if len(s.Payload) > 0 {
			if len(s.ENO()) == 0 {
				t.Fatalf("A's first data segment (%d bytes) has no ENO option", len(s.Payload))
			}
			break
		}
	}
}

// TestResumeReorderedBurst (issue 13, hole 5): 64 connections dialled at
// once from one host each offer their own resumption index; the wire holds
// their SYNs until all 64 are out and delivers them in a random order.
// Every connection resumes at both ends and B generates no key (a resumed
// session draws at most its 8-byte nonce). Before, B recognised only 3
// secrets past its next unused one, and most of a reordered burst made a
// fresh key exchange.
func TestResumeReorderedBurst(t *testing.T) {
	const n = 64
	var ha, hb resumingHost
	var (
		armed    atomic.Bool
		held     [][]byte
		seen     = map[uint16]bool{}
		released atomic.Bool
	)
	rng := mrand.New(mrand.NewPCG(13, 5))
	// The hook runs on the A→B pump goroutine only: held, seen and rng
	// need no lock.
	hook := func(pk *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || !armed.Load() || released.Load() || !isResumptionSYN(s) {
			return wiretest.Verdict{}
		}
		if seen[s.Src.Port()] {
			return wiretest.Verdict{Drop: true} // a retransmission of a held SYN
		}
		seen[s.Src.Port()] = true
		held = append(held, bytes.Clone(pk.Data))
		if len(held) < n {
			return wiretest.Verdict{Drop: true}
		}
		released.Store(true)
		rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
		return wiretest.Verdict{Drop: true, Before: held}
	}
	p := newPair(t, pairOpts{a: ha.options, b: hb.options, hookAB: hook})
	dialAccept(t, p, false, 120, nil, nil) // fresh: starts the chain
	l, err := p.b.Listen(addrB4, 121, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := ctxT(t)
	type result struct {
		neg Negotiation
		err error
	}
	accepted, dialled := make(chan result, n), make(chan result, n)
	go func() {
		for range n {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				accepted <- result{err: err}
				return
			}
			accepted <- result{neg: c.Negotiation()}
			t.Cleanup(func() { c.Close() })
		}
	}()
	drawnB := hb.rand.n.Load()
	armed.Store(true)
	for range n {
		go func() {
			c, err := p.a.Dial(ctx, netip.AddrPortFrom(addrA4, 0), netip.AddrPortFrom(addrB4, 121), nil)
			if err != nil {
				dialled <- result{err: err}
				return
			}
			dialled <- result{neg: c.Negotiation()}
			t.Cleanup(func() { c.Close() })
		}()
	}
	fresh := 0
	for _, ch := range []chan result{dialled, accepted} {
		for range n {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			if !r.neg.Encrypted {
				t.Fatalf("a connection of the burst is not encrypted: %+v", r.neg)
			}
			if !r.neg.Resumed {
				fresh++
			}
		}
	}
	if !released.Load() {
		t.Fatal("the wire did not hold and reorder the burst")
	}
	if fresh > 0 {
		t.Fatalf("%d of %d connection ends made a fresh key exchange", fresh, 2*n)
	}
	if d := hb.rand.n.Load() - drawnB; d > n*8 {
		t.Fatalf("B drew %d random bytes for %d resumed sessions: a key was generated", d, n)
	}
	if got := p.b.Counters().Resumed.Load(); got < n {
		t.Fatalf("B counted %d resumed handshakes, want %d", got, n)
	}
	// The cache is back to its baseline: the one chain at each end.
	if ha.cache.Len() != 1 || hb.cache.Len() != 1 {
		t.Fatalf("chains held after the burst: A %d, B %d, want 1 each", ha.cache.Len(), hb.cache.Len())
	}
}

// TestResumptionSweep (issue 13, hole 5): the stack's sweeper erases
// expired resumption secrets while nothing touches the cache (an idle
// daemon does not keep a day-old chain's future in memory), and mirrors
// the cache's counters.
func TestResumptionSweep(t *testing.T) {
	var skew atomic.Int64 // the cache's clock runs ahead of time.Now by skew
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	mk := func(o *Options) {
		o.SweepInterval = 10 * time.Millisecond
		o.TCPCrypt = &tcpcrypt.Config{Resumption: true, Cache: tcpcrypt.NewCache(tcpcrypt.CacheConfig{Lifetime: time.Hour, Now: now})}
	}
	p := newPair(t, pairOpts{a: mk, b: mk})
	client, server := dialAccept(t, p, false, 130, nil, nil)
	exchange(t, client, server, []byte("prime"), []byte("cache"))
	cache := p.b.tcpcrypt().Cache
	if cache.Len() != 1 {
		t.Fatalf("B holds %d chains, want 1", cache.Len())
	}
	skew.Store(int64(2 * time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for cache.Len() != 0 || p.b.Counters().ResumeExpired.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("an expired chain is still held (%d chains, %d expired counted)", cache.Len(), p.b.Counters().ResumeExpired.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
