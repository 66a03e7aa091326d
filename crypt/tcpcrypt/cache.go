package tcpcrypt

import (
	"container/list"
	"crypto/subtle"
	"slices"
	"sync"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Cache defaults.
const (
	DefaultCacheEntries  = 4096
	DefaultCachePerPeer  = 8
	DefaultCacheLifetime = time.Hour
	DefaultLookAhead     = 3
)

// CacheConfig configures a Cache. The zero value gives the defaults.
type CacheConfig struct {
	// MaxEntries bounds the number of chains held (0 = DefaultCacheEntries).
	// When full, the chain created first is dropped.
	MaxEntries int
	// MaxPerPeer bounds the chains held per (peer, TEP) (0 =
	// DefaultCachePerPeer); it also bounds the work of matching a
	// resumption offer. The chain created first is dropped.
	MaxPerPeer int
	// Lifetime is how long a chain may be used after the fresh key exchange
	// that created it (0 = DefaultCacheLifetime). Measured from creation,
	// not from last use, so regular resumption cannot keep a chain (and the
	// exposure of its future secrets) alive for ever.
	Lifetime time.Duration
	// LookAhead is how many secrets past the next unused one a passive
	// opener recognises (0 = DefaultLookAhead; negative = none).
	//
	// Decision (digest §20 item 7): RFC 8548 §3.5 leaves open how far a
	// passive opener searches ahead. An active opener moves to i+1 after
	// any attempt, including one whose SYN was lost or refused, so the
	// passive side accepts resume[i..i+LookAhead]. A match at i+k keeps
	// ss[i..i+k-1] answerable, for at most LookAhead skipped secrets per
	// chain, since concurrent SYNs may arrive out of order (takeForAnswer).
	// Attackers cannot move us forward without knowing the identifiers
	// (§8).
	LookAhead int
	// SplitByRole restricts each chain to one kind of use at this host
	// (RFC 8548 §3.5 MAY): a chain created while we were A is only offered
	// (active open), one created while we were B only answered.
	//
	// Decision (crossing SYNs, §3.5): off by default. Chains are usable
	// both ways, as §3.5 allows ("either host MAY later initiate session
	// resumption"). A secret leaves its chain the moment it is offered or
	// answered, and the chain moves on to the next one, so two crossing SYNs
	// proposing the same secret each find the other host's chain already
	// past it and both fall back to a fresh key exchange, which is safe
	// (TC-25).
	SplitByRole bool
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// Cache holds resumption secrets (RFC 8548 §3.5): for each chain started by
// a fresh key exchange with a peer, the next unused session secret ss[i],
// the TEP, the AEAD, and our role in the original session, which fixes our
// key direction in every resumed session (TC-26).
//
// Decision: a resumed session uses the AEAD of the session that started
// its chain. RFC 8548 negotiates the AEAD only in Init1/Init2, which a
// resumed session omits, and says nothing else; both hosts know the
// original choice, so it is the only value they can agree on without a
// message. A chain whose AEAD a connection's policy no longer allows is
// neither offered nor answered. Secrets live in memory only,
// are used at most once (TC-25) and are zeroed when dropped (TC-23).
// Safe for concurrent use; share one Cache between Configs.
type Cache struct {
	cfg CacheConfig

	mu     sync.Mutex // guards everything below
	chains map[uint64]*chain
	byPeer map[peerKey][]*chain // in creation order
	order  *list.List           // every chain, in creation order (front = oldest)
	nextID uint64
}

type peerKey struct {
	peer string
	tep  kex.ID
}

// chain is the cache state of one ss[0] chain.
type chain struct {
	id       uint64
	key      peerKey
	origRole eno.Role
	aead     schedule.AEADID // AEAD of the original session
	created  time.Time
	elem     *list.Element

	// ss is the next unused secret ss[i]. peerHalves[k] is the half of
	// resume[i+k] the peer sends (the half of the other original role),
	// k = 0..LookAhead.
	ss         *schedule.SessionSecret
	peerHalves [][ResumeHalfLen]byte

	// skipped are the secrets a look-ahead match passed over, newest last,
	// at most LookAhead of them. Each was offered by the peer in a SYN we
	// have not seen yet (concurrent SYNs can arrive out of order) or in
	// one that was lost; only an answer to that SYN can use it.
	skipped []skippedSecret
}

// skippedSecret is one secret of chain.skipped with the half of its
// resumption identifier the peer sends.
type skippedSecret struct {
	ss       *schedule.SessionSecret
	peerHalf [ResumeHalfLen]byte
}

// reservation is a secret taken out of the cache by one connection; its
// chain has already moved past it.
type reservation struct {
	chainID  uint64
	tep      kex.ID
	origRole eno.Role
	aead     schedule.AEADID
	ss       *schedule.SessionSecret
}

// NewCache returns an empty cache.
func NewCache(cfg CacheConfig) *Cache {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultCacheEntries
	}
	if cfg.MaxPerPeer <= 0 {
		cfg.MaxPerPeer = DefaultCachePerPeer
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultCacheLifetime
	}
	switch {
	case cfg.LookAhead == 0:
		cfg.LookAhead = DefaultLookAhead
	case cfg.LookAhead < 0:
		cfg.LookAhead = 0
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{
		cfg:    cfg,
		chains: make(map[uint64]*chain),
		byPeer: make(map[peerKey][]*chain),
		order:  list.New(),
	}
}

// Len returns the number of chains held, reserved ones included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chains)
}

// FlushPeer drops every chain shared with peer.
func (c *Cache) FlushPeer(peer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.chains {
		if ch.key.peer == peer {
			c.removeLocked(ch)
		}
	}
}

// FlushAll drops every chain.
func (c *Cache) FlushAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.chains {
		c.removeLocked(ch)
	}
}

