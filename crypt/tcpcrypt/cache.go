package tcpcrypt

import (
	"container/heap"
	"container/list"
	"crypto/rand"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Cache defaults and bounds.
const (
	DefaultCacheEntries = 4096
	DefaultCachePerPeer = 8
	// DefaultCacheLifetime is the configuration's documented default
	// (crypto.resumption_lifetime), so that a Cache built without the
	// configuration behaves as the daemon does.
	DefaultCacheLifetime = 24 * time.Hour
	// DefaultLookAhead lets a burst of 64 concurrent connections from one
	// host resume whatever order their SYNs arrive in.
	DefaultLookAhead = 64
	// MaxLookAhead bounds LookAhead: it bounds the work one resumption
	// offer can cost and the memory of one chain's window.
	MaxLookAhead = 1024
	// DefaultPrefixShare is how many chains one IPv4 address or one IPv6
	// /64 may hold (see CacheConfig.PrefixShare).
	DefaultPrefixShare = 64
)

// lookAheadRefill is how many new identifiers a secret taken from a chain
// derives at most to extend the look-ahead window again. Sequential use
// takes one and derives one; more lets a window that a jump ahead emptied
// regrow over the next few takes. Bounding it bounds the work per SYN.
const lookAheadRefill = 4

// CacheConfig configures a Cache. The zero value gives the defaults.
type CacheConfig struct {
	// MaxEntries bounds the number of chains held (0 = DefaultCacheEntries).
	// When full, a new chain takes the place of the oldest chain of the
	// prefix holding the most chains, its own prefix's if that holds at
	// least as many (see PrefixShare).
	MaxEntries int
	// MaxPerPeer bounds the chains held per (peer, TEP) (0 =
	// DefaultCachePerPeer); it also bounds the map lookups of matching a
	// resumption offer. The chain created first is dropped.
	MaxPerPeer int
	// PrefixShare bounds the chains held per prefix: one IPv4 address, or
	// one IPv6 /64 (0 = DefaultPrefixShare). A prefix at its share drops
	// its own oldest chain for a new one.
	//
	// Decision (issue 13): IPv4 per address, IPv6 per /64. A /64 is the
	// smallest block a site or host is normally given (SLAAC needs it),
	// so an IPv6 attacker holds 2^64 addresses as cheaply as one: counting
	// per address would give it as many shares as it likes. IPv4
	// addresses are scarce and a /24 often mixes unrelated customers
	// (hosting, carrier-grade NAT), so counting per /24 would let one of
	// them crowd out its neighbours. Peers that are not IP addresses
	// (tests, other transports) each form their own prefix.
	PrefixShare int
	// Lifetime is how long a chain may be used after the fresh key exchange
	// that created it (0 = DefaultCacheLifetime). Measured from creation,
	// not from last use, so regular resumption cannot keep a chain (and the
	// exposure of its future secrets) alive for ever. Expired chains are
	// erased on every use of the cache and by Sweep.
	Lifetime time.Duration
	// LookAhead is how many secrets past the next unused one a passive
	// opener recognises (0 = DefaultLookAhead; negative = none; at most
	// MaxLookAhead).
	//
	// Decision (docs/decisions.md, issue 13): RFC 8548 §3.5 leaves open
	// how far a passive opener searches ahead. An active opener moves to
	// i+1 after any attempt, including one whose SYN was lost or refused,
	// and concurrent connections each take their own index, so their SYNs
	// may arrive in any order. The passive side therefore recognises
	// resume[f..f+LookAhead], f its next unused index, and keeps the
	// secrets a match passes over answerable (at most LookAhead of them):
	// each is still used at most once, as §3.5 requires. Attackers cannot
	// move us forward without knowing the identifiers (§8).
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

// CacheStats are a Cache's counters (see Cache.Stats).
type CacheStats struct {
	Chains int // chains held now
	// Expired counts chains erased at the end of their lifetime.
	Expired uint64
	// EvictedOwn counts chains dropped for a newer chain of the same
	// peer or prefix (MaxPerPeer, PrefixShare, or a full cache in which
	// that prefix held the most chains).
	EvictedOwn uint64
	// EvictedOther counts chains dropped for a chain of another prefix
	// because the cache was full and their prefix held the most chains.
	EvictedOther uint64
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

	mu       sync.Mutex // guards everything below
	chains   map[uint64]*chain
	byPeer   map[peerKey][]*chain // in creation order
	order    *list.List           // every chain, in creation order (front = oldest)
	prefixes map[string]*share
	largest  shareHeap // every share, the one holding the most chains first
	nextID   uint64
	stats    CacheStats
	derived  uint64 // identifiers derived (tests: the work per offer)
}

type peerKey struct {
	peer string
	tep  kex.ID
}

// share is the part of the cache one prefix holds.
type share struct {
	prefix string
	chains *list.List // this prefix's chains, in creation order
	index  int        // in Cache.largest
}

// chain is the cache state of one ss[0] chain.
type chain struct {
	id       uint64
	key      peerKey
	share    *share
	origRole eno.Role
	aead     schedule.AEADID // AEAD of the original session
	created  time.Time
	elem     *list.Element // in Cache.order
	selem    *list.Element // in share.chains

	// ss is ss[f], the next unused secret: every index below f was
	// taken or is in win.skipped.
	ss  *schedule.SessionSecret
	win *window // nil until a resumption offer is first matched against the chain
}

// window is what a passive opener needs to recognise the peer's offers of
// one chain: the peer's halves of resume[f..], derived incrementally, and
// the secrets a match passed over.
//
// Decision (issue 13): the window is derived lazily, when an offer from
// the chain's peer first arrives (a chain this host only offers from never
// costs a derivation), and then incrementally: a secret taken derives at
// most lookAheadRefill new identifiers, and passing over k secrets costs k
// derivations. So one SYN costs at most LookAhead+2*lookAheadRefill+2
// derivations, an offer that matches nothing costs one map lookup per
// chain of the peer, and the identifiers are derived once each.
type window struct {
	// mask blinds the keys of ids. Go does not clear a deleted map key's
	// memory, so the keys are the halves XOR mask; mask is zeroed with the
	// window, and what a dropped key leaves in memory says nothing.
	mask [ResumeHalfLen]byte
	// ids maps every recognised half (masked) to its index: those of
	// ahead and of skipped, nothing else.
	ids map[[ResumeHalfLen]byte]uint64
	// ahead[k] is the peer's half of resume[f+k], k < len(ahead) <=
	// LookAhead+1.
	ahead [][ResumeHalfLen]byte
	// top is ss[f+len(ahead)], the next secret whose identifier the window
	// derives.
	top *schedule.SessionSecret
	// skipped are the secrets a match passed over, in index order, at
	// most LookAhead of them. Each was offered by the peer in a SYN we
	// have not seen yet (concurrent SYNs can arrive out of order) or in
	// one that was lost; only an answer to that SYN can use it.
	skipped []skippedSecret
}

// skippedSecret is one secret of window.skipped with the half of its
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
	if cfg.PrefixShare <= 0 {
		cfg.PrefixShare = DefaultPrefixShare
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultCacheLifetime
	}
	switch {
	case cfg.LookAhead == 0:
		cfg.LookAhead = DefaultLookAhead
	case cfg.LookAhead < 0:
		cfg.LookAhead = 0
	case cfg.LookAhead > MaxLookAhead:
		cfg.LookAhead = MaxLookAhead
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{
		cfg:      cfg,
		chains:   make(map[uint64]*chain),
		byPeer:   make(map[peerKey][]*chain),
		order:    list.New(),
		prefixes: make(map[string]*share),
	}
}

// Config returns the cache's configuration with the defaults filled in.
func (c *Cache) Config() CacheConfig { return c.cfg }

// Len returns the number of chains held, reserved ones included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.chains)
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Chains = len(c.chains)
	return s
}

// Sweep erases the chains past their lifetime (their secrets zeroed) and
// returns how many. Every use of the cache does the same; Sweep is for
// the caller's periodic timer (the stack's sweeper), so that an idle
// cache does not keep expired secrets in memory. It costs one step per
// chain erased (chains expire in creation order).
func (c *Cache) Sweep() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expireLocked(c.cfg.Now())
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
		c.stats.EvictedOwn++
	}
	pfx := prefixOf(peer)
	sh := c.prefixes[pfx]
	for sh != nil && sh.chains.Len() >= c.cfg.PrefixShare {
		c.removeLocked(sh.chains.Front().Value.(*chain))
		c.stats.EvictedOwn++
		sh = c.prefixes[pfx] // gone with its last chain
	}
	for len(c.chains) >= c.cfg.MaxEntries {
		// Decision (issue 13): a full cache drops the oldest chain of the
		// prefix holding the most chains, the newcomer's own if it holds
		// at least as many. A prefix that completes fresh handshakes over
		// and over thus only ever replaces its own chains once it is the
		// largest, and a prefix is never evicted by one holding as many.
		victim := c.largest[0]
		if sh != nil && sh.chains.Len() >= victim.chains.Len() {
			victim = sh
		}
		c.removeLocked(victim.chains.Front().Value.(*chain))
		if victim == sh {
			c.stats.EvictedOwn++
		} else {
			c.stats.EvictedOther++
		}
		sh = c.prefixes[pfx]
	}
	if sh == nil {
		sh = &share{prefix: pfx, chains: list.New()}
		c.prefixes[pfx] = sh
		heap.Push(&c.largest, sh)
	}
	c.nextID++
	ch := &chain{id: c.nextID, key: key, share: sh, origRole: role, aead: aead, created: now, ss: ss}
	ch.elem = c.order.PushBack(ch)
	ch.selem = sh.chains.PushBack(ch)
	heap.Fix(&c.largest, sh.index)
	c.chains[ch.id] = ch
	c.byPeer[key] = append(c.byPeer[key], ch)
	return ch.id
}

