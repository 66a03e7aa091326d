package stack

import (
	"net/netip"
	"sync"
	"time"
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
	min   time.Duration
	since time.Time // first sample of the current window
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
	p.m[peer] = peerRTT{min: rtt, since: now}
}

// evictLocked makes room for one entry: every entry past its window goes;
// if none is, an arbitrary one does (map order), which at worst gives that
// peer SACK again on its next connection.
func (p *peerRTTs) evictLocked(now time.Time) {
	for a, e := range p.m {
		if now.Sub(e.since) >= p.window {
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
// smallest round-trip time in the current window is below the threshold.
// A peer never measured is not near.
func (p *peerRTTs) near(peer netip.Addr) bool {
	if p == nil || p.below <= 0 {
		return false
	}
	peer = peer.Unmap()
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[peer]
	return ok && p.now().Sub(e.since) < p.window && e.min < p.below
}

// observeHandshake records the round-trip time of f's handshake, which has
// just completed, for peer.
func (s *Stack) observeHandshake(peer netip.Addr, f *flow) {
	if rtt, ok := f.handshakeRTT(s.opts.Now()); ok {
		s.rtts.observe(peer, rtt)
	}
}