// flushChain drops one chain (Conn.FlushCache, TC-27). A connection that
// already took a secret from it keeps that one secret for its own
// handshake; no later connection can resume from the chain.
func (c *Cache) flushChain(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.chains[id]; ch != nil {
		c.removeLocked(ch)
	}
}

// add starts a chain with ss (normally ss[1] of a fresh session that
// negotiated tep and aead, in which we played role) and returns its id. The
// cache owns ss from now on.
func (c *Cache) add(peer string, tep kex.ID, role eno.Role, aead schedule.AEADID, ss *schedule.SessionSecret) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	c.expireLocked(now)
	key := peerKey{peer, tep}
	for len(c.byPeer[key]) >= c.cfg.MaxPerPeer {
		c.removeLocked(c.byPeer[key][0])
	}
	for len(c.chains) >= c.cfg.MaxEntries {
		c.removeLocked(c.order.Front().Value.(*chain))
	}
	c.nextID++
	ch := &chain{id: c.nextID, key: key, origRole: role, aead: aead, created: now}
	ch.elem = c.order.PushBack(ch)
	c.chains[ch.id] = ch
	c.byPeer[key] = append(c.byPeer[key], ch)
	c.setSecretLocked(ch, ss)
	return ch.id
}

// takeForOffer takes the next unused secret ss[i] of the newest usable
// chain for (peer, tep) whose AEAD is in aeads, for an active opener's
// resumption offer. Index i counts as used from now on, whatever happens
// (TC-24), and the chain moves to ss[i+1] at once: concurrent connections
// to one peer each offer their own index, the lowest not yet used (RFC 8548
// §3.5), instead of queueing behind one handshake or falling back to a
// fresh key exchange. A peer that sees their SYNs in a different order
// still recognises them within its look-ahead.
func (c *Cache) takeForOffer(peer string, tep kex.ID, aeads []schedule.AEADID) *reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(c.cfg.Now())
	chains := c.byPeer[peerKey{peer, tep}]
	for i := len(chains) - 1; i >= 0; i-- {
		ch := chains[i]
		if (c.cfg.SplitByRole && ch.origRole != eno.RoleA) || !slices.Contains(aeads, ch.aead) {
			continue
		}
		return c.takeLocked(ch, 0)
	}
	return nil
}