// prefixOf names the share a peer counts against: its SourcePrefix, or
// the peer string itself if it is not an address.
func prefixOf(peer string) string {
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return peer
	}
	return SourcePrefix(a).String()
}

// SourcePrefix is the unit a per-source share counts (the cache's
// PrefixShare; the stack uses it for all its per-source limits): an IPv4
// address, or the /64 of an IPv6 address, since one subscriber usually
// owns a whole /64 and can pick any address in it for each connection.
func SourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
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
		return c.takeAheadLocked(ch, 0)
	}
	return nil
}

// takeForAnswer looks for a chain of (peer, tep) that recognises half as
// the peer's half of a resumption identifier (its look-ahead window or a
// secret skipped earlier) and takes that secret. A match at ss[f+k] moves
// the chain to ss[f+k+1] and keeps ss[f..f+k-1] answerable: the peer's
// concurrent SYNs may arrive out of order. Chains whose AEAD is not in
// aeads are not considered.
//
// Decision (docs/decisions.md, "Resumption look-ahead"): answering a skipped secret is
// safe under §3.5's single-use rule. The peer offered it in exactly one
// SYN and has moved past it; we never offer it ourselves (an active opener
// uses the chain's next secret) and take it out when it matches.
//
// Decision: a secret agreed to is gone even if the connection then never
// uses it (ENO falls back, the handshake is abandoned). The active opener
// has moved past it anyway (it counts every attempt, TC-24), and taking it
// at once lets the peer's concurrent resumptions each find their own.
//
// Decision (issue 13): the lookup is a map lookup per chain of the peer
// (at most MaxPerPeer), not a constant-time comparison with every
// candidate: its keys are blinded with the window's random mask, so its
// timing depends on nothing an attacker knows, and a 72-bit half cannot
// be guessed anyway.
func (c *Cache) takeForAnswer(peer string, tep kex.ID, half []byte, aeads []schedule.AEADID) *reservation {
	if len(half) != ResumeHalfLen {
		return nil
	}
	h := [ResumeHalfLen]byte(half)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(c.cfg.Now())
	for _, ch := range c.byPeer[peerKey{peer, tep}] {
		if (c.cfg.SplitByRole && ch.origRole != eno.RoleB) || !slices.Contains(aeads, ch.aead) {
			continue
		}
		if ch.win == nil {
			c.openWindowLocked(ch)
		}
		w := ch.win
		idx, ok := w.ids[w.blind(h)]
		if !ok {
			continue
		}
		f := ch.ss.Index()
		if idx >= f {
			return c.takeAheadLocked(ch, int(idx-f))
		}
		return c.takeSkippedLocked(ch, idx)
	}
	return nil
}

