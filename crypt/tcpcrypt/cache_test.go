package tcpcrypt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

var aes128 = []schedule.AEADID{schedule.AES128GCM}

func secret(b byte, i uint64) *schedule.SessionSecret {
	return schedule.SessionSecretFromBytes(bytes.Repeat([]byte{b}, schedule.KLen), i)
}

func isZeroed(s *schedule.SessionSecret) bool {
	return bytes.Equal(s.Bytes(), make([]byte, schedule.KLen))
}

// TestCacheLifetime: a chain expires Lifetime after its creation, even if
// used meanwhile, and its secret is zeroed (TC-23: no lingering secrets).
func TestCacheLifetime(t *testing.T) {
	clk := newClock()
	c := NewCache(CacheConfig{Lifetime: time.Minute, Now: clk.Now})
	ss := secret(1, 1)
	c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, ss)
	clk.Advance(40 * time.Second)
	r := c.takeForOffer("p", kex.X25519, aes128)
	if r == nil {
		t.Fatal("no secret before expiry")
	}
	c.release(r, false)
	clk.Advance(30 * time.Second)
	if r := c.takeForOffer("p", kex.X25519, aes128); r != nil {
		t.Fatal("secret offered after the chain's lifetime")
	}
	if c.Len() != 0 {
		t.Fatalf("Len = %d after expiry", c.Len())
	}
	if !isZeroed(ss) {
		t.Fatal("expired secret not zeroed")
	}
}

// TestCacheBounds: MaxPerPeer and MaxEntries drop the oldest chain, zeroed.
func TestCacheBounds(t *testing.T) {
	c := NewCache(CacheConfig{MaxEntries: 5, MaxPerPeer: 2})
	var first []*schedule.SessionSecret
	for i := range 3 {
		ss := secret(byte(i+1), 1)
		first = append(first, ss)
		c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, ss)
	}
	if c.Len() != 2 || !isZeroed(first[0]) || isZeroed(first[2]) {
		t.Fatalf("per-peer bound: Len %d, oldest zeroed %v", c.Len(), isZeroed(first[0]))
	}
	// The newest chain is offered first.
	r := c.takeForOffer("p", kex.X25519, aes128)
	if r == nil || !r.ss.Equal(secret(3, 1)) {
		t.Fatal("newest chain not preferred")
	}
	c.release(r, false)
	for i := range 6 {
		c.add(fmt.Sprint("peer", i), kex.P256, eno.RoleB, schedule.AES128GCM, secret(byte(10+i), 1))
	}
	if c.Len() != 5 {
		t.Fatalf("Len = %d, want MaxEntries 5", c.Len())
	}
	c.FlushPeer("peer5")
	if c.Len() != 4 {
		t.Fatalf("Len = %d after FlushPeer", c.Len())
	}
	c.FlushAll()
	if c.Len() != 0 {
		t.Fatal("FlushAll left chains")
	}
}

