package stack

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// This file holds the pure byte functions of the ENO shim: parse an IPv4 or
// IPv6 packet carrying TCP, append a TCP option to it, strip its payload,
// and check its checksums. They take and return plain byte slices so they
// can be tested and fuzzed without a stack.

// SegmentReason says why a packet could not be handled as a TCP segment.
type SegmentReason uint8

// Reasons for SegmentError.
const (
	SegShort         SegmentReason = iota + 1 // fewer bytes than the headers claim
	SegVersion                                // neither IPv4 nor IPv6
	SegNotTCP                                 // an IP packet not carrying TCP (or carrying IPv6 extension headers)
	SegFragment                               // an IPv4 fragment
	SegIPHeader                               // bad IPv4 header length
	SegIPLength                               // IP length field disagrees with the packet
	SegTCPHeader                              // bad TCP data offset
	SegNoOptionSpace                          // the option does not fit in 40 bytes of TCP options
	SegExceedsMTU                             // the grown packet would exceed the MTU
	SegBadOption                              // the option to append is malformed
)

var segReasonNames = [...]string{
	SegShort:         "short",
	SegVersion:       "ip-version",
	SegNotTCP:        "not-tcp",
	SegFragment:      "fragment",
	SegIPHeader:      "ip-header",
	SegIPLength:      "ip-length",
	SegTCPHeader:     "tcp-header",
	SegNoOptionSpace: "no-option-space",
	SegExceedsMTU:    "exceeds-mtu",
	SegBadOption:     "bad-option",
}

func (r SegmentReason) String() string {
	if int(r) < len(segReasonNames) && segReasonNames[r] != "" {
		return segReasonNames[r]
	}
	return fmt.Sprintf("segment-reason-%d", uint8(r))
}

// SegmentError reports why a packet could not be parsed or rewritten.
type SegmentError struct {
	Reason SegmentReason
	Detail string
}

func (e *SegmentError) Error() string {
	if e.Detail == "" {
		return "stack: segment: " + e.Reason.String()
	}
	return "stack: segment: " + e.Reason.String() + ": " + e.Detail
}

func segErr(r SegmentReason, format string, args ...any) error {
	return &SegmentError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// segmentReason extracts the reason of a *SegmentError (0 if err is not one).
func segmentReason(err error) SegmentReason {
	var se *SegmentError
	if errors.As(err, &se) {
		return se.Reason
	}
	return 0
}

// segment describes one IP packet carrying a TCP segment. Offsets are from
// the start of the IP header.
type segment struct {
	v6         bool
	ipHdrLen   int // IP header bytes (IPv4 options included)
	tcpHdrLen  int // TCP header bytes (options included)
	ipLen      int // packet length according to the IP header
	payloadLen int // TCP payload bytes
	src, dst   tcpip.Address
	srcPort    uint16
	dstPort    uint16
	seq, ack   uint32
	flags      header.TCPFlags
}

func (s *segment) syn() bool  { return s.flags&header.TCPFlagSyn != 0 }
func (s *segment) ackf() bool { return s.flags&header.TCPFlagAck != 0 }
func (s *segment) rst() bool  { return s.flags&header.TCPFlagRst != 0 }
func (s *segment) fin() bool  { return s.flags&header.TCPFlagFin != 0 }

// options returns the TCP options area of the parsed packet b.
func (s *segment) options(b []byte) []byte {
	return b[s.ipHdrLen+header.TCPMinimumSize : s.ipHdrLen+s.tcpHdrLen]
}

// parseSegment parses the IPv4 or IPv6 and TCP headers at the start of b.
// size is the length of the whole packet (b may hold only a prefix that
// covers the headers). IPv6 packets with extension headers and IPv4
// fragments are reported as SegNotTCP / SegFragment: the shim passes them
// through untouched (gVisor never emits them for TCP; see the notes).
func parseSegment(b []byte, size int) (segment, error) {
	var s segment
	if len(b) < 1 {
		return s, segErr(SegShort, "empty packet")
	}
	if size < len(b) {
		size = len(b)
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return s, segErr(SegShort, "ipv4 header needs %d bytes, have %d", header.IPv4MinimumSize, len(b))
		}
		ip := header.IPv4(b)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize {
			return s, segErr(SegIPHeader, "ipv4 header length %d", hl)
		}
		if ip.Protocol() != uint8(header.TCPProtocolNumber) {
			return s, segErr(SegNotTCP, "ipv4 protocol %d", ip.Protocol())
		}
		tl := int(ip.TotalLength())
		if tl < hl || tl > size {
			return s, segErr(SegIPLength, "ipv4 total length %d, header %d, packet %d", tl, hl, size)
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return s, segErr(SegFragment, "ipv4 fragment")
		}
		if len(b) < hl {
			return s, segErr(SegShort, "ipv4 header length %d, have %d", hl, len(b))
		}
		s.ipHdrLen, s.ipLen = hl, tl
		s.src = tcpip.AddrFrom4Slice(ip.SourceAddressSlice())
		s.dst = tcpip.AddrFrom4Slice(ip.DestinationAddressSlice())
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return s, segErr(SegShort, "ipv6 header needs %d bytes, have %d", header.IPv6MinimumSize, len(b))
		}
		ip := header.IPv6(b)
		if ip.NextHeader() != uint8(header.TCPProtocolNumber) {
			return s, segErr(SegNotTCP, "ipv6 next header %d", ip.NextHeader())
		}
		tl := header.IPv6MinimumSize + int(ip.PayloadLength())
		if tl > size {
			return s, segErr(SegIPLength, "ipv6 payload length %d, packet %d", ip.PayloadLength(), size)
		}
		s.v6 = true
		s.ipHdrLen, s.ipLen = header.IPv6MinimumSize, tl
		s.src = tcpip.AddrFrom16Slice(ip.SourceAddressSlice())
		s.dst = tcpip.AddrFrom16Slice(ip.DestinationAddressSlice())
	default:
		return s, segErr(SegVersion, "ip version %d", b[0]>>4)
	}
	if s.ipLen-s.ipHdrLen < header.TCPMinimumSize {
		return s, segErr(SegTCPHeader, "tcp segment of %d bytes", s.ipLen-s.ipHdrLen)
	}
	if len(b) < s.ipHdrLen+header.TCPMinimumSize {
		return s, segErr(SegShort, "tcp header not in the first %d bytes", len(b))
	}
	t := header.TCP(b[s.ipHdrLen:])
	s.tcpHdrLen = int(t.DataOffset())
	if s.tcpHdrLen < header.TCPMinimumSize || s.ipHdrLen+s.tcpHdrLen > s.ipLen {
		return s, segErr(SegTCPHeader, "tcp data offset %d in a segment of %d bytes", s.tcpHdrLen, s.ipLen-s.ipHdrLen)
	}
	if len(b) < s.ipHdrLen+s.tcpHdrLen {
		return s, segErr(SegShort, "tcp options not in the first %d bytes", len(b))
	}
	s.payloadLen = s.ipLen - s.ipHdrLen - s.tcpHdrLen
	s.srcPort, s.dstPort = t.SourcePort(), t.DestinationPort()
	s.seq, s.ack = t.SequenceNumber(), t.AckNumber()
	s.flags = t.Flags()
	return s, nil
}

