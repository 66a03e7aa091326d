package stack

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// addrA4b is a second IPv4 source on stack a (another client).
var addrA4b = netip.MustParseAddr("10.0.0.3")

// withSecondSource gives stack a the address addrA4b too.
func withSecondSource(o *Options) {
	o.Addresses = append(o.Addresses, netip.PrefixFrom(addrA4b, 24))
}

// stalledClients are connections from stack a that complete TCP and ENO
// and then send nothing: each dial stops where tcpcrypt's handshake would
// send Init1, until release.
type stalledClients struct {
	release chan struct{}
	started atomic.Int32 // dials that reached the stall
	ended   atomic.Int32 // dials that returned
	wg      sync.WaitGroup
	once    sync.Once
}

func newStalledClients(t *testing.T) *stalledClients {
	sc := &stalledClients{release: make(chan struct{})}
	t.Cleanup(sc.stop)
	return sc
}

// dial starts one stalled connection from src to dst; the dial's result is
// discarded (closed if it succeeded once released).
func (sc *stalledClients) dial(ctx context.Context, s *Stack, src netip.Addr, dst netip.AddrPort) {
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		c, err := s.dial(ctx, netip.AddrPortFrom(src, 0), dst, nil, func() {
			sc.started.Add(1)
			<-sc.release
		})
		sc.ended.Add(1)
		if err == nil {
			c.Close()
		}
	}()
}

// settled reports whether n dials reached the stall or ended before it (a
// connection the server evicted at once may see the reset before its dial
// returns from TCP's handshake).
func (sc *stalledClients) settled(n int) bool {
	return int(sc.started.Load()+sc.ended.Load()) >= n
}

// stop lets every stalled dial go on (their handshakes then fail or
// finish) and waits for them.
func (sc *stalledClients) stop() {
	sc.once.Do(func() { close(sc.release) })
	sc.wg.Wait()
}

// acceptAll accepts from l until it closes, checks that every accepted
// connection is encrypted (a hostile peer must never turn one plain) and
// closes it. It returns how many it accepted.
func acceptAll(t *testing.T, l *Listener) *atomic.Int32 {
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.AcceptConn(context.Background())
			if err != nil {
				return
			}
			if !c.Encrypted() {
				t.Errorf("accepted a plain connection from %s: %s", c.id.Remote, c.neg.Detail)
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return &n
}

// stalledAt listens on addrB4:80 of p's host b, accepts whatever arrives
// (accepted counts it), and opens n connections from addrA4 that negotiate
// ENO and never send Init1.
func stalledAt(t *testing.T, p *pair, n int) (l *Listener, accepted *atomic.Int32, sc *stalledClients) {
	t.Helper()
	l, err := p.b.Listen(addrB4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted = acceptAll(t, l)
	sc = newStalledClients(t)
	dst := netip.AddrPortFrom(addrB4, 80)
	for range n {
		sc.dial(ctxT(t), p.a, addrA4, dst)
	}
	return l, accepted, sc
}

// legitDial dials dst from src and requires an encrypted connection within
// a few seconds (a stalled slot would hold it for HandshakeTimeout, 10 s).
func legitDial(t *testing.T, s *Stack, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Dial(ctx, netip.AddrPortFrom(src, 0), dst, nil)
	if err != nil {
		t.Fatalf("legitimate dial from %v: %v", src, err)
	}
	defer c.Close()
	if !c.Encrypted() {
		t.Fatalf("legitimate connection from %v is plain: %s", src, c.Negotiation().Detail)
	}
}

// checkSlotsBaseline waits until l and its stack hold no handshake state.
func checkSlotsBaseline(t *testing.T, s *Stack, l *Listener) {
	t.Helper()
	waitFor(t, func() bool {
		active, parked := l.inProgress()
		return len(l.sem) == 0 && l.waitingHandshakes() == 0 && active == 0 && parked == 0 && s.flows.len() == 0
	}, "handshake slots back to baseline")
}

// TestStalledHandshakesEvicted: more clients than there are handshake slots
// negotiate ENO and never send Init1. The oldest stalled handshakes are
// evicted for new connections, so a legitimate client still connects
// encrypted at once (without eviction it waits for a slot, i.e. for a
// stalled handshake's timeout), and the slots return to baseline.
func TestStalledHandshakesEvicted(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			testStalledHandshakesEvicted(t, v6)
		})
	}
}

