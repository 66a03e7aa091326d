package wiretest

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Offload does what a host's TCP segmentation and checksum offload does to
// a packet a stack with host GSO (channel.Endpoint.SupportedGSOKind =
// HostGSOSupported) hands its link: a packet with a partial checksum
// (GSO.NeedsCsum: the TCP checksum field holds only the pseudo-header sum)
// gets its full checksum, and a super-packet (payload above GSO.MSS) is cut
// into segments of GSO.MSS payload bytes, each with a copy of the
// super-packet's headers (TCP options included), its own sequence number,
// IP length and IPv4 ID, FIN and PSH on the last segment only, CWR on the
// first only, as Linux's tcp_gso_segment does. Every other packet is
// returned as it is.
//
// ok is false when the partial checksum is not the pseudo-header sum over
// the super-packet's TCP length: a host would put wrong checksums on the
// wire and the peer would drop every segment, so the caller drops the
// packet (Stats.BadOffload).
func Offload(data []byte, gso gvstack.GSO) (segs [][]byte, ok bool) {
	if !gso.NeedsCsum || gso.Type != gvstack.GSOTCPv4 && gso.Type != gvstack.GSOTCPv6 {
		return [][]byte{data}, true
	}
	s, parsed := ParseTCP(data)
	if !parsed {
		return nil, false
	}
	src := tcpip.AddrFromSlice(s.Src.Addr().AsSlice())
	dst := tcpip.AddrFromSlice(s.Dst.Addr().AsSlice())
	hdrLen := s.ipHdr + s.tcpHdr
	t := header.TCP(data[s.ipHdr:])
	if t.Checksum() != header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(s.tcpHdr+len(s.Payload))) {
		return nil, false
	}
	mss := int(gso.MSS)
	if mss <= 0 || len(s.Payload) <= mss {
		mss = max(len(s.Payload), 1)
	}
	flags := s.Flags
	for off := 0; off == 0 || off < len(s.Payload); off += mss {
		n := min(mss, len(s.Payload)-off)
		b := make([]byte, hdrLen+n)
		copy(b, data[:hdrLen])
		copy(b[hdrLen:], s.Payload[off:off+n])
		f := flags
		if off+n < len(s.Payload) {
			f &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if off > 0 {
			f &^= header.TCPFlagCwr
		}
		if s.V6 {
			binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-header.IPv6MinimumSize))
		} else {
			ip := header.IPv4(b)
			ip.SetTotalLength(uint16(len(b)))
			ip.SetID(ip.ID() + uint16(len(segs)))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		}
		st := header.TCP(b[s.ipHdr:])
		st.SetSequenceNumber(s.Seq + uint32(off))
		st.SetFlags(uint8(f))
		st.SetChecksum(0)
		x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(st)))
		st.SetChecksum(^checksum.Checksum(st, x))
		segs = append(segs, b)
	}
	return segs, true
}