// optionsUsed returns how many leading bytes of a TCP options area hold
// options: everything up to the end of the last option that is not a NOP,
// stopping at an end-of-list. Trailing NOPs and EOL padding can be reused.
// A malformed area is reported as fully used so nothing is overwritten.
func optionsUsed(o []byte) int {
	used := 0
	for i := 0; i < len(o); {
		switch o[i] {
		case header.TCPOptionEOL:
			return used
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			return len(o)
		}
		i += int(o[i+1])
		used = i
	}
	return used
}

// appendOption returns a copy of the packet pkt (parsed as s) with the TCP
// option opt (kind, length, contents) added after the existing options,
// NOP-padded in front so the options area stays a multiple of 4 bytes. It
// fixes the TCP data offset, the IPv4 total length and header checksum or
// the IPv6 payload length, and recomputes the full TCP checksum (so it is
// correct even if pkt carried only a partial, GSO-style checksum). mtu > 0
// bounds the size of the result.
func appendOption(pkt []byte, s *segment, opt []byte, mtu int) ([]byte, error) {
	out, s2, err := growOptions(pkt, s, opt, mtu)
	if err != nil {
		return nil, err
	}
	fixLengths(out, &s2)
	*s = s2
	return out, nil
}

// appendOptionPartial is appendOption for a GSO super-packet that the host
// will cut into segments: it leaves in the TCP checksum field the partial
// sum the host expects with a partial checksum (the pseudo-header over the
// grown TCP length, as gVisor writes it), not the full checksum, and does
// not bound the size by the MTU (the caller lowers the GSO segment size).
func appendOptionPartial(pkt []byte, s *segment, opt []byte) ([]byte, error) {
	out, s2, err := growOptions(pkt, s, opt, 0)
	if err != nil {
		return nil, err
	}
	fixLengthsPartial(out, &s2)
	*s = s2
	return out, nil
}

