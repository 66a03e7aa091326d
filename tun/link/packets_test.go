package link

import (
	"encoding/binary"
	"net/netip"
)

// Test packet builders, independent of the code under test: headers are written
// byte by byte and checksums come from refChecksum, a literal RFC 1071 sum.

type csumMode int

const (
	csumFull    csumMode = iota // a correct transport checksum
	csumPartial                 // pseudo-header sum only, as CHECKSUM_PARTIAL (gVisor host GSO, Linux)
	csumBad                     // a wrong checksum
	csumZero                    // checksum field 0 (UDP "none")
)

var (
	testSrc4 = netip.MustParseAddr("10.1.2.3")
	testDst4 = netip.MustParseAddr("10.9.8.7")
	testSrc6 = netip.MustParseAddr("fd00:1::3")
	testDst6 = netip.MustParseAddr("fd00:9::7")
)

// pktSpec describes a test packet.
type pktSpec struct {
	v6       bool
	proto    uint8 // ipProtoTCP, ipProtoUDP, 1 (ICMP) or ipProtoICMPv6
	payload  int
	tcpOpts  int // bytes of TCP options, a multiple of 4
	ipOpts   int // bytes of IPv4 options, a multiple of 4
	destOpts bool
	frag     bool
	csum     csumMode
	seq      uint32
	flags    uint8 // TCP flags; default ACK
}

// refChecksum is the RFC 1071 Internet checksum sum (not complemented), folded.
func refChecksum(initial uint32, bs ...[]byte) uint16 {
	sum := initial
	for _, b := range bs {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func refPseudo(v6 bool, src, dst netip.Addr, proto uint8, l4Len int) uint16 {
	var b []byte
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = append(b, 0, proto, byte(l4Len>>8), byte(l4Len))
	return refChecksum(0, b)
}

// build returns the packet and the offset of its transport header.
func (s pktSpec) build() ([]byte, int) {
	src, dst := testSrc4, testDst4
	if s.v6 {
		src, dst = testSrc6, testDst6
	}
	var l4 []byte
	csumAt := -1
	switch s.proto {
	case ipProtoTCP:
		hl := tcpMinHdrLen + s.tcpOpts
		l4 = make([]byte, hl+s.payload)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 443)
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], 777)
		l4[12] = byte(hl/4) << 4
		l4[13] = s.flags
		if s.flags == 0 {
			l4[13] = 0x10
		}
		binary.BigEndian.PutUint16(l4[14:], 65535)
		for i := tcpMinHdrLen; i < hl; i++ {
			l4[i] = 1 // NOP options
		}
		csumAt = tcpCsumOffset
	case ipProtoUDP:
		l4 = make([]byte, udpHdrLen+s.payload)
		binary.BigEndian.PutUint16(l4[0:], 5353)
		binary.BigEndian.PutUint16(l4[2:], 53)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		csumAt = udpCsumOffset
	default: // ICMP echo request
		l4 = make([]byte, 8+s.payload)
		l4[0] = 8
		if s.proto == ipProtoICMPv6 {
			l4[0] = 128
		}
		binary.BigEndian.PutUint16(l4[4:], 1)
		csumAt = 2
	}
	for i := len(l4) - s.payload; i < len(l4); i++ {
		l4[i] = byte(i*7 + 3)
	}
	var seed uint16
	if s.proto != 1 { // ICMPv4 has no pseudo-header
		seed = refPseudo(s.v6, src, dst, s.proto, len(l4))
	}
	switch s.csum {
	case csumFull, csumBad:
		sum := ^refChecksum(uint32(seed), l4)
		if sum == 0 && s.proto == ipProtoUDP {
			sum = 0xffff
		}
		if s.csum == csumBad {
			sum ^= 0x0101
		}
		binary.BigEndian.PutUint16(l4[csumAt:], sum)
	case csumPartial:
		binary.BigEndian.PutUint16(l4[csumAt:], seed)
	case csumZero:
	}

	if !s.v6 {
		ihl := ipv4MinHdrLen + s.ipOpts
		ip := make([]byte, ihl, ihl+len(l4))
		ip[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		if s.frag {
			binary.BigEndian.PutUint16(ip[6:], 0x2000) // MF, offset 0
		} else {
			binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		}
		ip[8] = 64
		ip[9] = s.proto
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		for i := ipv4MinHdrLen; i < ihl; i++ {
			ip[i] = 1 // NOP options
		}
		binary.BigEndian.PutUint16(ip[10:], ^refChecksum(0, ip))
		return append(ip, l4...), ihl
	}

	ip := make([]byte, ipv6HdrLen, ipv6HdrLen+16+len(l4))
	ip[0] = 0x60
	ip[6] = s.proto
	ip[7] = 64
	copy(ip[8:], src.AsSlice())
	copy(ip[24:], dst.AsSlice())
	if s.destOpts {
		ip[6] = ipv6DestOpts
		ext := make([]byte, 8)
		ext[0], ext[1] = s.proto, 0
		ext[2], ext[3] = 1, 4 // PadN, 4 bytes of padding
		ip = append(ip, ext...)
	}
	if s.frag {
		next := ip[6]
		ip[6] = ipv6Fragment
		ext := make([]byte, 8)
		ext[0] = next
		binary.BigEndian.PutUint16(ext[2:], 1) // offset 0, M=1
		ip = append(ip, ext...)
	}
	l4Off := len(ip)
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-ipv6HdrLen+len(l4)))
	return append(ip, l4...), l4Off
}

// vhdr builds an encoded virtio header.
func vhdr(h virtioHdr) []byte {
	b := make([]byte, virtioNetHdrLen)
	h.encode(b)
	return b
}

// partialHdr is the virtio header Linux sends with a CHECKSUM_PARTIAL packet.
func partialHdr(l4Off int, proto uint8) virtioHdr {
	off := uint16(tcpCsumOffset)
	switch proto {
	case ipProtoUDP:
		off = udpCsumOffset
	case 1, ipProtoICMPv6:
		off = 2
	}
	return virtioHdr{flags: virtioFlagNeedsCsum, csumStart: uint16(l4Off), csumOffset: off}
}

// tsoHdr is the virtio header Linux sends with a TSO super-packet.
func tsoHdr(v6 bool, l4Off int, mss uint16) virtioHdr {
	h := partialHdr(l4Off, ipProtoTCP)
	h.gsoType, h.gsoSize, h.hdrLen = virtioGSOTCPv4, mss, uint16(l4Off+tcpMinHdrLen)
	if v6 {
		h.gsoType = virtioGSOTCPv6
	}
	return h
}

// transportChecksumOK verifies pkt's transport checksum with the reference sum.
func transportChecksumOK(pkt []byte, v6 bool, proto uint8, l4Off int) bool {
	src, dst := testSrc4, testDst4
	end := int(binary.BigEndian.Uint16(pkt[2:]))
	if v6 {
		src, dst = testSrc6, testDst6
		end = ipv6HdrLen + int(binary.BigEndian.Uint16(pkt[4:]))
	}
	var seed uint16
	if proto != 1 {
		seed = refPseudo(v6, src, dst, proto, end-l4Off)
	}
	return refChecksum(uint32(seed), pkt[l4Off:end]) == 0xffff
}
