package kex

import (
	"crypto/rand"
	"fmt"
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

// Encapsulate is host B's side of the exchange (RFC 8548 §3.3): from A's
// validated Pub_A it returns ES and B's reply Pub_B.
//
// For a Diffie-Hellman TEP the reply is the public half of a key from Get
// (so the reuse lifetime applies) and ES the ECDH result. For a KEM the
// reply is a ciphertext made with fresh randomness on every call: a KEM's
// encapsulation randomness must never be reused, and it is the only
// secret B holds.
func (p *Pool) Encapsulate(peer *PublicKey) (es, reply []byte, err error) {
	if peer == nil {
		return nil, nil, fmt.Errorf("kex: %v encapsulation: nil public key", p.g.ID())
	}
	if peer.id != p.g.ID() {
		return nil, nil, fmt.Errorf("kex: %v encapsulation to a %v public key", p.g.ID(), peer.id)
	}
	if k, ok := p.g.(kemGroup); ok {
		r := p.rand
		if r != rand.Reader {
			// Injected readers need not be safe for concurrent use; the
			// system one is, and is recognised by the KEM (hybrid.go).
			r = poolReader{p}
		}
		return k.encapsulate(peer, r)
	}
	k, err := p.Get()
	if err != nil {
		// Key generation fails only when the reader does.
		return nil, nil, fmt.Errorf("%w: %w", ErrRandomness, err)
	}
	es, err = k.ECDH(peer)
	if err != nil {
		return nil, nil, err
	}
	return es, k.AppendPublic(nil), nil
}

// kemGroup is a Group whose reply is a ciphertext rather than a key pair
// of B's own.
type kemGroup interface {
	encapsulate(peer *PublicKey, rand io.Reader) (es, ct []byte, err error)
}

// poolReader reads p.rand under p.mu, without holding the lock for the
// computation that follows.
type poolReader struct{ p *Pool }

func (r poolReader) Read(b []byte) (int, error) {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.p.rand.Read(b)
}
