package stack

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// flowIDFrom is the 4-tuple of a connection from src to our port 80.
func flowIDFrom(src netip.AddrPort) gvstack.TransportEndpointID {
	dst := netip.MustParseAddr("10.0.0.2")
	if src.Addr().Is6() {
		dst = netip.MustParseAddr("fd00::2")
	}
	return idOf(netip.AddrPortFrom(dst, 80), src)
}

func src(s string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(s), port)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestTable(lim flowLimits) (*flowTable, *Counters, *fakeClock) {
	var c Counters
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	if lim.halfOpen == 0 {
		lim.halfOpen = time.Minute
	}
	if lim.unclaim == 0 {
		lim.unclaim = 2 * time.Minute
	}
	return newFlowTable(lim, clk.Now, &c, nil), &c, clk
}

func mustInsert(t *testing.T, ft *flowTable, id gvstack.TransportEndpointID, kind flowKind) *flow {
	t.Helper()
	f, err := ft.insert(id, kind, flowSpec{neg: &fakeNeg{}})
	if err != nil {
		t.Fatalf("insert %v: %v", id, err)
	}
	return f
}

// Inbound SYNs never take the entries reserved for our own dials: when
// the inbound share is full a new SYN evicts the oldest flow not yet
// accepted (and its half-open connection is queued for abort); flows of
// accepted connections are never evicted, and with nothing to evict the
// SYN is refused.
func TestFlowTableInboundShare(t *testing.T) {
	ft, c, _ := newTestTable(flowLimits{max: 8, reserve: 2, perSource: 8})
	var passive []*flow
	for i := range 6 {
		passive = append(passive, mustInsert(t, ft, flowIDFrom(src("192.0.2.1", uint16(1000+i))), flowPassive))
	}
	// The seventh evicts the first.
	seventh := mustInsert(t, ft, flowIDFrom(src("192.0.2.7", 1000)), flowPassive)
	if ft.lookup(passive[0].id) != nil || !passive[0].wasLost() || c.FlowsEvicted.Load() != 1 {
		t.Fatalf("oldest not evicted: evicted %d", c.FlowsEvicted.Load())
	}
	select {
	case id := <-ft.dead:
		if id != passive[0].id {
			t.Fatalf("dead %v, want %v", id, passive[0].id)
		}
	default:
		t.Fatal("evicted flow not queued for abort")
	}
	if ft.len() != 6 {
		t.Fatalf("%d flows", ft.len())
	}
	// The reserve is there for dials.
	for i := range 2 {
		mustInsert(t, ft, flowIDFrom(src("198.51.100.1", uint16(2000+i))), flowActive)
	}
	if _, err := ft.insert(flowIDFrom(src("198.51.100.1", 3000)), flowActive, flowSpec{neg: &fakeNeg{}}); !errors.Is(err, ErrFlowTableFull) {
		t.Fatalf("ninth flow: %v", err)
	}
	// Accepted connections keep their flows: with every inbound flow
	// claimed a new SYN finds nothing to evict.
	for _, f := range append(passive[1:], seventh) {
		if !ft.claim(f) {
			t.Fatal("claim of a listed flow failed")
		}
	}
	if _, err := ft.insert(flowIDFrom(src("192.0.2.9", 1000)), flowPassive, flowSpec{neg: &fakeNeg{}}); !errors.Is(err, ErrFlowTableFull) {
		t.Fatalf("SYN with every inbound flow accepted: %v", err)
	}
	if ft.claim(passive[0]) {
		t.Fatal("claim of an evicted flow succeeded")
	}
	if c.FlowTableFull.Load() != 2 || ft.len() != 8 {
		t.Fatalf("full %d, flows %d", c.FlowTableFull.Load(), ft.len())
	}
}