// openWindowLocked derives the chain's look-ahead window: the peer's halves
// of resume[f..f+LookAhead].
func (c *Cache) openWindowLocked(ch *chain) {
	w := &window{ids: make(map[[ResumeHalfLen]byte]uint64), top: ch.ss.Clone()}
	rand.Read(w.mask[:]) // never fails (crypto/rand)
	ch.win = w
	c.extendLocked(ch, c.cfg.LookAhead+1)
}

// extendLocked derives up to n more identifiers of ch's window, not
// beyond LookAhead+1 of them.
func (c *Cache) extendLocked(ch *chain, n int) {
	w := ch.win
	for ; n > 0 && len(w.ahead) <= c.cfg.LookAhead; n-- {
		_, peer := resumeHalves(w.top, ch.origRole)
		w.ahead = append(w.ahead, peer)
		w.ids[w.blind(peer)] = w.top.Index()
		next := w.top.Next()
		w.top.Zero()
		w.top = next
		c.derived++
	}
}

// takeAheadLocked takes ss[f+k], f the chain's next unused index (k = 0
// for an offer; for an answer, k < len(win.ahead)), and moves the chain
// to ss[f+k+1]. The secrets it passes over join win.skipped, and the
// oldest skipped secrets beyond LookAhead are zeroed.
func (c *Cache) takeAheadLocked(ch *chain, k int) *reservation {
	w := ch.win
	ss := ch.ss
	for m := range k {
		// k > 0 only for a window match: w != nil and ahead[m] exists.
		w.skipped = append(w.skipped, skippedSecret{ss: ss, peerHalf: w.ahead[m]})
		ss = ss.Next()
		c.derived++
	}
	ch.ss = ss.Next()
	if w != nil {
		if k < len(w.ahead) {
			delete(w.ids, w.blind(w.ahead[k]))
			clear(w.ahead[:k+1])
			w.ahead = append(w.ahead[:0], w.ahead[k+1:]...)
			clear(w.ahead[len(w.ahead):cap(w.ahead)])
		}
		// An offer from an empty window: the window starts at the
		// chain's new next index.
		for w.top.Index() < ch.ss.Index() {
			next := w.top.Next()
			w.top.Zero()
			w.top = next
			c.derived++
		}
		if n := len(w.skipped) - c.cfg.LookAhead; n > 0 {
			for i := range w.skipped[:n] {
				sk := &w.skipped[i]
				delete(w.ids, w.blind(sk.peerHalf))
				sk.ss.Zero()
				clear(sk.peerHalf[:])
			}
			w.skipped = append(w.skipped[:0], w.skipped[n:]...)
			clear(w.skipped[len(w.skipped):cap(w.skipped)])
		}
		c.extendLocked(ch, lookAheadRefill)
	}
	return ch.reservation(ss)
}

