package stack

import (
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Why some connections run without SACK.
//
// gVisor's RACK loss detection sends a tail loss probe 2·SRTT after the last
// segment when no ACK came back, with no lower bound (RFC 8985 §7.2 suggests
// one; Linux's is 10 ms). Between hosts a fraction of a millisecond apart,
// 2·SRTT is shorter than the time a receiver takes to turn its ACKs around
// under load, so probes fire while nothing is lost: each is a spurious
// retransmission that gVisor answers by cutting its congestion window. RACK
// only runs on connections that negotiated SACK, so the stack keeps SACK off
// the connections where this would happen: those to and from peers whose
// measured round-trip time is below Options.SACKMinRTT. The price is slower
// recovery should such a near path lose packets (duplicate ACKs and RTO
// instead of SACK), which near paths rarely do.
//
// Measured with tcpcryptd-bench -only bulk -setups
// tcpcrypt-aes128gcm,relay-plain -runs 2 (every leg well under a
// millisecond), this code against the same code without it, alternating,
// two rounds: the mean of the eight bulk figures rose 1.28-1.40x encrypted
// and 1.12-1.58x plain, and the lowest encrypted figure from 268 to 447
// MB/s. The default threshold (1 ms, config tcp.sack_min_rtt) leaves SACK
// on paths of a millisecond and more, where the probe timer is sane and
// RACK's recovery pays: over TestImpairedBulkTransfer's 1 ms round trip
// with 0.1% loss, RACK turned off (SACK kept) took 14 s per 100 MiB
// instead of 9 s.
//
// A near path that does lose packets needs SACK most: without it, each
// loss with fewer than three segments behind it (a congestion window cut
// down by earlier losses) waits for a retransmission timeout, at least
// 200 ms in gVisor and doubling while retransmissions are lost too. At 5 %
// random loss on a sub-millisecond path that made 4 MB downloads take 9 s
// to over a minute instead of the kernel's 0.05-1 s (docs/loss-recovery.md).
// So a connection that ended having retransmitted (a fast retransmit or a
// timeout) marks its peer lossy for the window, and a lossy peer gets SACK
// whatever its round trip: a lossless near path keeps the fast setting, a
// lossy one pays one connection before it gets SACK's recovery.
//
// The round trip is timed by the shim from our SYN or SYN-ACK to the end
// of the handshake (flow.handshakeRTT), not taken from gVisor: gVisor
// measures with TCP timestamps, in whole milliseconds.

// peerRTTs remembers the smallest round-trip time measured to each peer
// within a window, so that a connection can choose SACK before its own
// handshake has measured anything. Safe for concurrent use.
type peerRTTs struct {
	below  time.Duration // SACK off for peers measured under this; 0: never
	window time.Duration // a peer's minimum restarts after this (paths change)
	max    int           // peers remembered at most
	now    func() time.Time

	mu sync.Mutex
	m  map[netip.Addr]peerRTT // guarded by mu
}

type peerRTT struct {
	min   time.Duration // 0: none measured in the current window
	since time.Time     // first sample of the current window
	lossy time.Time     // last connection that retransmitted; zero: none
}

// Defaults of the peer RTT table.
const (
	peerRTTWindow = 10 * time.Minute
	peerRTTMax    = 4096
)

func newPeerRTTs(below time.Duration, now func() time.Time) *peerRTTs {
	return &peerRTTs{below: below, window: peerRTTWindow, max: peerRTTMax, now: now, m: make(map[netip.Addr]peerRTT)}
}

// observe records a round-trip time measured to peer (0 or less: none).
func (p *peerRTTs) observe(peer netip.Addr, rtt time.Duration) {
	if p == nil || p.below <= 0 || rtt <= 0 || !peer.IsValid() {
		return
	}
	peer = peer.Unmap()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[peer]
	if ok && now.Sub(e.since) < p.window {
		e.min = min(e.min, rtt)
		p.m[peer] = e
		return
	}
	if !ok && len(p.m) >= p.max {
		p.evictLocked(now)
	}
	p.m[peer] = peerRTT{min: rtt, since: now, lossy: e.lossy}
}

// lost records that a connection with peer had to retransmit: the peer is
// lossy for the window, and its connections get SACK.
func (p *peerRTTs) lost(peer netip.Addr) {
	if p == nil || p.below <= 0 || !peer.IsValid() {
		return
	}
	peer = peer.Unmap()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[peer]
	if !ok {
		if len(p.m) >= p.max {
			p.evictLocked(now)
		}
		e = peerRTT{since: now}
	}
	e.lossy = now
	p.m[peer] = e
}

// evictLocked makes room for one entry: every entry past its window goes;
// if none is, an arbitrary one does (map order), which at worst gives that
// peer SACK again on its next connection.
func (p *peerRTTs) evictLocked(now time.Time) {
	for a, e := range p.m {
		if now.Sub(e.since) >= p.window && now.Sub(e.lossy) >= p.window {
			delete(p.m, a)
		}
	}
	if len(p.m) < p.max {
		return
	}
	for a := range p.m {
		delete(p.m, a)
		return
	}
}

// near reports whether connections with peer should go without SACK: its
// smallest round-trip time in the current window is below the threshold,
// and no connection with it retransmitted within the window. A peer never
// measured is not near.
func (p *peerRTTs) near(peer netip.Addr) bool {
	if p == nil || p.below <= 0 {
		return false
	}
	peer = peer.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[peer]
	now := p.now()
	if !ok || e.min <= 0 || now.Sub(e.since) >= p.window {
		return false
	}
	if !e.lossy.IsZero() && now.Sub(e.lossy) < p.window {
		return false
	}
	return e.min < p.below
}

// retransmitted reports whether ep has had to retransmit for loss: a fast
// retransmission (duplicate ACKs, SACK or RACK) or a retransmission
// timeout. Tail loss probes alone do not count: on a near path they fire
// spuriously (see above).
func retransmitted(ep tcpip.Endpoint) bool {
	st, ok := ep.Stats().(*tcp.Stats)
	return ok && st.SendErrors.FastRetransmit.Value()+st.SendErrors.Timeouts.Value() > 0
}

// observeHandshake records the round-trip time of f's handshake, which has
// just completed, for peer.
func (s *Stack) observeHandshake(peer netip.Addr, f *flow) {
	if rtt, ok := f.handshakeRTT(s.opts.Now()); ok {
		s.rtts.observe(peer, rtt)
	}
}