// growOptions lays out appendOption's result with its IP length and TCP
// data offset fields still those of pkt; it returns the result's segment.
func growOptions(pkt []byte, s *segment, opt []byte, mtu int) ([]byte, segment, error) {
	if len(opt) < 2 || int(opt[1]) != len(opt) {
		return nil, *s, segErr(SegBadOption, "option of %d bytes with length byte", len(opt))
	}
	if len(pkt) < s.ipLen {
		return nil, *s, segErr(SegShort, "packet of %d bytes, ip length %d", len(pkt), s.ipLen)
	}
	tcpOff := s.ipHdrLen
	oldOpts := s.options(pkt)
	used := optionsUsed(oldOpts)
	pad := -(used + len(opt)) & 3
	newOptLen := used + pad + len(opt)
	if newOptLen > header.TCPOptionsMaximumSize {
		return nil, *s, segErr(SegNoOptionSpace, "%d option bytes used, %d needed", used, pad+len(opt))
	}
	newLen := s.ipLen - len(oldOpts) + newOptLen
	if mtu > 0 && newLen > mtu {
		return nil, *s, segErr(SegExceedsMTU, "%d bytes, mtu %d", newLen, mtu)
	}
	if s.v6 && newLen-header.IPv6MinimumSize > 0xffff || !s.v6 && newLen > 0xffff {
		return nil, *s, segErr(SegExceedsMTU, "%d bytes exceed the ip length field", newLen)
	}
	out := make([]byte, 0, newLen)
	out = append(out, pkt[:tcpOff+header.TCPMinimumSize]...)
	out = append(out, oldOpts[:used]...)
	for range pad {
		out = append(out, header.TCPOptionNOP)
	}
	out = append(out, opt...)
	out = append(out, pkt[tcpOff+s.tcpHdrLen:s.ipLen]...)
	s2 := *s
	s2.tcpHdrLen = header.TCPMinimumSize + newOptLen
	s2.ipLen = newLen
	return out, s2, nil
}

// splitSegment cuts the packet pkt (parsed as s, full checksum) into
// packets of at most mtu bytes, each with a copy of its IP and TCP headers
// (options included) and its share of the payload: sequence numbers
// advance, FIN and PSH stay on the last piece only, checksums are fixed.
// TCP allows a sender to resegment its byte stream as it likes, so the
// receiver sees the same stream. It returns nil when the headers leave no
// room for payload within mtu, or pkt has no payload to cut.
func splitSegment(pkt []byte, s *segment, mtu int) [][]byte {
	hl := s.ipHdrLen + s.tcpHdrLen
	room := mtu - hl
	if room <= 0 || s.payloadLen == 0 || len(pkt) < s.ipLen {
		return nil
	}
	payload := pkt[hl:s.ipLen]
	var out [][]byte
	for off := 0; off < len(payload); off += room {
		n := min(room, len(payload)-off)
		b := make([]byte, hl+n)
		copy(b, pkt[:hl])
		copy(b[hl:], payload[off:off+n])
		if !s.v6 && len(out) > 0 {
			// A datagram of its own, with an ID of its own: two
			// fragmented datagrams sharing one ID could be
			// reassembled into each other (RFC 6864 §4).
			ip := header.IPv4(b)
			ip.SetID(ip.ID() + uint16(len(out)))
		}
		t := header.TCP(b[s.ipHdrLen:])
		t.SetSequenceNumber(s.seq + uint32(off))
		if off+n < len(payload) {
			t.SetFlags(uint8(s.flags &^ (header.TCPFlagFin | header.TCPFlagPsh)))
		}
		p := *s
		p.ipLen, p.payloadLen, p.seq = hl+n, n, s.seq+uint32(off)
		fixLengths(b, &p)
		out = append(out, b)
	}
	return out
}

// stripPayload returns a copy of pkt (parsed as s) without its TCP payload,
// lengths and checksums fixed (RFC 8547 §4.7: discarded SYN data).
func stripPayload(pkt []byte, s *segment) []byte {
	n := s.ipHdrLen + s.tcpHdrLen
	out := append([]byte(nil), pkt[:n]...)
	s2 := *s
	s2.ipLen, s2.payloadLen = n, 0
	fixLengths(out, &s2)
	*s = s2
	return out
}

// clampMSS lowers the MSS option of the packet b (parsed as s) to
// min(MSS, ceiling) - by and fixes the checksums; ceiling <= 0 means none.
// It reports false, changing nothing, when there is no MSS option or the
// result would fall below the IPv4 minimum, 536, kept as a floor.
func clampMSS(b []byte, s *segment, ceiling int, by uint16) bool {
	opts, i, ok := tcpOption(b, s, header.TCPOptionMSS, header.TCPOptionMSSLength)
	if !ok {
		return false
	}
	mss := int(binary.BigEndian.Uint16(opts[i+2:]))
	if ceiling > 0 {
		mss = min(mss, ceiling)
	}
	if mss < 536+int(by) {
		return false
	}
	binary.BigEndian.PutUint16(opts[i+2:], uint16(mss-int(by)))
	fixLengths(b, s)
	return true
}