// takeSkippedLocked takes the skipped secret of index idx.
func (c *Cache) takeSkippedLocked(ch *chain, idx uint64) *reservation {
	w := ch.win
	i, ok := slices.BinarySearchFunc(w.skipped, idx, func(s skippedSecret, idx uint64) int {
		return cmpUint64(s.ss.Index(), idx)
	})
	if !ok {
		return nil // not reached: ids holds exactly ahead and skipped
	}
	sk := w.skipped[i]
	delete(w.ids, w.blind(sk.peerHalf))
	w.skipped = slices.Delete(w.skipped, i, i+1)
	c.extendLocked(ch, lookAheadRefill)
	return ch.reservation(sk.ss)
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// blind returns the map key of half.
func (w *window) blind(half [ResumeHalfLen]byte) [ResumeHalfLen]byte {
	for i := range half {
		half[i] ^= w.mask[i]
	}
	return half
}

// zero erases the window: the secrets it holds, the halves, the mask.
func (w *window) zero() {
	w.top.Zero()
	for i := range w.skipped {
		w.skipped[i].ss.Zero()
	}
	clear(w.skipped)
	clear(w.ahead)
	clear(w.ids)
	clear(w.mask[:])
	w.top, w.skipped, w.ahead, w.ids = nil, nil, nil, nil
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

// derivations returns how many identifiers and passed-over secrets the
// cache has derived (tests).
func (c *Cache) derivations() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.derived
}

// expireLocked erases chains older than the lifetime (creation order
// makes this a walk from the front) and returns how many.
func (c *Cache) expireLocked(now time.Time) int {
	n := 0
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		ch := e.Value.(*chain)
		if now.Sub(ch.created) < c.cfg.Lifetime && !now.Before(ch.created) {
			break
		}
		c.removeLocked(ch)
		c.stats.Expired++
		n++
	}
	return n
}