// One source (an IPv4 address, an IPv6 /64) holds at most perSource
// flows not yet accepted; a new one evicts that source's oldest only.
func TestFlowTablePerSource(t *testing.T) {
	ft, c, _ := newTestTable(flowLimits{max: 64, reserve: 8, perSource: 2})
	other := mustInsert(t, ft, flowIDFrom(src("fd00:1:2:4::1", 1)), flowPassive)
	a := mustInsert(t, ft, flowIDFrom(src("fd00:1:2:3::1", 1)), flowPassive)
	b := mustInsert(t, ft, flowIDFrom(src("fd00:1:2:3::2", 2)), flowPassive) // same /64
	ft.claim(b)                                                              // accepted: no longer counts
	mustInsert(t, ft, flowIDFrom(src("fd00:1:2:3::3", 3)), flowPassive)
	if c.FlowsSourceEvicted.Load() != 0 {
		t.Fatal("an accepted flow counted against its source")
	}
	mustInsert(t, ft, flowIDFrom(src("fd00:1:2:3:ffff::4", 4)), flowPassive)
	if ft.lookup(a.id) != nil || ft.lookup(other.id) == nil || ft.lookup(b.id) == nil || c.FlowsSourceEvicted.Load() != 1 {
		t.Fatalf("per-source eviction: a %v other %v b %v, evicted %d",
			ft.lookup(a.id) != nil, ft.lookup(other.id) != nil, ft.lookup(b.id) != nil, c.FlowsSourceEvicted.Load())
	}
	// IPv4: per address.
	mustInsert(t, ft, flowIDFrom(src("192.0.2.1", 1)), flowPassive)
	mustInsert(t, ft, flowIDFrom(src("192.0.2.2", 1)), flowPassive)
	mustInsert(t, ft, flowIDFrom(src("192.0.2.2", 2)), flowPassive)
	if c.FlowsSourceEvicted.Load() != 1 {
		t.Fatal("IPv4 sources share a limit")
	}
	if n := len(ft.bySrc); n != 4 {
		t.Fatalf("%d sources", n)
	}
}

// Half-open inbound flows are freed by a RST that resets the connection,
// by the half-open timeout, and when the stack no longer has the half-open
// connection (it gave up its SYN-ACK retransmissions).
func TestFlowTableHalfOpenEnds(t *testing.T) {
	ft, c, clk := newTestTable(flowLimits{max: 64, reserve: 8, perSource: 8, inHalfOpen: 20 * time.Second})
	alive := map[gvstack.TransportEndpointID]bool{}
	ft.alive = func(id gvstack.TransportEndpointID) bool { return alive[id] }
	syn := func(f *flow, isn uint32, resent bool) {
		f.mu.Lock()
		f.peerISN, f.havePeerISN = isn, true
		f.sentSYN(clk.Now())
		if resent {
			f.sentSYN(clk.Now())
		}
		f.mu.Unlock()
	}
	r := mustInsert(t, ft, flowIDFrom(src("192.0.2.1", 1)), flowPassive)
	syn(r, 1000, false)
	if ft.resetBy(r, 1000) || ft.resetBy(r, 1002) || ft.lookup(r.id) == nil {
		t.Fatal("a RST out of window freed the flow")
	}
	if !ft.resetBy(r, 1001) || ft.lookup(r.id) != nil || c.FlowsReset.Load() != 1 {
		t.Fatal("the RST in window did not free the flow")
	}
	acc := mustInsert(t, ft, flowIDFrom(src("192.0.2.2", 1)), flowPassive)
	syn(acc, 5, false)
	ft.claim(acc)
	if ft.resetBy(acc, 6) {
		t.Fatal("a RST freed an accepted connection's flow (its connection removes it)")
	}

	dying := mustInsert(t, ft, flowIDFrom(src("192.0.2.3", 1)), flowPassive)
	syn(dying, 1, true)
	living := mustInsert(t, ft, flowIDFrom(src("192.0.2.4", 1)), flowPassive)
	syn(living, 1, true)
	alive[living.id] = true
	cookie := mustInsert(t, ft, flowIDFrom(src("192.0.2.5", 1)), flowPassive)
	syn(cookie, 1, false) // one SYN-ACK: maybe a SYN cookie, no endpoint to probe
	if n := ft.sweep(); n != 1 || ft.lookup(dying.id) != nil || c.FlowsDied.Load() != 1 {
		t.Fatalf("sweep dropped %d, died %d", n, c.FlowsDied.Load())
	}
	clk.advance(21 * time.Second)
	if n := ft.sweep(); n != 2 || ft.lookup(living.id) != nil || ft.lookup(cookie.id) != nil || ft.lookup(acc.id) == nil {
		t.Fatalf("timeout sweep dropped %d", n)
	}
	if !living.wasLost() || c.FlowsExpired.Load() != 2 || len(ft.dead) != 2 {
		t.Fatalf("expired %d, queued for abort %d", c.FlowsExpired.Load(), len(ft.dead))
	}
	if ft.len() != 1 || ft.embryos.n != 0 || len(ft.bySrc) != 0 {
		t.Fatalf("left: %d flows, %d embryos, %d sources", ft.len(), ft.embryos.n, len(ft.bySrc))
	}
}