// takeForAnswer looks for a chain of (peer, tep) whose secret ss[i+k],
// k <= LookAhead, has half as the peer's half of its resumption identifier,
// and takes that secret; the chain moves to ss[i+k+1]. The secrets it
// passes over, ss[i..i+k-1], stay answerable (chain.skipped) until
// LookAhead newer ones push them out: the peer's concurrent SYNs may
// arrive out of order. Chains whose AEAD is not in aeads are not
// considered.
//
// Decision (digest §20 item 7, refined): answering a skipped secret is
// safe under §3.5's single-use rule. The peer offered it in exactly one
// SYN and has moved past it; we never offer it ourselves (an active opener
// uses the chain's next secret) and take it out when it matches.
//
// Decision: a secret agreed to is gone even if the connection then never
// uses it (ENO falls back, the handshake is abandoned). The active opener
// has moved past it anyway (it counts every attempt, TC-24), and taking it
// at once lets the peer's concurrent resumptions each find their own.
func (c *Cache) takeForAnswer(peer string, tep kex.ID, half []byte, aeads []schedule.AEADID) *reservation {
	if len(half) != ResumeHalfLen {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(c.cfg.Now())
	for _, ch := range c.byPeer[peerKey{peer, tep}] {
		if (c.cfg.SplitByRole && ch.origRole != eno.RoleB) || !slices.Contains(aeads, ch.aead) {
			continue
		}
		match, skipped := -1, -1
		for k := range ch.peerHalves {
			// Constant time per candidate: the halves are secret until sent.
			if subtle.ConstantTimeCompare(ch.peerHalves[k][:], half) == 1 && match < 0 {
				match = k
			}
		}
		for k := range ch.skipped {
			if subtle.ConstantTimeCompare(ch.skipped[k].peerHalf[:], half) == 1 && skipped < 0 {
				skipped = k
			}
		}
		switch {
		case match >= 0:
			return c.takeLocked(ch, match)
		case skipped >= 0:
			ss := ch.skipped[skipped].ss
			ch.skipped = slices.Delete(ch.skipped, skipped, skipped+1)
			return ch.reservation(ss)
		}
	}
	return nil
}

// takeLocked takes ss[i+skip] out of ch, keeps the secrets it skips in
// ch.skipped (zeroing those pushed out) and makes ss[i+skip+1] the chain's
// next unused secret.
func (c *Cache) takeLocked(ch *chain, skip int) *reservation {
	ss := ch.ss
	for k := range skip {
		ch.skipped = append(ch.skipped, skippedSecret{ss: ss, peerHalf: ch.peerHalves[k]})
		ss = ss.Next()
	}
	if n := len(ch.skipped) - c.cfg.LookAhead; n > 0 {
		for _, sk := range ch.skipped[:n] {
			sk.ss.Zero()
		}
		ch.skipped = slices.Delete(ch.skipped, 0, n)
	}
	c.setSecretLocked(ch, ss.Next())
	return ch.reservation(ss)
}

// reservation hands ss, a secret of ch already taken out of it, to one
// connection.
func (ch *chain) reservation(ss *schedule.SessionSecret) *reservation {
	return &reservation{chainID: ch.id, tep: ch.key.tep, origRole: ch.origRole, aead: ch.aead, ss: ss}
}

// release ends a reservation, used or not: its secret is zeroed. With
// endChain the chain is dropped too (the connection's policy caches
// nothing, TC-27). A chain flushed, evicted or expired meanwhile stays
// gone.
func (c *Cache) release(r *reservation, endChain bool) {
	r.ss.Zero()
	r.ss = nil
	if endChain {
		c.flushChain(r.chainID)
	}
}

// setSecretLocked makes ss the chain's next unused secret and precomputes
// the identifier halves the peer may send for it and the look-ahead.
func (c *Cache) setSecretLocked(ch *chain, ss *schedule.SessionSecret) {
	ch.ss = ss
	ch.peerHalves = ch.peerHalves[:0]
	if c.cfg.SplitByRole && ch.origRole != eno.RoleB {
		return // never answered at this host
	}
	s := ss
	for k := 0; k <= c.cfg.LookAhead; k++ {
		id := s.ResumeID()
		_, peer := halves(id, ch.origRole)
		ch.peerHalves = append(ch.peerHalves, peer)
		if k < c.cfg.LookAhead {
			next := s.Next()
			if s != ss {
				s.Zero()
			}
			s = next
		}
	}
	if s != ss {
		s.Zero()
	}
}

// expireLocked drops chains older than the lifetime (creation order makes
// this a walk from the front).
func (c *Cache) expireLocked(now time.Time) {
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		ch := e.Value.(*chain)
		if now.Sub(ch.created) < c.cfg.Lifetime && !now.Before(ch.created) {
			return
		}
		c.removeLocked(ch)
	}
}

// removeLocked drops a chain and zeroes its secret.
func (c *Cache) removeLocked(ch *chain) {
	if _, ok := c.chains[ch.id]; !ok {
		return
	}
	delete(c.chains, ch.id)
	c.order.Remove(ch.elem)
	peers := c.byPeer[ch.key]
	for i, p := range peers {
		if p == ch {
			peers = append(peers[:i], peers[i+1:]...)
			break
		}
	}
	if len(peers) == 0 {
		delete(c.byPeer, ch.key)
	} else {
		c.byPeer[ch.key] = peers
	}
	ch.ss.Zero()
	for _, sk := range ch.skipped {
		sk.ss.Zero()
	}
	ch.ss, ch.peerHalves, ch.skipped = nil, nil, nil
}

// halves splits resume[i] into the half a host that played role in the
// original session sends (ours) and the half its peer sends
// (RFC 8548 §3.5 Figures 2 and 3: A sends bytes 0..8, B bytes 9..17).
func halves(id [schedule.ResumeIDLen]byte, role eno.Role) (ours, peer [ResumeHalfLen]byte) {
	a, b := [ResumeHalfLen]byte(id[:ResumeHalfLen]), [ResumeHalfLen]byte(id[ResumeHalfLen:])
	if role == eno.RoleA {
		return a, b
	}
	return b, a
}
