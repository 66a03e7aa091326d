package kex

import (
	"io"
	"sync"
	"time"
)

// Pool hands out ephemeral private keys for one group.
//
// RFC 8548 §3.3 requires ephemeral keys to be refreshed frequently and never
// stored persistently (TC-6); §8 allows reuse across connections only with a
// lifetime limited as far as practical (TC-47). With lifetime 0 (the default)
// every Get returns a fresh key. With lifetime > 0 one key is reused until it
// is lifetime old by the injected clock, then replaced; the old key is only
// dropped from memory, never written anywhere. Safe for concurrent use.
type Pool struct {
	g        Group
	lifetime time.Duration
	rand     io.Reader
	now      func() time.Time

	mu      sync.Mutex // guards cur, created and rand reads
	cur     *PrivateKey
	created time.Time
}

// NewPool returns a Pool for g. rand nil means crypto/rand; now nil means
// time.Now. A negative lifetime is treated as 0.
func NewPool(g Group, lifetime time.Duration, rand io.Reader, now func() time.Time) *Pool {
	if now == nil {
		now = time.Now
	}
	if lifetime < 0 {
		lifetime = 0
	}
	return &Pool{g: g, lifetime: lifetime, rand: randReader(rand), now: now}
}

// Group returns the pool's group.
func (p *Pool) Group() Group { return p.g }

// Get returns a private key: fresh each call when the lifetime is 0,
// otherwise the current shared key while it is younger than the lifetime.
func (p *Pool) Get() (*PrivateKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lifetime == 0 {
		// One connection's key: erased after its ECDH.
		k, err := p.g.GenerateKey(p.rand)
		if err != nil {
			return nil, err
		}
		k.acquire()
		k.retired.Store(true)
		return k, nil
	}
	t := p.now()
	// A clock that went backwards also retires the key: its age is unknown.
	if p.cur != nil && !t.Before(p.created) && t.Sub(p.created) < p.lifetime {
		p.cur.acquire()
		return p.cur, nil
	}
	if p.cur != nil {
		// Drop the expired key before making the next; it is erased
		// once the handshakes still holding it have run their ECDH.
		p.cur.retire()
		p.cur = nil
	}
	k, err := p.g.GenerateKey(p.rand)
	if err != nil {
		return nil, err
	}
	k.acquire()
	p.cur, p.created = k, t
	return k, nil
}