func testStalledHandshakesEvicted(t *testing.T, v6 bool) {
	src, dstAddr := addrA4, addrB4
	if v6 {
		src, dstAddr = addrA6, addrB6
	}
	const slots, stalled = 8, 20
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.MaxHandshakes = slots
		o.HandshakesPerSource = 1000 // this test is about eviction alone
		o.Init1Timeout = time.Minute // longer than the test: no timeout helps
	}})
	// Any waiting handshake may be evicted (by default only those that
	// waited a quarter of Init1Timeout: a minute here).
	p.b.evictAge = 0
	l, err := p.b.Listen(dstAddr, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptAll(t, l)
	dst := netip.AddrPortFrom(dstAddr, 80)
	sc := newStalledClients(t)
	for range stalled {
		sc.dial(ctxT(t), p.a, src, dst)
	}
	waitFor(t, func() bool {
		return sc.settled(stalled) && l.waitingHandshakes() == slots && p.b.counters.HandshakesEvicted.Load() == stalled-slots
	}, "every slot taken")

	legitDial(t, p.a, src, dst)
	if got := p.b.counters.HandshakesEvicted.Load(); got != stalled-slots+1 {
		t.Errorf("evicted %d handshakes, want %d", got, stalled-slots+1)
	}
	waitFor(t, func() bool { return accepted.Load() == 1 }, "the legitimate connection accepted")
	sc.stop()
	checkSlotsBaseline(t, p.b, l)
}

// TestInit1Timeout: a peer that negotiates ENO and sends no Init1 is reset
// once Init1Timeout has passed, well before the handshake timeout, and its
// slot is free again.
func TestInit1Timeout(t *testing.T) {
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.Init1Timeout = 100 * time.Millisecond
		o.HandshakeTimeout = time.Minute
	}})
	l, _, sc := stalledAt(t, p, 1)
	dst := netip.AddrPortFrom(addrB4, 80)
	waitFor(t, func() bool { return p.b.counters.Init1Timeouts.Load() == 1 }, "Init1 timeout")
	checkSlotsBaseline(t, p.b, l)
	sc.stop()
	legitDial(t, p.a, addrA4, dst)
	if got := p.b.counters.Init1Timeouts.Load(); got != 1 {
		t.Errorf("Init1 timeouts = %d, want 1 (the legitimate client sent Init1 at once)", got)
	}
}

// TestHandshakesPerSource: one source holds at most HandshakesPerSource
// handshake slots; its further connections wait without one (and finish
// once its stalled handshakes go on), and another source still connects
// encrypted at once.
func TestHandshakesPerSource(t *testing.T) {
	const perSource, stalled = 4, 7
	p := newPair(t, pairOpts{a: withSecondSource, b: func(o *Options) {
		o.HandshakesPerSource = perSource
		o.Init1Timeout = time.Minute
	}})
	l, accepted, sc := stalledAt(t, p, stalled)
	dst := netip.AddrPortFrom(addrB4, 80)
	waitFor(t, func() bool { return sc.started.Load() == stalled }, "stalled clients")
	waitFor(t, func() bool {
		_, parked := l.inProgress()
		return parked == stalled-perSource
	}, "connections beyond the source's share parked")
	if active, _ := l.inProgress(); active != perSource || len(l.sem) != perSource || l.waitingHandshakes() != perSource {
		t.Errorf("source holds %d slots (%d taken, %d waiting), want %d", active, len(l.sem), l.waitingHandshakes(), perSource)
	}
	legitDial(t, p.a, addrA4b, dst)
	if got := p.b.counters.HandshakesEvicted.Load() + p.b.counters.HandshakeSourceBusy.Load(); got != 0 {
		t.Errorf("%d handshakes evicted or refused, want 0 (slots were free)", got)
	}
	// Released, the stalled clients send Init1: every connection of the
	// source, parked ones included, ends encrypted.
	sc.stop()
	waitFor(t, func() bool { return accepted.Load() == stalled+1 }, "every connection accepted")
	checkSlotsBaseline(t, p.b, l)
}

// TestParkedConnectionsBounded: a source's connections beyond its share of
// slots wait in a bounded queue; beyond it they are reset (and counted),
// and Close resets the ones still waiting and leaves no state behind.
func TestParkedConnectionsBounded(t *testing.T) {
	const perSource, park, stalled = 2, 3, 8
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.HandshakesPerSource = perSource
		o.Init1Timeout = time.Minute
	}})
	p.b.parkPerSource = park
	l, _, sc := stalledAt(t, p, stalled)
	waitFor(t, func() bool {
		return sc.settled(stalled) && p.b.counters.HandshakeSourceBusy.Load() == stalled-perSource-park
	}, "connections beyond the queue refused")
	if active, parked := l.inProgress(); active != perSource || parked != park {
		t.Errorf("%d handshakes, %d parked; want %d and %d", active, parked, perSource, park)
	}
	l.Close()
	checkSlotsBaseline(t, p.b, l)
}

