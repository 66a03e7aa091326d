package impair

import (
	"encoding/binary"
	"errors"
	"net"
)

// sum16 adds b to the one's-complement running sum s (RFC 1071), folding
// lazily; callers fold with fold.
func sum16(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// ipv4HeaderChecksum computes the header checksum with the field taken as zero.
func ipv4HeaderChecksum(h []byte) uint16 {
	s := sum16(0, h[:10])
	s = sum16(s, h[12:])
	return ^fold(s)
}

// tcpChecksum computes the TCP checksum of p's segment with the checksum field
// taken as zero (RFC 9293 §3.1; RFC 8200 §8.1 for the IPv6 pseudo-header).
func (p *Packet) tcpChecksum() uint16 {
	seg := p.Frame[p.L4:p.End]
	var s uint32
	s = sum16(s, p.Src.AsSlice())
	s = sum16(s, p.Dst.AsSlice())
	s += ProtoTCP
	s += uint32(len(seg)) // < 65536 for IPv4; IPv6 jumbograms are not parsed
	s = sum16(s, seg[:16])
	s = sum16(s, seg[18:])
	return ^fold(s)
}

// TCPChecksumValid reports whether the segment's checksum is correct.
func (p *Packet) TCPChecksumValid() bool {
	if !p.IsTCP() {
		return false
	}
	return binary.BigEndian.Uint16(p.Frame[p.L4+16:]) == p.tcpChecksum()
}

// IPv4ChecksumValid reports whether an IPv4 header checksum is correct (true
// for IPv6, which has none).
func (p *Packet) IPv4ChecksumValid() bool {
	if p.Version != 4 {
		return p.Version == 6
	}
	h := p.Frame[p.L3 : p.L3+int(p.Frame[p.L3]&0x0f)*4]
	return binary.BigEndian.Uint16(h[10:12]) == ipv4HeaderChecksum(h)
}

// FixTCPChecksum recomputes the TCP checksum.
func (p *Packet) FixTCPChecksum() {
	if p.IsTCP() {
		binary.BigEndian.PutUint16(p.Frame[p.L4+16:], p.tcpChecksum())
	}
}

// errNotTCP is returned by rewrites that need a TCP segment.
var errNotTCP = errors.New("impair: not a TCP segment")

// StripOption replaces every option of the kind with NOPs and fixes the
// checksum; it returns how many it replaced.
//
// Decision: NOP-out rather than cut out. The header keeps its length, so
// sequence space, MSS and the IP length are untouched, and it is what option-
// stripping middleboxes are reported to do (RFC 8547 §9 discusses middleboxes
// that strip unknown options; either form must make ENO fall back).
func (p *Packet) StripOption(kind uint8) (int, error) {
	if !p.IsTCP() {
		return 0, errNotTCP
	}
	if kind == OptEOL || kind == OptNOP {
		return 0, errors.New("impair: cannot strip EOL or NOP")
	}
	opts, err := p.Options()
	n := 0
	for _, o := range opts {
		if o.Kind != kind {
			continue
		}
		for i := o.Off; i < o.Off+o.Len; i++ {
			p.Frame[i] = OptNOP
		}
		n++
	}
	if n > 0 {
		p.FixTCPChecksum()
	}
	return n, err
}

// CorruptPayload XORs the payload byte at index i with mask (which must not be
// zero) and fixes the TCP checksum, so only an integrity check above TCP (the
// tcpcrypt AEAD) can notice.
func (p *Packet) CorruptPayload(i int, mask byte) error {
	if !p.IsTCP() {
		return errNotTCP
	}
	if mask == 0 {
		return errors.New("impair: corrupt mask is zero")
	}
	if i < 0 || i >= p.PayLen {
		return errors.New("impair: corrupt index outside the payload")
	}
	p.Frame[p.PayOff+i] ^= mask
	p.FixTCPChecksum()
	return nil
}

// DecrementTTL lowers the IPv4 TTL or IPv6 hop limit by one, as a router does
// (RFC 1812 §5.3.1, RFC 8200 §3), fixing the IPv4 header checksum. It returns
// false, leaving the packet alone, when the packet must not be forwarded
// (limit already at 1 or 0).
func (p *Packet) DecrementTTL() bool {
	switch p.Version {
	case 4:
		h := p.Frame[p.L3:]
		if h[8] <= 1 {
			return false
		}
		h[8]--
		ihl := int(h[0]&0x0f) * 4
		binary.BigEndian.PutUint16(h[10:12], ipv4HeaderChecksum(h[:ihl]))
		return true
	case 6:
		h := p.Frame[p.L3:]
		if h[7] <= 1 {
			return false
		}
		h[7]--
		return true
	}
	return false
}

// SetMACs writes the Ethernet source and destination addresses.
func (p *Packet) SetMACs(src, dst net.HardwareAddr) {
	if p.EtherType == 0 || len(src) != 6 || len(dst) != 6 {
		return
	}
	copy(p.Frame[0:6], dst)
	copy(p.Frame[6:12], src)
}
