package stack

import (
	"net/netip"
	"sync"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// Defaults of the per-source handshake limits (Options fields left zero).
const (
	// DefaultHandshakesPerSource bounds the passive handshakes one source
	// (an IPv4 address, an IPv6 /64) has in progress at once, over every
	// listener. A client's handshake lasts about one round trip, so even a
	// busy NAT rarely has more than a few in flight.
	DefaultHandshakesPerSource = 16
	// DefaultInit1Timeout is how long host B waits, from the moment the
	// TCP connection is established, for the peer's whole first handshake
	// message (Init1, RFC 8548 §3.3). A client sends it at once; a peer
	// that negotiated ENO and then stays silent holds a handshake slot
	// only this long.
	DefaultInit1Timeout = 3 * time.Second
	// DefaultHandshakeBudget is how many key-exchange cost units (one unit:
	// one fresh X25519 handshake as host B) one source may make us spend
	// per second; it may spend a second's worth at once.
	DefaultHandshakeBudget = 200
)

// tepCost is the CPU a fresh passive handshake costs with each TEP, in
// units of an X25519 one: key generation plus ECDH with the peer's key.
// The ratios come from `go test -run '^$' -bench . ./crypt/kex/`
// (GenerateKey + ECDH per TEP): X25519 ≈ 0.10-0.15 ms, P-256 about the
// same, X448 2.3-2.5 times as much, P-521 17-18 times (1.6-2.7 ms). They
// are rounded up; an unknown TEP costs as much as the dearest.
func tepCost(id kex.ID) float64 {
	switch id {
	case kex.X25519, kex.P256:
		return 1
	case kex.X448:
		return 3
	}
	return 18
}

// maxBuckets bounds the per-source budget table. A bucket that has filled
// up again is the same as no bucket, so full buckets are dropped when the
// table is full; sources beyond the bound share one bucket (overflow).
const maxBuckets = 16384

// sourceKey is the unit the per-source limits count: an IPv4 address, or
// the /64 of an IPv6 address (one subscriber usually owns a whole /64, so a
// per-address limit would not bound it).
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// handshakeLimiter holds the stack-wide per-source limits on passive
// handshakes: how many one source may have in progress, and how much key
// exchange CPU it may take (a token bucket per source, refilled at rate
// units per second up to burst).
type handshakeLimiter struct {
	perSource int
	rate      float64
	burst     float64
	now       func() time.Time

	mu        sync.Mutex
	active    map[netip.Prefix]int     // in-progress handshakes per source
	buckets   map[netip.Prefix]*bucket // CPU budget per source
	overflow  bucket                   // shared once buckets holds maxBuckets
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newHandshakeLimiter(perSource int, rate float64, now func() time.Time) *handshakeLimiter {
	return &handshakeLimiter{
		perSource: perSource, rate: rate, burst: rate, now: now,
		active:   make(map[netip.Prefix]int),
		buckets:  make(map[netip.Prefix]*bucket),
		overflow: bucket{tokens: rate, last: now()},
	}
}

// acquire counts one more handshake in progress for src, or reports false
// when src already has perSource of them.
func (h *handshakeLimiter) acquire(src netip.Prefix) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active[src] >= h.perSource {
		return false
	}
	h.active[src]++
	return true
}

// release ends one handshake acquire counted for src.
func (h *handshakeLimiter) release(src netip.Prefix) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.active[src]; n > 1 {
		h.active[src] = n - 1
	} else {
		delete(h.active, src)
	}
}

// inProgress returns how many handshakes are counted in progress.
func (h *handshakeLimiter) inProgress() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.active {
		n += v
	}
	return n
}

// spend takes cost units from src's budget, or reports false (and takes
// nothing) when the budget holds less.
func (h *handshakeLimiter) spend(src netip.Prefix, cost float64) bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.buckets[src]
	if b == nil {
		if len(h.buckets) >= maxBuckets {
			h.pruneLocked(now)
		}
		if len(h.buckets) >= maxBuckets {
			b = &h.overflow
		} else {
			b = &bucket{tokens: h.burst, last: now}
			h.buckets[src] = b
		}
	}
	h.refill(b, now)
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

func (h *handshakeLimiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(h.burst, b.tokens+d.Seconds()*h.rate)
		b.last = now
	} else if d < 0 {
		b.last = now // the clock went back: refill from here
	}
}

// pruneLocked drops the buckets that have filled up again, at most once a
// second (it walks the whole table).
func (h *handshakeLimiter) pruneLocked(now time.Time) {
	if now.Sub(h.lastPrune) < time.Second && !h.lastPrune.IsZero() {
		return
	}
	h.lastPrune = now
	for k, b := range h.buckets {
		h.refill(b, now)
		if b.tokens >= h.burst {
			delete(h.buckets, k)
		}
	}
}
