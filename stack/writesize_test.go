package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A write of writeSize bytes must fit one of gVisor's super-packets
// (GSOMaxSize minus header.TCPTotalHeaderMaximumSize and one) and be whole segments at the MTU
// with timestamps; without GSO there is no cap.
func TestWriteSizes(t *testing.T) {
	gso := func(mtu uint32) *channel.Endpoint {
		ep := channel.New(1, mtu, "")
		ep.SupportedGSOKind = gvstack.HostGSOSupported
		return ep
	}
	const limit = 1<<15 - header.TCPTotalHeaderMaximumSize - 1 // channel.Endpoint: GSOMaxSize 32 KiB
	for _, tc := range []struct {
		name   string
		link   gvstack.LinkEndpoint
		v4, v6 int
	}{
		{"no GSO", channel.New(1, 1500, ""), 0, 0},
		{"MTU 1500", gso(1500), limit / 1448 * 1448, limit / 1428 * 1428},
		{"MTU 9000", gso(9000), limit / 8948 * 8948, limit / 8928 * 8928},
		{"MTU above the super-packet", gso(65535), limit, limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriteSizes(tc.link)
			if w.v4 != tc.v4 || w.v6 != tc.v6 {
				t.Fatalf("write sizes v4 %d, v6 %d; want %d, %d", w.v4, w.v6, tc.v4, tc.v6)
			}
			if w.v4 > limit || w.v6 > limit {
				t.Fatalf("write sizes %d/%d exceed one super-packet (%d)", w.v4, w.v6, limit)
			}
			if got := w.forAddr(tcpip.AddrFrom4([4]byte{10, 0, 0, 1})); got != tc.v4 {
				t.Errorf("forAddr(IPv4) = %d, want %d", got, tc.v4)
			}
			if got := w.forAddr(tcpip.AddrFrom16(netip.MustParseAddr("fd00::1").As16())); got != tc.v6 {
				t.Errorf("forAddr(IPv6) = %d, want %d", got, tc.v6)
			}
			if got := w.forPeer(netip.MustParseAddr("::ffff:10.0.0.1").Unmap().Is6()); got != tc.v4 {
				t.Errorf("v4-mapped peer: %d, want %d", got, tc.v4)
			}
		})
	}
}

// The stack caps the frames of its tcpcrypt connections at the write size
// for the peer's IP version.
func TestSessionPolicyMaxFrame(t *testing.T) {
	ep := channel.New(1, 1500, "")
	ep.SupportedGSOKind = gvstack.HostGSOSupported
	s := &Stack{writes: newWriteSizes(ep)}
	if got := s.sessionPolicy(netip.MustParseAddr("192.0.2.1")).MaxFrame; got != s.writes.v4 || got == 0 {
		t.Errorf("IPv4 MaxFrame = %d, want %d", got, s.writes.v4)
	}
	if got := s.sessionPolicy(netip.MustParseAddr("2001:db8::1")).MaxFrame; got != s.writes.v6 || got == 0 {
		t.Errorf("IPv6 MaxFrame = %d, want %d", got, s.writes.v6)
	}
}
