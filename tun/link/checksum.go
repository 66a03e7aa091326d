package link

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// IP protocol numbers and header facts the packet functions need. They are spelled
// out here (rather than taken from gVisor's header package) so that the pure packet
// code reads like the RFCs it follows.
const (
	ipProtoTCP    = 6
	ipProtoUDP    = 17
	ipProtoICMPv6 = 58

	ipv4MinHdrLen = 20
	ipv6HdrLen    = 40
	tcpMinHdrLen  = 20
	udpHdrLen     = 8

	// Offsets of the checksum field inside the transport header (RFC 9293 §3.1,
	// RFC 768): what virtio's csum_offset holds for CHECKSUM_PARTIAL packets.
	tcpCsumOffset = 16
	udpCsumOffset = 6

	// IPv6 extension headers that may precede the upper-layer header
	// (RFC 8200 §4). Fragment and AH are special-cased in locateL4.
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DestOpts = 60
)

// l3Info is what the packet functions learn from an IP header.
type l3Info struct {
	v6       bool
	hdrLen   int   // fixed IP header incl. IPv4 options; 40 for IPv6 (extension headers excluded)
	totalLen int   // IP-declared packet length; bytes after it are link padding
	l4Off    int   // offset of the upper-layer header, -1 if not found (fragment, AH, unknown ext hdr)
	l4Proto  uint8 // upper-layer protocol at l4Off
	fragment bool  // any IPv4/IPv6 fragment: no per-fragment L4 checksum is possible
}

// parseL3 validates the IP header lengths of pkt and locates the upper-layer header.
// It checks only what the link layer relies on; gVisor validates the rest.
func parseL3(pkt []byte) (l3Info, rxVerdict) {
	if len(pkt) == 0 {
		return l3Info{}, rxDropMalformed
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < ipv4MinHdrLen {
			return l3Info{}, rxDropMalformed
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < ipv4MinHdrLen || total < ihl || total > len(pkt) {
			return l3Info{}, rxDropMalformed
		}
		fragField := binary.BigEndian.Uint16(pkt[6:])
		info := l3Info{hdrLen: ihl, totalLen: total, l4Off: ihl, l4Proto: pkt[9]}
		if fragField&0x2000 != 0 || fragField&0x1fff != 0 { // MF or a fragment offset (RFC 791 §3.1)
			info.fragment = true
			info.l4Off = -1
		}
		return info, rxOK
	case 6:
		if len(pkt) < ipv6HdrLen {
			return l3Info{}, rxDropMalformed
		}
		total := ipv6HdrLen + int(binary.BigEndian.Uint16(pkt[4:]))
		if total > len(pkt) {
			// Includes jumbograms (payload length 0 with a hop-by-hop option,
			// RFC 2675): a TUN with a 64 KiB GSO limit never produces them.
			return l3Info{}, rxDropMalformed
		}
		info := l3Info{v6: true, hdrLen: ipv6HdrLen, totalLen: total}
		info.l4Off, info.l4Proto, info.fragment = locateL4v6(pkt[:total])
		return info, rxOK
	default:
		return l3Info{}, rxDropUnknownProto
	}
}

// locateL4v6 walks the IPv6 extension header chain (RFC 8200 §4) and returns the offset
// and protocol of the upper-layer header, or -1 when it cannot be reached: a fragment
// (the header may be in another packet), AH, or a chain running past the packet.
func locateL4v6(pkt []byte) (off int, proto uint8, fragment bool) {
	next := pkt[6]
	off = ipv6HdrLen
	for range 16 { // a bound on the chain length; real chains have a handful
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if off+8 > len(pkt) {
				return -1, next, false
			}
			next, off = pkt[off], off+(int(pkt[off+1])+1)*8
		case ipv6Fragment:
			return -1, next, true
		case ipv6AH:
			return -1, next, false
		default:
			if off > len(pkt) {
				return -1, next, false
			}
			return off, next, false
		}
	}
	return -1, next, false
}

// pseudoHeaderSum is the folded one's-complement sum of the TCP/UDP pseudo-header
// (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6) over l4Len bytes of proto.
func pseudoHeaderSum(pkt []byte, info l3Info, proto uint8, l4Len int) uint16 {
	var xsum uint16
	if info.v6 {
		xsum = checksum.Checksum(pkt[8:40], 0) // source and destination address
	} else {
		xsum = checksum.Checksum(pkt[12:20], 0)
	}
	var tail [4]byte
	binary.BigEndian.PutUint16(tail[0:], uint16(proto))
	binary.BigEndian.PutUint16(tail[2:], uint16(l4Len))
	return checksum.Checksum(tail[:], xsum)
}

// ipv4HeaderChecksumValid reports whether the IPv4 header checksum (RFC 791 §3.1) holds.
func ipv4HeaderChecksumValid(pkt []byte, ihl int) bool {
	return checksum.Checksum(pkt[:ihl], 0) == 0xffff
}

// l4ChecksumValid verifies the TCP or UDP checksum of pkt's upper-layer header at
// info.l4Off. An IPv4 UDP checksum of zero means "none" (RFC 768); in IPv6 it is
// invalid (RFC 8200 §8.1) and fails here.
func l4ChecksumValid(pkt []byte, info l3Info) bool {
	seg := pkt[info.l4Off:info.totalLen]
	if info.l4Proto == ipProtoUDP && !info.v6 && len(seg) >= udpHdrLen && seg[6] == 0 && seg[7] == 0 {
		return true
	}
	xsum := pseudoHeaderSum(pkt, info, info.l4Proto, len(seg))
	return checksum.Checksum(seg, xsum) == 0xffff
}

// completeChecksum finishes a CHECKSUM_PARTIAL packet the way the kernel's
// skb_checksum_help does: the field at start+off holds the (folded, uncomplemented)
// pseudo-header sum; the result is the complement of the sum from start to end with
// that seed. It returns false, touching nothing, if the offsets do not fit.
//
// A result of 0 is stored as 0xffff, its one's-complement twin: UDP reads 0 as "no
// checksum" (RFC 768) and every other protocol validates either form.
func completeChecksum(pkt []byte, start, off, end int) bool {
	at := start + off
	if start < 0 || off < 0 || end > len(pkt) || at+2 > end {
		return false
	}
	seed := binary.BigEndian.Uint16(pkt[at:])
	pkt[at], pkt[at+1] = 0, 0
	sum := ^checksum.Checksum(pkt[start:end], seed)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[at:], sum)
	return true
}
