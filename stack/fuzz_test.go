package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzShimDeliver feeds arbitrary packets from the network through the
// shim into a stack with a listener (the shim parses untrusted input before
// the stack validates it): nothing may panic, and the flow table stays
// within its bound.
func FuzzShimDeliver(f *testing.F) {
	withENO := append(append([]byte{}, synOpts...), 1, 69, 3, 0x23) // NOP-padded ENO

	for _, seed := range [][]byte{
		buildPacket(false, header.TCPFlagSyn, withENO, nil),
		buildPacket(false, header.TCPFlagSyn, withENO, []byte("syn data")),
		buildPacket(true, header.TCPFlagSyn, synOpts, nil),
		buildPacket(false, header.TCPFlagAck, ackOpts, []byte("data")),
		buildPacket(false, header.TCPFlagAck|header.TCPFlagRst, nil, nil),
		buildPacket(true, header.TCPFlagSyn|header.TCPFlagAck, withENO, nil),
		{0x45, 0, 0, 20},
	} {
		f.Add(seed)
	}
	ep := channel.New(256, testMTU, "")
	s, err := New(Options{
		Link:      ep,
		Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("fd00::2/64")},
		MaxFlows:  64,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	// buildPacket sends from port 1234 to port 80 of 10.0.0.2 / fd00::2.
	l, err := s.Listen(netip.Addr{}, 80, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		proto := header.IPv4ProtocolNumber
		if len(b) > 0 && b[0]>>4 == 6 {
			proto = header.IPv6ProtocolNumber
		}
		pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		ep.InjectInbound(proto, pkt)
		pkt.DecRef()
		ep.Drain()
		if n := s.Flows(); n > 64 {
			t.Fatalf("%d flows, bound 64", n)
		}
	})
}