// removeLocked drops a chain and zeroes its secrets.
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
	sh := ch.share
	sh.chains.Remove(ch.selem)
	if sh.chains.Len() == 0 {
		heap.Remove(&c.largest, sh.index)
		delete(c.prefixes, sh.prefix)
	} else {
		heap.Fix(&c.largest, sh.index)
	}
	ch.ss.Zero()
	if ch.win != nil {
		ch.win.zero()
	}
	ch.ss, ch.win, ch.share = nil, nil, nil
}

// resumeHalves splits resume[i] of ss into the half a host that played
// role in the original session sends (ours) and the half its peer sends
// (RFC 8548 §3.5 Figures 2 and 3: A sends bytes 0..8, B bytes 9..17), and
// erases the whole identifier.
func resumeHalves(ss *schedule.SessionSecret, role eno.Role) (ours, peer [ResumeHalfLen]byte) {
	var id [schedule.ResumeIDLen]byte
	ss.ResumeIDInto(&id)
	a, b := [ResumeHalfLen]byte(id[:ResumeHalfLen]), [ResumeHalfLen]byte(id[ResumeHalfLen:])
	clear(id[:])
	if role == eno.RoleA {
		return a, b
	}
	return b, a
}

// shareHeap orders shares by the number of chains they hold, most first;
// among equals, the one whose oldest chain is oldest first.
type shareHeap []*share

func (h shareHeap) Len() int { return len(h) }

func (h shareHeap) Less(i, j int) bool {
	a, b := h[i].chains, h[j].chains
	if a.Len() != b.Len() {
		return a.Len() > b.Len()
	}
	return oldestID(a) < oldestID(b)
}

func (h shareHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *shareHeap) Push(x any) {
	s := x.(*share)
	s.index = len(*h)
	*h = append(*h, s)
}

func (h *shareHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.index = -1
	return s
}

// oldestID is the id of a share's oldest chain (ids grow with creation).
func oldestID(l *list.List) uint64 {
	if f := l.Front(); f != nil {
		return f.Value.(*chain).id
	}
	return 0
}