// TestCacheLookAhead: the passive side recognises resume[i..i+LookAhead];
// a secret it skipped still matches once, and only the newest LookAhead
// skipped ones are kept, zeroed when pushed out (docs/decisions.md: the look-ahead
// decision).
func TestCacheLookAhead(t *testing.T) {
	c := NewCache(CacheConfig{LookAhead: 2})
	ss1 := secret(9, 1)
	chain := []*schedule.SessionSecret{ss1}
	for range 5 {
		chain = append(chain, chain[len(chain)-1].Next())
	}
	c.add("p", kex.X448, eno.RoleB, schedule.ChaCha20Poly1305, schedule.SessionSecretFromBytes(ss1.Bytes(), 1))
	peerHalf := func(s *schedule.SessionSecret) []byte {
		id := s.ResumeID()
		return id[:ResumeHalfLen] // we were B: the peer (original A) sends the first half
	}
	chacha := []schedule.AEADID{schedule.ChaCha20Poly1305}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[3]), chacha); r != nil {
		t.Fatal("matched beyond the look-ahead")
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[2]), aes128); r != nil {
		t.Fatal("matched a chain of another AEAD")
	}
	r := c.takeForAnswer("p", kex.X448, peerHalf(chain[2]), chacha)
	if r == nil || !r.ss.Equal(chain[2]) || r.ss.Index() != 3 || r.origRole != eno.RoleB {
		t.Fatal("look-ahead match at ss[3] failed")
	}
	c.release(r, false)
	// ss[2] was skipped: it matches once, out of order.
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[1]), chacha); r == nil || !r.ss.Equal(chain[1]) {
		t.Fatal("a skipped secret does not match")
	} else {
		c.release(r, false)
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[1]), chacha); r != nil {
		t.Fatal("a skipped secret matched twice")
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[3]), chacha); r == nil || r.ss.Index() != 4 {
		t.Fatal("ss[4] does not match after ss[3] was used")
	}
	// Our own half of the next unused secret, ss[5], never matches (it
	// is the peer's we look for); the peer's does.
	id := chain[4].ResumeID()
	if r := c.takeForAnswer("p", kex.X448, id[ResumeHalfLen:], chacha); r != nil {
		t.Fatal("our own half matched")
	}
	if r := c.takeForAnswer("p", kex.X448, []byte{1, 2, 3}, chacha); r != nil {
		t.Fatal("short half matched")
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[4]), chacha); r == nil || r.ss.Index() != 5 {
		t.Fatal("ss[5] does not match")
	}
	// Only the newest LookAhead (2) skipped secrets are kept: skipping
	// ss[6] and ss[7] pushes out ss[1], skipped earlier and never matched.
	var oldest *schedule.SessionSecret
	c.mu.Lock()
	for _, ch := range c.chains {
		oldest = ch.win.skipped[0].ss
	}
	c.mu.Unlock()
	for range 2 {
		chain = append(chain, chain[len(chain)-1].Next())
	}
	// Now at ss[6]: match ss[8] (k = 2), skipping ss[6] and ss[7].
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[7]), chacha); r == nil || r.ss.Index() != 8 {
		t.Fatal("ss[8] does not match")
	}
	if !isZeroed(oldest) {
		t.Fatal("a skipped secret pushed out was not zeroed")
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[0]), chacha); r != nil {
		t.Fatal("a pushed-out secret matched")
	}
	for _, i := range []int{5, 6} {
		r := c.takeForAnswer("p", kex.X448, peerHalf(chain[i]), chacha)
		if r == nil || r.ss.Index() != uint64(i+1) {
			t.Fatalf("skipped ss[%d] does not match", i+1)
		}
		c.release(r, false)
	}
}

// TestCacheFlushWhileReserved: flushing a chain while a connection holds
// a secret taken from it zeroes the chain's next secret at once and the
// taken one on release; nothing can resume from the chain (TC-27).
func TestCacheFlushWhileReserved(t *testing.T) {
	c := NewCache(CacheConfig{})
	id := c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(5, 1))
	r := c.takeForOffer("p", kex.X25519, aes128)
	c.mu.Lock()
	next := c.chains[id].ss
	c.mu.Unlock()
	c.flushChain(id)
	if c.Len() != 0 || !isZeroed(next) {
		t.Fatal("flushed chain's next secret kept")
	}
	used := r.ss
	c.release(r, false)
	if !isZeroed(used) || c.takeForOffer("p", kex.X25519, aes128) != nil {
		t.Fatal("released secret of a flushed chain kept")
	}
	// endChain drops the chain a secret came from.
	c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(6, 1))
	c.release(c.takeForOffer("p", kex.X25519, aes128), true)
	if c.Len() != 0 {
		t.Fatal("release with endChain kept the chain")
	}
}