// dropSACKPermitted overwrites the SACK-permitted option of the SYN in b
// with NOPs (same length, checksums fixed) and reports whether it found one.
func dropSACKPermitted(b []byte, s *segment) bool {
	opts, i, ok := tcpOption(b, s, header.TCPOptionSACKPermitted, header.TCPOptionSackPermittedLength)
	if !ok {
		return false
	}
	opts[i], opts[i+1] = header.TCPOptionNOP, header.TCPOptionNOP
	fixLengths(b, s)
	return true
}

// tcpOption finds the option of this kind and length in the TCP header of
// the packet b described by s: the header's options area and the option's
// offset in it. A malformed options area has no options.
func tcpOption(b []byte, s *segment, kind, length byte) (opts []byte, at int, ok bool) {
	if len(b) < s.ipLen {
		return nil, 0, false
	}
	opts = b[s.ipHdrLen+header.TCPMinimumSize : s.ipHdrLen+s.tcpHdrLen]
	for i := 0; i < len(opts); {
		switch k := opts[i]; {
		case k == header.TCPOptionEOL:
			return nil, 0, false
		case k == header.TCPOptionNOP:
			i++
			continue
		case i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts):
			return nil, 0, false
		case k == kind && opts[i+1] == length:
			return opts, i, true
		}
		i += int(opts[i+1])
	}
	return nil, 0, false
}

// fixLengths writes the IP length fields, the TCP data offset and both
// checksums of the packet b described by s.
func fixLengths(b []byte, s *segment) {
	writeLengths(b, s)
	t := header.TCP(b[s.ipHdrLen:])
	t.SetChecksum(0)
	t.SetChecksum(^tcpChecksum(b[s.ipHdrLen:s.ipLen], s))
}

// writeLengths writes the IP length fields, the TCP data offset and the
// IPv4 header checksum of the packet b described by s.
func writeLengths(b []byte, s *segment) {
	t := header.TCP(b[s.ipHdrLen:])
	// Keep the low nibble (reserved bits and the AE/NS flag) of byte 12.
	t[header.TCPDataOffset] = byte(s.tcpHdrLen/4)<<4 | t[header.TCPDataOffset]&0x0f
	if s.v6 {
		binary.BigEndian.PutUint16(b[4:6], uint16(s.ipLen-header.IPv6MinimumSize))
	} else {
		ip := header.IPv4(b)
		ip.SetTotalLength(uint16(s.ipLen))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
}

// fixLengthsPartial is fixLengths for a packet handed over with a partial
// checksum (GSO): the TCP checksum field gets the pseudo-header sum over the
// TCP length, uncomplemented, which the host completes per segment.
func fixLengthsPartial(b []byte, s *segment) {
	writeLengths(b, s)
	l := s.ipLen - s.ipHdrLen
	header.TCP(b[s.ipHdrLen:]).SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, s.src, s.dst, uint16(l)))
}

func tcpChecksum(seg []byte, s *segment) uint16 {
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, s.src, s.dst, uint16(len(seg)))
	return checksum.Checksum(seg, x)
}

// checksumsValid reports whether the IPv4 header checksum (if any) and the
// TCP checksum of the whole packet pkt are correct.
func checksumsValid(pkt []byte, s *segment) bool {
	if len(pkt) < s.ipLen {
		return false
	}
	if !s.v6 && !header.IPv4(pkt).IsChecksumValid() {
		return false
	}
	return tcpChecksum(pkt[s.ipHdrLen:s.ipLen], s) == 0xffff
}

// buildRST returns the IP packet of a RST answering the SYN-only segment s
// (addresses and ports swapped, SEQ=0, ACK=SEG.SEQ+SEG.LEN, RST|ACK).
func buildRST(s *segment) []byte {
	ipHdr := header.IPv4MinimumSize
	if s.v6 {
		ipHdr = header.IPv6MinimumSize
	}
	b := make([]byte, ipHdr+header.TCPMinimumSize)
	if s.v6 {
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     header.TCPMinimumSize,
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           s.dst,
			DstAddr:           s.src,
		})
	} else {
		header.IPv4(b).Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         64,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     s.dst,
			DstAddr:     s.src,
		})
	}
	segLen := uint32(s.payloadLen)
	if s.syn() {
		segLen++
	}
	if s.fin() {
		segLen++
	}
	header.TCP(b[ipHdr:]).Encode(&header.TCPFields{
		SrcPort:    s.dstPort,
		DstPort:    s.srcPort,
		SeqNum:     0,
		AckNum:     s.seq + segLen,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlagRst | header.TCPFlagAck,
	})
	r := segment{v6: s.v6, ipHdrLen: ipHdr, tcpHdrLen: header.TCPMinimumSize, ipLen: len(b), src: s.dst, dst: s.src}
	fixLengths(b, &r)
	return b
}
