package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Segment-sized writes.
//
// Over a link that takes GSO super-packets (our TUN device), gVisor's TCP
// sends what one write queued as one super-packet of at most
// GSOMaxSize - header.TCPTotalHeaderMaximumSize - 1 payload bytes: 65,374
// over the TUN device. A longer write leaves as two packets, the second a
// short tail, each a TUN write and a trip through the kernel, with an ACK
// of its own. A tcpcrypt frame of the protocol's maximum length (65,538
// bytes) and a 64 KiB relay copy were both over the limit, so every bulk
// write cost two packets.
//
// writeSizes holds, per IP version, the largest write that fits: the
// super-packet's payload rounded down to whole segments at the link's MTU,
// so the kernel cuts no short segment at the end either. Segments are
// assumed to carry the timestamp option (gVisor and Linux both use it);
// if a connection's segments turn out smaller, a frame still fits one
// super-packet and only the last segment is short.
type writeSizes struct {
	v4, v6 int // 0: no cap (no GSO: every segment is MSS-sized anyway)
}

// tcpTimestampSpace is the room the timestamp option takes in every
// segment (10 bytes, padded to 12).
const tcpTimestampSpace = 12

func newWriteSizes(link gvstack.LinkEndpoint) writeSizes {
	g, ok := link.(gvstack.GSOEndpoint)
	if !ok || g.SupportedGSO() == gvstack.GSONotSupported || g.GSOMaxSize() <= header.TCPTotalHeaderMaximumSize+1 {
		return writeSizes{}
	}
	limit := int(g.GSOMaxSize()) - header.TCPTotalHeaderMaximumSize - 1
	fit := func(ipHeader int) int {
		mss := int(link.MTU()) - ipHeader - header.TCPMinimumSize - tcpTimestampSpace
		if mss <= 0 || mss >= limit {
			return limit
		}
		return limit / mss * mss
	}
	return writeSizes{v4: fit(header.IPv4MinimumSize), v6: fit(header.IPv6MinimumSize)}
}

// forAddr is the write size for a connection to address a.
func (w writeSizes) forAddr(a tcpip.Address) int {
	return w.forPeer(a.Len() == header.IPv6AddressSize)
}

// forPeer is the write size for a connection to peer's IP version.
func (w writeSizes) forPeer(v6 bool) int {
	if v6 {
		return w.v6
	}
	return w.v4
}