// TestCacheConcurrentTakes: connections in flight at once each take their
// own index of one chain, the lowest not yet used (RFC 8548 §3.5, TC-24,
// TC-25), and the peer recognises their offers in any order within its
// look-ahead. Before, a secret was held back until its handshake ended,
// and concurrent connections made fresh key exchanges instead.
func TestCacheConcurrentTakes(t *testing.T) {
	ss1 := secret(7, 1)
	a := NewCache(CacheConfig{})
	b := NewCache(CacheConfig{})
	a.add("b", kex.X25519, eno.RoleA, schedule.AES128GCM, schedule.SessionSecretFromBytes(ss1.Bytes(), 1))
	b.add("a", kex.X25519, eno.RoleB, schedule.AES128GCM, schedule.SessionSecretFromBytes(ss1.Bytes(), 1))
	want := ss1
	var offers []*reservation
	for i := range 3 {
		r := a.takeForOffer("b", kex.X25519, aes128)
		if r == nil || r.ss.Index() != uint64(i+1) || !r.ss.Equal(want) {
			t.Fatalf("offer %d: got %v, want ss[%d]", i, r, i+1)
		}
		offers = append(offers, r)
		want = want.Next()
	}
	half := func(r *reservation) []byte {
		id := r.ss.ResumeID()
		return id[:ResumeHalfLen] // A's half
	}
	// B sees the second offer first: ss[1] is skipped and matches when
	// its SYN comes.
	for _, i := range []int{1, 0, 2} {
		r := b.takeForAnswer("a", kex.X25519, half(offers[i]), aes128)
		if r == nil || !r.ss.Equal(offers[i].ss) {
			t.Fatalf("offer %d not recognised", i)
		}
		b.release(r, false)
	}
	for _, r := range offers {
		used := r.ss
		a.release(r, false)
		if !isZeroed(used) {
			t.Fatal("released secret not zeroed")
		}
	}
	if a.Len() != 1 || b.Len() != 1 {
		t.Fatal("chains lost")
	}
}

// chainPair starts the same chain at two caches: a, where we played A in
// the fresh session, and b, where we played B. Each names the other peer.
func chainPair(a, b *Cache, peerOfA, peerOfB string, fill byte) {
	ss1 := secret(fill, 1)
	a.add(peerOfA, kex.X25519, eno.RoleA, schedule.AES128GCM, schedule.SessionSecretFromBytes(ss1.Bytes(), 1))
	b.add(peerOfB, kex.X25519, eno.RoleB, schedule.AES128GCM, schedule.SessionSecretFromBytes(ss1.Bytes(), 1))
}

// aHalf is the half of resume[i] the original A sends.
func aHalf(ss *schedule.SessionSecret) []byte {
	id := ss.ResumeID()
	return id[:ResumeHalfLen]
}

// TestCacheReorder64 (issue 13, hole 5): 64 resumption offers taken at
// once by concurrent connections reach the passive opener in any order
// and every one of them resumes. Before, B recognised only the next
// secret and 3 beyond it (and as many skipped ones), so in a burst of 20
// most SYNs found no secret and made a fresh key exchange.
func TestCacheReorder64(t *testing.T) {
	const n = 64
	for seed := range uint64(8) {
		a, b := NewCache(CacheConfig{}), NewCache(CacheConfig{})
		chainPair(a, b, "b", "a", byte(seed+1))
		// Two bursts: the second starts where the first left the chain.
		for burst := range 2 {
			offers := make([]*reservation, n)
			for i := range offers {
				offers[i] = a.takeForOffer("b", kex.X25519, aes128)
				if offers[i] == nil {
					t.Fatalf("seed %d burst %d: offer %d: no secret", seed, burst, i)
				}
			}
			rng := rand.New(rand.NewPCG(seed, uint64(burst)))
			for _, i := range rng.Perm(n) {
				r := b.takeForAnswer("a", kex.X25519, aHalf(offers[i].ss), aes128)
				if r == nil || !r.ss.Equal(offers[i].ss) {
					t.Fatalf("seed %d burst %d: offer of ss[%d] not recognised", seed, burst, offers[i].ss.Index())
				}
				b.release(r, false)
			}
			for _, r := range offers {
				a.release(r, false)
			}
		}
		if a.Len() != 1 || b.Len() != 1 {
			t.Fatalf("seed %d: chains lost", seed)
		}
	}
}

