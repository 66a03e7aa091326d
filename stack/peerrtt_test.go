package stack

import (
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

func TestPeerRTTs(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPeerRTTs(time.Millisecond, func() time.Time { return now })
	p.max = 2
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("2001:db8::1")
	c := netip.MustParseAddr("192.0.2.3")
	if p.near(a) {
		t.Fatal("a peer never measured is near")
	}
	p.observe(a, 3*time.Millisecond)
	if p.near(a) {
		t.Fatal("3ms is near with a 1ms threshold")
	}
	p.observe(a, 300*time.Microsecond) // the window keeps the minimum
	p.observe(a, 5*time.Millisecond)
	if !p.near(a) {
		t.Fatal("a minimum of 300µs is not near")
	}
	if !p.near(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("the IPv4-mapped form of a is not near")
	}
	p.observe(a, 0) // no sample
	p.observe(b, 100*time.Microsecond)
	now = now.Add(peerRTTWindow)
	if p.near(a) || p.near(b) {
		t.Fatal("entries past their window still count")
	}
	p.observe(a, 4*time.Millisecond) // a new window starts from this sample
	if p.near(a) {
		t.Fatal("the old minimum survived its window")
	}
	p.observe(c, 100*time.Microsecond) // full: b, past its window, goes
	if len(p.m) != 2 || !p.near(c) {
		t.Fatalf("after eviction: %d entries, near(c) = %v", len(p.m), p.near(c))
	}
	p.observe(b, 100*time.Microsecond) // full, none expired: one goes
	if len(p.m) != 2 || !p.near(b) {
		t.Fatalf("after forced eviction: %d entries, near(b) = %v", len(p.m), p.near(b))
	}
	off := newPeerRTTs(0, time.Now)
	off.observe(a, time.Microsecond)
	if off.near(a) || len(off.m) != 0 {
		t.Error("a zero threshold records or reports peers")
	}
	var none *peerRTTs
	none.observe(a, time.Microsecond)
	if none.near(a) {
		t.Error("a nil table reports a near peer")
	}
}

// TestPeerRTTsLossy: a peer that lost packets gets SACK back for the window
// however near it is, and keeps the mark across a new RTT window and
// evictions; unknown peers and disabled tables stay safe.
func TestPeerRTTsLossy(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPeerRTTs(time.Millisecond, func() time.Time { return now })
	p.max = 2
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	c := netip.MustParseAddr("192.0.2.3")
	p.observe(a, 100*time.Microsecond)
	if !p.near(a) {
		t.Fatal("100µs is not near")
	}
	p.lost(netip.MustParseAddr("::ffff:192.0.2.1"))
	if p.near(a) {
		t.Fatal("a lossy near peer still goes without SACK")
	}
	p.observe(a, 50*time.Microsecond)
	if p.near(a) {
		t.Fatal("a new sample cleared the loss mark")
	}
	// A window later the RTT window restarts with the next sample, but the
	// loss is only forgotten once its own window has passed.
	now = now.Add(peerRTTWindow / 2)
	p.lost(a)
	now = now.Add(peerRTTWindow / 2)
	p.observe(a, 50*time.Microsecond)
	if p.near(a) {
		t.Fatal("a loss half a window old was forgotten with the RTT window")
	}
	now = now.Add(peerRTTWindow / 2)
	if !p.near(a) {
		t.Fatal("a loss a window old still gives SACK")
	}
	// A peer first seen losing has no RTT: not near, and it takes a slot.
	p.lost(b)
	if p.near(b) || len(p.m) != 2 {
		t.Fatalf("lossy unmeasured peer: near %v, %d entries", p.near(b), len(p.m))
	}
	p.observe(b, 10*time.Microsecond)
	if p.near(b) {
		t.Fatal("measuring a lossy peer made it near")
	}
	// Full: the entry past its RTT window but still lossy is not the one
	// that expires; eviction falls back to an arbitrary one.
	p.observe(c, 10*time.Microsecond)
	if len(p.m) != 2 || !p.near(c) {
		t.Fatalf("after eviction: %d entries, near(c) %v", len(p.m), p.near(c))
	}
	off := newPeerRTTs(0, time.Now)
	off.lost(a)
	if len(off.m) != 0 || off.near(a) {
		t.Error("a zero threshold records losses")
	}
	var none *peerRTTs
	none.lost(a)
	none.lost(netip.Addr{})
	p.lost(netip.Addr{})
}

// TestNearPeerWithoutSACK: once a connection has measured the peer's round
// trip below Options.SACKMinRTT, the next connections to it go without SACK
// (the dialer's SYN does not offer it, so neither side runs RACK's tail
// loss probes), and a listener strips it from a near peer's SYN. Encrypted
// and plain connections alike; with the threshold at 0 SACK stays.
func TestNearPeerWithoutSACK(t *testing.T) {
	sackOffered := func(s wiretest.Segment) bool {
		return len(wiretest.OptionsOfKind(s.Options, header.TCPOptionSACKPermitted)) > 0
	}
	for _, tc := range []struct {
		name         string
		dialer, lsnr time.Duration // the two stacks' SACKMinRTT
		pol          *Policy
		want         bool // SACK off after the first connection
	}{
		{"encrypted", time.Second, time.Second, nil, true},
		{"plain", time.Second, time.Second, &Policy{Default: eno.ModeOff}, true},
		// The listener alone decides: it strips SACK-permitted from the
		// SYN it receives, and its SYN-ACK does not offer SACK.
		{"listener only", 0, time.Second, nil, true},
		{"threshold 0", 0, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, pairOpts{
				a: func(o *Options) { o.SACKMinRTT = tc.dialer },
				b: func(o *Options) { o.SACKMinRTT = tc.lsnr },
			})
			for i := range 3 {
				p.capAB.Reset()
				p.capBA.Reset()
				client, server := dialAccept(t, p, i == 2, uint16(80+i), tc.pol, tc.pol)
				exchange(t, client, server, []byte("ping"), []byte("pong"))
				client.Close()
				server.Close()
				var syn, synack *wiretest.Segment
				for _, s := range p.capAB.Segments() {
					if s.SYNOnly() {
						syn = &s.Segment
					}
				}
				for _, s := range p.capBA.Segments() {
					if s.SYNACK() {
						synack = &s.Segment
					}
				}
				if syn == nil || synack == nil {
					t.Fatalf("connection %d: no SYN or SYN-ACK captured", i)
				}
				wantSACK := i == 0 || i == 2 || !tc.want // 2 is over IPv6: a peer not yet measured
				wantSYN := wantSACK || tc.dialer == 0
				if sackOffered(*syn) != wantSYN || sackOffered(*synack) != wantSACK {
					t.Errorf("connection %d: SACK-permitted in SYN %v, SYN-ACK %v; want %v, %v",
						i, sackOffered(*syn), sackOffered(*synack), wantSYN, wantSACK)
				}
				if tc.pol == nil && !client.Encrypted() {
					t.Errorf("connection %d: not encrypted: %+v", i, client.Negotiation())
				}
			}
			if tc.want && p.a.Counters().NoSACK.Load()+p.b.Counters().NoSACK.Load() == 0 {
				t.Errorf("no-sack counters are 0")
			}
		})
	}
}

// TestHandshakeRTTKarn: a handshake whose SYN left twice gives no sample.
func TestHandshakeRTTKarn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var f flow
	if _, ok := f.handshakeRTT(t0); ok {
		t.Fatal("a sample without a SYN")
	}
	f.sentSYN(t0)
	if rtt, ok := f.handshakeRTT(t0.Add(300 * time.Microsecond)); !ok || rtt != 300*time.Microsecond {
		t.Fatalf("handshakeRTT = %v, %v; want 300µs", rtt, ok)
	}
	f.sentSYN(t0.Add(time.Second))
	if _, ok := f.handshakeRTT(t0.Add(time.Second + time.Millisecond)); ok {
		t.Fatal("a sample from a retransmitted SYN")
	}
}
