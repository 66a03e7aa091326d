package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// txVerdict is the outcome of preparing an outbound packet.
type txVerdict uint8

const (
	txOK          txVerdict = iota
	txDropNoCsum            // GSO requested without a partial checksum: the kernel cannot segment it
	txDropBadGSO            // GSO type or MSS unusable (not TCP, MSS 0, software GSO)
	txDropHeaders           // headers too long to describe in 16-bit virtio fields
	numTxVerdicts
)

var txVerdictNames = [numTxVerdicts]string{
	txOK:          "ok",
	txDropNoCsum:  "GSO without partial checksum",
	txDropBadGSO:  "unusable GSO options",
	txDropHeaders: "header lengths out of range",
}

// String implements fmt.Stringer.
func (v txVerdict) String() string {
	if v < numTxVerdicts {
		return txVerdictNames[v]
	}
	return "unknown verdict"
}

// txPacket describes an outbound packet to txHeader: gVisor's GSO options plus the
// lengths of what the stack pushed.
type txPacket struct {
	gso        stack.GSO
	l3Len      int // network header, including IPv4 options / IPv6 extension headers
	l4Len      int // transport header
	l4Proto    tcpip.TransportProtocolNumber
	payloadLen int // bytes after the transport header
}

// txHeader computes the virtio_net_hdr that tells the kernel how to finish pkt.
//
// With HostGSOSupported, gVisor's TCP leaves only the pseudo-header sum in the
// checksum field and sets GSOOptions.NeedsCsum (transport/tcp/connect.go
// buildTCPHdr) — the kernel's CHECKSUM_PARTIAL. We describe it with NEEDS_CSUM,
// csum_start at the transport header (a TUN has no link header, unlike fdbased's
// Ethernet offset), and csum_offset at the checksum field. When the payload exceeds
// the MSS it is a GSO super-packet and gso_type/gso_size ask the kernel to segment
// it (it fixes lengths, IDs and checksums per segment: net/ipv4/tcp_offload.c).
func txHeader(p txPacket) (virtioHdr, txVerdict) {
	var h virtioHdr
	if p.l3Len < 0 || p.l4Len < 0 || p.l3Len+p.l4Len > 0xffff {
		return h, txDropHeaders
	}
	if p.gso.NeedsCsum {
		h.flags = virtioFlagNeedsCsum
		h.csumStart = uint16(p.l3Len)
		switch p.l4Proto {
		case header.TCPProtocolNumber:
			h.csumOffset = tcpCsumOffset
		case header.UDPProtocolNumber:
			h.csumOffset = udpCsumOffset
		default:
			return virtioHdr{}, txDropBadGSO
		}
		h.hdrLen = uint16(p.l3Len + p.l4Len)
	}
	if p.gso.Type == stack.GSONone || p.payloadLen <= int(p.gso.MSS) {
		return h, txOK
	}
	// A super-packet.
	if !p.gso.NeedsCsum {
		return virtioHdr{}, txDropNoCsum
	}
	if p.gso.MSS == 0 || p.l4Proto != header.TCPProtocolNumber {
		return virtioHdr{}, txDropBadGSO
	}
	switch p.gso.Type {
	case stack.GSOTCPv4:
		h.gsoType = virtioGSOTCPv4
	case stack.GSOTCPv6:
		h.gsoType = virtioGSOTCPv6
	default: // GSOGvisor: we never advertise it, so the stack never asks for it.
		return virtioHdr{}, txDropBadGSO
	}
	h.gsoSize = p.gso.MSS
	return h, txOK
}