// TestCacheLookAheadBoundedWork: B derives identifiers only when a peer's
// offer is first matched against a chain (lazily), then only as the chain
// advances, a bounded number per offer; an offer that matches nothing, a
// flood of them included, derives nothing. Identifiers consumed or pushed
// out leave the lookup map (bounded by the look-ahead and the skipped
// secrets), and the secrets passed over are zeroed when pushed out.
func TestCacheLookAheadBoundedWork(t *testing.T) {
	const w = 16
	a, b := NewCache(CacheConfig{LookAhead: w}), NewCache(CacheConfig{LookAhead: w})
	chainPair(a, b, "b", "a", 3)
	if d := b.derivations(); d != 0 {
		t.Fatalf("%d identifiers derived before any offer arrived", d)
	}
	junk := make([]byte, ResumeHalfLen)
	for i := range 1000 {
		junk[0], junk[1] = byte(i), byte(i>>8)
		if b.takeForAnswer("a", kex.X25519, junk, aes128) != nil {
			t.Fatal("junk matched")
		}
	}
	first := b.derivations()
	if first == 0 || first > 2*(w+1)+2 {
		t.Fatalf("%d derivations to open the window, want 1..%d", first, 2*(w+1)+2)
	}
	for i := range 1000 {
		junk[2], junk[3] = byte(i), byte(i>>8)
		b.takeForAnswer("a", kex.X25519, junk, aes128)
	}
	if d := b.derivations(); d != first {
		t.Fatalf("unmatched offers derived %d identifiers", d-first)
	}
	// The peer jumps to the end of the window: B walks over w secrets
	// and derives a bounded number of new identifiers.
	var offers []*reservation
	for range w + 1 {
		offers = append(offers, a.takeForOffer("b", kex.X25519, aes128))
	}
	before := b.derivations()
	r := b.takeForAnswer("a", kex.X25519, aHalf(offers[w].ss), aes128)
	if r == nil {
		t.Fatal("the last secret of the window not recognised")
	}
	b.release(r, false)
	if d := b.derivations() - before; d > w+2*lookAheadRefill+2 {
		t.Fatalf("one offer cost %d derivations, want at most %d", d, w+2*lookAheadRefill+2)
	}
	b.mu.Lock()
	var ch *chain
	for _, c := range b.chains {
		ch = c
	}
	if got := len(ch.win.ids); got > 2*w+1 {
		t.Errorf("%d identifiers in the lookup map, want at most %d", got, 2*w+1)
	}
	oldest := ch.win.skipped[0].ss
	b.mu.Unlock()
	// Skipped secrets still match, out of order.
	for _, i := range []int{3, 0, 7} {
		r := b.takeForAnswer("a", kex.X25519, aHalf(offers[i].ss), aes128)
		if r == nil || !r.ss.Equal(offers[i].ss) {
			t.Fatalf("skipped ss[%d] not recognised", offers[i].ss.Index())
		}
		b.release(r, false)
	}
	if !isZeroed(oldest) {
		t.Fatal("a skipped secret taken was not zeroed on release")
	}
	for _, r := range offers {
		a.release(r, false)
	}
	// Two more jumps over the whole window push the old skipped secrets
	// out: they are zeroed and no longer match.
	b.mu.Lock()
	kept := ch.win.skipped[0].ss
	b.mu.Unlock()
	for range 3 {
		offers = offers[:0]
		for range w + 1 {
			offers = append(offers, a.takeForOffer("b", kex.X25519, aes128))
		}
		b.mu.Lock()
		avail := len(ch.win.ahead)
		b.mu.Unlock()
		if r := b.takeForAnswer("a", kex.X25519, aHalf(offers[avail-1].ss), aes128); r != nil {
			b.release(r, false)
		}
		for _, r := range offers {
			a.release(r, false)
		}
	}
	if !isZeroed(kept) {
		t.Fatal("a skipped secret pushed out was not zeroed")
	}
	b.mu.Lock()
	if got := len(ch.win.skipped); got > w {
		t.Errorf("%d skipped secrets kept, want at most %d", got, w)
	}
	if got, want := len(ch.win.ids), len(ch.win.skipped)+len(ch.win.ahead); got != want {
		t.Errorf("lookup map holds %d identifiers, want %d (skipped + ahead)", got, want)
	}
	b.mu.Unlock()
}