// TestEvictionPastParked: a source that holds every slot and has more
// connections waiting behind them gets each evicted slot back for its next
// connection; eviction goes on until a slot is free, so another source's
// client still connects encrypted.
func TestEvictionPastParked(t *testing.T) {
	const slots, stalled = 4, 12
	p := newPair(t, pairOpts{a: withSecondSource, b: func(o *Options) {
		o.MaxHandshakes = slots
		o.HandshakesPerSource = slots
		o.Init1Timeout = time.Minute
	}})
	p.b.evictAge = 0
	l, _, sc := stalledAt(t, p, stalled)
	dst := netip.AddrPortFrom(addrB4, 80)
	waitFor(t, func() bool {
		_, parked := l.inProgress()
		return sc.settled(stalled) && l.waitingHandshakes() == slots && parked == stalled-slots
	}, "slots taken and connections parked")
	legitDial(t, p.a, addrA4b, dst)
	if got := p.b.counters.HandshakesEvicted.Load(); got != stalled-slots+1 {
		t.Errorf("evicted %d handshakes, want %d (every parked one, then one more)", got, stalled-slots+1)
	}
	sc.stop()
	checkSlotsBaseline(t, p.b, l)
}

// TestHandshakeBudgetPerSource: a source that offers only P-521 (the
// dearest TEP) is held to its key-exchange budget: once spent, its
// handshakes are reset (never left plain), while another source's P-521
// handshake still succeeds. The clock is frozen, so the budget does not
// refill during the test.
func TestHandshakeBudgetPerSource(t *testing.T) {
	frozen := time.Unix(1_800_000_000, 0)
	const budget = 40 // two P-521 handshakes (cost 18 each)
	p := newPair(t, pairOpts{
		a: func(o *Options) {
			withSecondSource(o)
			o.TCPCrypt = &tcpcrypt.Config{TEPs: []kex.ID{kex.P521}}
		},
		b: func(o *Options) {
			o.HandshakeBudget = budget
			o.Now = func() time.Time { return frozen }
		},
	})
	l, err := p.b.Listen(addrB4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptAll(t, l)
	dst := netip.AddrPortFrom(addrB4, 80)
	allowed := int(budget / tepCost(kex.P521))
	var ok, refused int
	for range allowed + 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := p.a.Dial(ctx, netip.AddrPortFrom(addrA4, 0), dst, nil)
		cancel()
		switch {
		case err == nil && c.Encrypted():
			ok++
			c.Close()
		case err == nil:
			t.Fatalf("over-budget connection fell back to plain: %s", c.Negotiation().Detail)
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("dial hung instead of being reset: %v", err)
		default:
			refused++
		}
	}
	if ok != allowed || refused != 3 {
		t.Errorf("flooding source: %d encrypted, %d reset; want %d and 3", ok, refused, allowed)
	}
	if got := p.b.counters.HandshakeCPULimited.Load(); got != 3 {
		t.Errorf("handshake-cpu-limited = %d, want 3", got)
	}
	legitDial(t, p.a, addrA4b, dst)
	waitFor(t, func() bool { return accepted.Load() == int32(allowed+1) }, "accepts")
	checkSlotsBaseline(t, p.b, l)
}

func TestSourceKey(t *testing.T) {
	same := [][2]string{
		{"10.0.0.1", "::ffff:10.0.0.1"},
		{"fd00::1", "fd00::ffff:1:2:3"},
	}
	for _, c := range same {
		a, b := sourcePrefix(netip.MustParseAddr(c[0])), sourcePrefix(netip.MustParseAddr(c[1]))
		if a != b {
			t.Errorf("sourcePrefix(%s) = %v, sourcePrefix(%s) = %v; want one source", c[0], a, c[1], b)
		}
	}
	differ := [][2]string{
		{"10.0.0.1", "10.0.0.2"},
		{"fd00::1", "fd00:0:0:1::1"},
	}
	for _, c := range differ {
		a, b := sourcePrefix(netip.MustParseAddr(c[0])), sourcePrefix(netip.MustParseAddr(c[1]))
		if a == b {
			t.Errorf("sourcePrefix(%s) = sourcePrefix(%s) = %v; want two sources", c[0], c[1], a)
		}
	}
}

func TestHandshakeLimiterBudget(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newHandshakeLimiter(10, func() time.Time { return now })
	src := sourcePrefix(netip.MustParseAddr("192.0.2.1"))
	other := sourcePrefix(netip.MustParseAddr("192.0.2.2"))
	if !h.spend(src, 6) || h.spend(src, 6) {
		t.Fatal("burst of 10: want 6 allowed, then 6 more refused")
	}
	if !h.spend(other, 10) {
		t.Fatal("another source has its own budget")
	}
	now = now.Add(500 * time.Millisecond) // +5
	if !h.spend(src, 9) || h.spend(src, 1) {
		t.Fatal("after 0.5 s at 10/s: want 9 allowed, then nothing left")
	}
	now = now.Add(time.Hour)
	if !h.spend(src, 10) || h.spend(src, 1) {
		t.Fatal("refill is capped at the burst")
	}
}

