package tcpcrypt

import (
	"bytes"
	"fmt"
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
// skipped ones are kept, zeroed when pushed out (digest §20 item 7
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
		oldest = ch.skipped[0].ss
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