// TestCachePrefixShares (issue 13, hole 5): a peer that completes fresh
// handshakes over and over, from one IPv4 address or from many addresses
// of one IPv6 /64, cannot evict another peer's chains: when the cache is
// full, a newcomer evicts only from a prefix holding more chains than its
// own, and a prefix over its share evicts its own oldest.
func TestCachePrefixShares(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attacker func(i int) string
	}{
		{"ipv4", func(i int) string { return "198.51.100.7" }},
		{"ipv6-64", func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(CacheConfig{MaxEntries: 16, MaxPerPeer: 4, PrefixShare: 8})
			victims := []string{"192.0.2.1", "2001:db8:9::1"}
			var kept []*schedule.SessionSecret
			for i, v := range victims {
				for j := range 2 {
					ss := secret(byte(10*i+j+1), 1)
					kept = append(kept, ss)
					c.add(v, kex.X25519, eno.RoleA, schedule.AES128GCM, ss)
				}
			}
			for i := range 200 {
				tep := []kex.ID{kex.X25519, kex.X448, kex.P256, kex.P521}[i%4]
				c.add(tc.attacker(i), tep, eno.RoleB, schedule.AES128GCM, secret(byte(100+i%100), 1))
			}
			for i, ss := range kept {
				if isZeroed(ss) {
					t.Fatalf("victim chain %d evicted by another prefix", i)
				}
			}
			st := c.Stats()
			if st.Chains > 4+8 {
				t.Fatalf("%d chains held, the attacker's prefix is over its share", st.Chains)
			}
			if st.EvictedOther != 0 || st.EvictedOwn == 0 {
				t.Fatalf("evictions: own %d other %d, want only own", st.EvictedOwn, st.EvictedOther)
			}
		})
	}
}

// TestCacheFullEvictsLargest: with every prefix within its share, a full
// cache makes room by dropping the oldest chain of the prefix holding the
// most chains, never one of a prefix holding no more than the newcomer.
func TestCacheFullEvictsLargest(t *testing.T) {
	c := NewCache(CacheConfig{MaxEntries: 6, MaxPerPeer: 8, PrefixShare: 8})
	big := make([]*schedule.SessionSecret, 4)
	for i := range big {
		big[i] = secret(byte(i+1), 1)
		c.add("192.0.2.1", kex.X25519, eno.RoleA, schedule.AES128GCM, big[i])
	}
	small := secret(9, 1)
	c.add("192.0.2.2", kex.X25519, eno.RoleA, schedule.AES128GCM, small)
	c.add("192.0.2.3", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(10, 1)) // full now
	c.add("192.0.2.4", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(11, 1))
	if !isZeroed(big[0]) || isZeroed(big[1]) || isZeroed(small) {
		t.Fatal("a full cache did not drop the largest prefix's oldest chain")
	}
	if st := c.Stats(); st.EvictedOther != 1 || st.Chains != 6 {
		t.Fatalf("stats %+v, want one eviction of another prefix and 6 chains", st)
	}
}