// TestHandshakeLimiterBounded: the budget table never grows past
// maxBuckets; refilled buckets are dropped, and sources beyond the bound
// share one bucket.
func TestHandshakeLimiterBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newHandshakeLimiter(1, func() time.Time { return now })
	src := func(i int) netip.Prefix {
		return sourcePrefix(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := range maxBuckets {
		if !h.spend(src(i), 1) {
			t.Fatalf("source %d refused its first handshake", i)
		}
	}
	if !h.spend(src(maxBuckets), 1) || h.spend(src(maxBuckets+1), 1) {
		t.Fatal("sources beyond the table should share one bucket of burst 1")
	}
	if len(h.buckets) != maxBuckets {
		t.Fatalf("%d buckets, want %d", len(h.buckets), maxBuckets)
	}
	now = now.Add(2 * time.Second) // every bucket full again
	if !h.spend(src(maxBuckets+2), 1) {
		t.Fatal("new source refused after the table's buckets refilled")
	}
	if len(h.buckets) != 1 {
		t.Fatalf("%d buckets after pruning, want 1", len(h.buckets))
	}
}

// TestTEPCostOrder: every TEP we can negotiate has a cost, ordered as its
// CPU is (BenchmarkKEM), and one we do not know costs as the dearest.
func TestTEPCostOrder(t *testing.T) {
	if !(tepCost(kex.X25519) <= tepCost(kex.P256) && tepCost(kex.P256) < tepCost(kex.X25519MLKEM768) &&
		tepCost(kex.X25519MLKEM768) < tepCost(kex.X448) && tepCost(kex.X448) < tepCost(kex.P521)) {
		t.Fatalf("costs out of order: x25519 %v p256 %v hybrid %v x448 %v p521 %v", tepCost(kex.X25519),
			tepCost(kex.P256), tepCost(kex.X25519MLKEM768), tepCost(kex.X448), tepCost(kex.P521))
	}
	if tepCost(kex.ID(0x7f)) != tepCost(kex.P521) {
		t.Fatal("an unknown TEP must cost as much as the dearest")
	}
}

// TestCloseWhileWaitingForSlot: Close while the accept loop waits for a
// handshake slot (every slot held by a stalled handshake that is too young
// to evict) resets the waiting connection and leaves no handshake state:
// the connection had already been counted for its source.
func TestCloseWhileWaitingForSlot(t *testing.T) {
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.MaxHandshakes = 1
		o.HandshakesPerSource = 1000
		o.Init1Timeout = time.Minute // evictAge 15 s: nothing is evicted
	}})
	l, _, sc := stalledAt(t, p, 1)
	dst := netip.AddrPortFrom(addrB4, 80)
	waitFor(t, func() bool { return l.waitingHandshakes() == 1 }, "the slot taken")
	sc.dial(ctxT(t), p.a, addrA4, dst)
	waitFor(t, func() bool { active, _ := l.inProgress(); return active == 2 }, "a second connection waiting for the slot")
	l.Close()
	if active, parked := l.inProgress(); active != 0 || parked != 0 || len(l.sem) != 0 || l.waitingHandshakes() != 0 {
		t.Errorf("after Close: %d handshakes counted, %d parked, %d slots taken, %d waiting; want none", active, parked, len(l.sem), l.waitingHandshakes())
	}
	waitFor(t, func() bool { return p.b.flows.len() == 0 }, "flows released")
}

// TestCloseForgetsBackloggedFlows: connections that completed TCP's
// handshake but that the listener had not yet accepted (its accept loop
// waited for a handshake slot) are reset by Close, and their ENO flows go
// with them at once, not only when the sweep finds them unclaimed
// (Options.UnclaimedTimeout, two minutes by default).
func TestCloseForgetsBackloggedFlows(t *testing.T) {
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.MaxHandshakes = 1
		o.HandshakesPerSource = 1000
		o.Init1Timeout = time.Minute // nothing is evicted or timed out
	}})
	l, _, sc := stalledAt(t, p, 1)
	dst := netip.AddrPortFrom(addrB4, 80)
	waitFor(t, func() bool { return l.waitingHandshakes() == 1 }, "the slot taken")
	sc.dial(ctxT(t), p.a, addrA4, dst)
	waitFor(t, func() bool { active, _ := l.inProgress(); return active == 2 }, "the accept loop waiting for the slot")
	sc.dial(ctxT(t), p.a, addrA4, dst) // stays in the stack's accept queue
	waitFor(t, func() bool { return sc.started.Load() == 3 && p.b.flows.len() == 3 }, "a third connection established")
	l.Close()
	waitFor(t, func() bool { return p.b.flows.len() == 0 }, "every flow of the closed listener released")
}
