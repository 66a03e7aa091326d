package stack

import (
	"net/netip"
	"sync"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// Defaults of the per-source handshake limits (Options fields left zero).
const (
	// DefaultHandshakesPerSource bounds the handshake slots of a listener
	// one source (an IPv4 address, an IPv6 /64) holds at once (an eighth of
	// the default 256). Its further connections wait, without a slot, for
	// one of its own handshakes to end: a burst from one client is delayed
	// a little, a source that stalls its handshakes delays only itself.
	DefaultHandshakesPerSource = 32
	// DefaultInit1Timeout is how long host B waits, from the moment the
	// TCP connection is established, for the peer's whole first handshake
	// message (Init1, RFC 8548 §3.3). A client sends it at once; a peer
	// that negotiated ENO and then stays silent holds a handshake slot
	// only this long.
	DefaultInit1Timeout = 3 * time.Second
	// DefaultHandshakeBudget is how many key-exchange cost units (one unit:
	// one fresh X25519 handshake as host B) one source may make us spend
	// per second; it may spend a second's worth at once. 1000 units are
	// 0.1-0.15 CPU-seconds per second here: a source takes at most that
	// share, while one client's fresh connection rate through a daemon
	// (about 700/s in the connrate benchmark) stays below it.
	DefaultHandshakeBudget = 1000
)

// tepCost is the CPU a fresh passive handshake costs with each TEP, in
// units of an X25519 one: key generation plus ECDH with the peer's key.
// The ratios come from `go test -run '^$' -bench . ./crypt/kex/`
// (GenerateKey + ECDH per TEP): X25519 ≈ 0.10-0.15 ms, P-256 about the
// same, X448 2.3-2.5 times as much, P-521 17-18 times (1.6-2.7 ms); the
// X25519 + ML-KEM-768 hybrid's encapsulation about twice X25519's
// (BenchmarkKEM). They are rounded up; an unknown TEP costs as much as the
// dearest.
func tepCost(id kex.ID) float64 {
	switch id {
	case kex.X25519, kex.P256:
		return 1
	case kex.X25519MLKEM768:
		return 2
	case kex.X448:
		return 3
	}
	return 18
}

// maxBuckets bounds the per-source budget table. A bucket that has filled
// up again is the same as no bucket, so full buckets are dropped when the
// table is full; sources beyond the bound share one bucket (overflow).
const maxBuckets = 16384

// handshakeLimiter holds the stack-wide per-source budget of key-exchange
// CPU for passive handshakes: a token bucket per source, refilled at rate
// units per second up to burst.
type handshakeLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket // CPU budget per source
	overflow  bucket                   // shared once buckets holds maxBuckets
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newHandshakeLimiter(rate float64, now func() time.Time) *handshakeLimiter {
	return &handshakeLimiter{
		rate: rate, burst: rate, now: now,
		buckets:  make(map[netip.Prefix]*bucket),
		overflow: bucket{tokens: rate, last: now()},
	}
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