// TestCacheSweep (issue 13, hole 5): expired chains are erased (zeroed
// and removed) by Sweep, which the stack calls periodically, even if no
// connection touches the cache; the skipped secrets and the look-ahead
// state of a chain go with it.
func TestCacheSweep(t *testing.T) {
	clk := newClock()
	a := NewCache(CacheConfig{Lifetime: time.Hour, Now: clk.Now})
	b := NewCache(CacheConfig{Lifetime: time.Hour, Now: clk.Now})
	chainPair(a, b, "b", "a", 4)
	clk.Advance(30 * time.Minute)
	chainPair(a, b, "b2", "a2", 5)
	// Open a window with a skipped secret at B.
	r1, r2 := a.takeForOffer("b", kex.X25519, aes128), a.takeForOffer("b", kex.X25519, aes128)
	if r := b.takeForAnswer("a", kex.X25519, aHalf(r2.ss), aes128); r == nil {
		t.Fatal("offer not recognised")
	} else {
		b.release(r, false)
	}
	a.release(r1, false)
	a.release(r2, false)
	b.mu.Lock()
	var old *chain
	for _, ch := range b.chains {
		if ch.key.peer == "a" {
			old = ch
		}
	}
	next, top, skipped := old.ss, old.win.top, old.win.skipped[0].ss
	b.mu.Unlock()

	clk.Advance(31 * time.Minute)
	if n := b.Sweep(); n != 1 {
		t.Fatalf("Sweep erased %d chains, want 1", n)
	}
	for name, s := range map[string]*schedule.SessionSecret{"next": next, "look-ahead": top, "skipped": skipped} {
		if !isZeroed(s) {
			t.Errorf("the %s secret of an expired chain was not zeroed", name)
		}
	}
	if b.Len() != 1 || b.Stats().Expired != 1 {
		t.Fatalf("Len %d, stats %+v after the sweep", b.Len(), b.Stats())
	}
	clk.Advance(30 * time.Minute)
	if n := b.Sweep(); n != 1 || b.Len() != 0 {
		t.Fatalf("second sweep erased %d, %d chains left", n, b.Len())
	}
	if n := b.Sweep(); n != 0 {
		t.Fatalf("sweep of an empty cache erased %d", n)
	}
}

// TestCacheDefaultLifetime: the package's default lifetime is the one the
// configuration documents (crypto.resumption_lifetime = "24h"), so a
// program that builds a Cache without the config gets the same behaviour.
func TestCacheDefaultLifetime(t *testing.T) {
	clk := newClock()
	c := NewCache(CacheConfig{Now: clk.Now})
	c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(1, 1))
	clk.Advance(24*time.Hour - time.Second)
	if c.Sweep() != 0 || c.Len() != 1 {
		t.Fatal("a chain expired before 24h")
	}
	clk.Advance(time.Second)
	if c.Sweep() != 1 {
		t.Fatal("a chain outlived 24h")
	}
	if DefaultCacheLifetime != 24*time.Hour {
		t.Fatalf("DefaultCacheLifetime = %v, want 24h", DefaultCacheLifetime)
	}
}

// BenchmarkCacheOpenWindow: the one-time cost of deriving a chain's
// look-ahead window when the peer's first resumption offer arrives.
func BenchmarkCacheOpenWindow(b *testing.B) {
	for b.Loop() {
		c := NewCache(CacheConfig{})
		c.add("a", kex.X25519, eno.RoleB, schedule.AES128GCM, secret(1, 1))
		c.takeForAnswer("a", kex.X25519, make([]byte, ResumeHalfLen), aes128)
	}
}

// BenchmarkCacheAnswerMiss: an offer that names no cached secret (a
// guessing attacker's SYN) against a peer holding MaxPerPeer chains.
func BenchmarkCacheAnswerMiss(b *testing.B) {
	c := NewCache(CacheConfig{})
	for i := range DefaultCachePerPeer {
		c.add("a", kex.X25519, eno.RoleB, schedule.AES128GCM, secret(byte(i+1), 1))
	}
	half := make([]byte, ResumeHalfLen)
	c.takeForAnswer("a", kex.X25519, half, aes128)
	for i := 0; b.Loop(); i++ {
		half[0], half[1] = byte(i), byte(i>>8)
		c.takeForAnswer("a", kex.X25519, half, aes128)
	}
}

// BenchmarkCacheResumeSequential: A offers and B answers one secret after
// another (the common case): one identifier derived per resumption.
func BenchmarkCacheResumeSequential(b *testing.B) {
	a, bc := NewCache(CacheConfig{}), NewCache(CacheConfig{})
	chainPair(a, bc, "b", "a", 1)
	for b.Loop() {
		r := a.takeForOffer("b", kex.X25519, aes128)
		s := bc.takeForAnswer("a", kex.X25519, aHalf(r.ss), aes128)
		a.release(r, false)
		bc.release(s, false)
	}
}
