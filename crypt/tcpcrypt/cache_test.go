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
	c.release(r, r.ss.Next())
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
	c.release(r, r.ss.Next())
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

// TestCacheLookAhead: the passive side recognises resume[i..i+LookAhead]
// and discards the skipped secrets (digest §20 item 7 decision).
func TestCacheLookAhead(t *testing.T) {
	c := NewCache(CacheConfig{LookAhead: 2})
	ss1 := secret(9, 1)
	chain := []*schedule.SessionSecret{ss1}
	for range 4 {
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
	c.release(r, r.ss.Next())
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[1]), chacha); r != nil {
		t.Fatal("a skipped secret still matches")
	}
	if r := c.takeForAnswer("p", kex.X448, peerHalf(chain[3]), chacha); r == nil || r.ss.Index() != 4 {
		t.Fatal("ss[4] does not match after ss[3] was used")
	}
	// Our own half never matches (it is the peer's we look for).
	id := chain[4].ResumeID()
	if r := c.takeForAnswer("p", kex.X448, id[ResumeHalfLen:], chacha); r != nil {
		t.Fatal("our own half matched")
	}
	if r := c.takeForAnswer("p", kex.X448, []byte{1, 2, 3}, chacha); r != nil {
		t.Fatal("short half matched")
	}
}

// TestCacheFlushWhileReserved: flushing a chain a connection holds drops
// the secret the connection gives back (TC-27).
func TestCacheFlushWhileReserved(t *testing.T) {
	c := NewCache(CacheConfig{})
	id := c.add("p", kex.X25519, eno.RoleA, schedule.AES128GCM, secret(5, 1))
	r := c.takeForOffer("p", kex.X25519, aes128)
	c.flushChain(id)
	used := r.ss
	next := used.Next()
	c.release(r, next)
	if c.Len() != 0 || !isZeroed(next) || !isZeroed(used) {
		t.Fatal("released secret of a flushed chain kept")
	}
	// release(nil, x) just zeroes x.
	s := secret(6, 1)
	c.release(nil, s)
	if !isZeroed(s) {
		t.Fatal("not zeroed")
	}
}
