package impair

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// EtherTypes and IP protocol numbers the parser knows.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd
	ProtoTCP      = 6

	ethHdrLen  = 14
	ipv4MinLen = 20
	ipv6HdrLen = 40
	tcpMinLen  = 20
)

// TCP flag bits (RFC 9293 §3.1).
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
)

// TCP option kinds used here.
const (
	OptEOL = 0
	OptNOP = 1
	OptENO = 69 // TCP-ENO, RFC 8547 §4.1
)

// ParseError says why a frame could not be parsed.
type ParseError struct {
	Layer  string // "ethernet", "ipv4", "ipv6", "tcp", "tcp options"
	Reason string
}

func (e *ParseError) Error() string { return "impair: bad " + e.Layer + ": " + e.Reason }

func perr(layer, format string, args ...any) error {
	return &ParseError{Layer: layer, Reason: fmt.Sprintf(format, args...)}
}

// Packet is a parsed view of one Ethernet frame (or raw IP packet). Offsets
// index Frame; rewriting functions change Frame in place.
//
// A frame that is not IPv4/IPv6 parses with Version 0; an IP packet that is not
// a complete, unfragmented TCP segment directly after the IP header (IPv6
// extension headers are not followed: none of our traffic carries them) parses
// with L4 == 0. Only malformed headers are errors.
type Packet struct {
	Frame     []byte
	EtherType uint16 // 0 for a raw IP packet

	L3      int   // offset of the IP header
	Version uint8 // 4 or 6; 0: not IP
	Src     netip.Addr
	Dst     netip.Addr
	Proto   uint8 // IPv4 protocol or IPv6 next header
	End     int   // end of the IP packet (Frame may carry link padding after it)

	L4       int // offset of the TCP header; 0: not TCP
	SrcPort  uint16
	DstPort  uint16
	Seq, Ack uint32
	Flags    uint8
	OptOff   int // offset of the TCP options
	OptLen   int
	PayOff   int // offset of the TCP payload
	PayLen   int
}

// IsTCP reports whether p is a parsed TCP segment.
func (p *Packet) IsTCP() bool { return p.L4 != 0 }

// Payload returns the TCP payload (aliasing Frame).
func (p *Packet) Payload() []byte {
	if !p.IsTCP() {
		return nil
	}
	return p.Frame[p.PayOff : p.PayOff+p.PayLen]
}

// SYN, SYNACK report the handshake segment kinds.
func (p *Packet) SYN() bool    { return p.Flags&(FlagSYN|FlagACK) == FlagSYN }
func (p *Packet) SYNACK() bool { return p.Flags&(FlagSYN|FlagACK) == FlagSYN|FlagACK }

// DstMAC and SrcMAC return the Ethernet addresses (nil for a raw IP packet).
func (p *Packet) DstMAC() []byte {
	if p.EtherType == 0 {
		return nil
	}
	return p.Frame[0:6]
}

func (p *Packet) SrcMAC() []byte {
	if p.EtherType == 0 {
		return nil
	}
	return p.Frame[6:12]
}

// ParseFrame parses an Ethernet II frame (no VLAN tags) carrying IPv4 or IPv6.
func ParseFrame(b []byte) (Packet, error) {
	if len(b) < ethHdrLen {
		return Packet{}, perr("ethernet", "frame of %d bytes is shorter than the header", len(b))
	}
	p := Packet{Frame: b, EtherType: binary.BigEndian.Uint16(b[12:14]), L3: ethHdrLen}
	switch p.EtherType {
	case EtherTypeIPv4, EtherTypeIPv6:
		return p, p.parseIP()
	default:
		return p, nil
	}
}

// ParseIP parses a raw IPv4 or IPv6 packet.
func ParseIP(b []byte) (Packet, error) {
	p := Packet{Frame: b}
	return p, p.parseIP()
}

func (p *Packet) parseIP() error {
	b := p.Frame[p.L3:]
	if len(b) < 1 {
		return perr("ip", "empty packet")
	}
	switch b[0] >> 4 {
	case 4:
		return p.parseIPv4(b)
	case 6:
		return p.parseIPv6(b)
	default:
		return perr("ip", "version %d", b[0]>>4)
	}
}

func (p *Packet) parseIPv4(b []byte) error {
	if len(b) < ipv4MinLen {
		return perr("ipv4", "%d bytes, header needs %d", len(b), ipv4MinLen)
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case ihl < ipv4MinLen:
		return perr("ipv4", "header length %d < 20", ihl)
	case total < ihl:
		return perr("ipv4", "total length %d < header length %d", total, ihl)
	case total > len(b):
		return perr("ipv4", "total length %d > %d bytes present", total, len(b))
	}
	p.Version = 4
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = b[9]
	p.End = p.L3 + total
	fragOff := binary.BigEndian.Uint16(b[6:8])
	if fragOff&0x3fff != 0 { // MF set or offset != 0: not a whole segment
		return nil
	}
	if p.Proto == ProtoTCP {
		return p.parseTCP(p.L3 + ihl)
	}
	return nil
}

func (p *Packet) parseIPv6(b []byte) error {
	if len(b) < ipv6HdrLen {
		return perr("ipv6", "%d bytes, header needs %d", len(b), ipv6HdrLen)
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	if ipv6HdrLen+plen > len(b) {
		return perr("ipv6", "payload length %d > %d bytes present", plen, len(b)-ipv6HdrLen)
	}
	p.Version = 6
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	p.Proto = b[6]
	p.End = p.L3 + ipv6HdrLen + plen
	if p.Proto == ProtoTCP {
		return p.parseTCP(p.L3 + ipv6HdrLen)
	}
	return nil
}

func (p *Packet) parseTCP(off int) error {
	seg := p.Frame[off:p.End]
	if len(seg) < tcpMinLen {
		return perr("tcp", "%d bytes, header needs %d", len(seg), tcpMinLen)
	}
	doff := int(seg[12]>>4) * 4
	switch {
	case doff < tcpMinLen:
		return perr("tcp", "data offset %d < 20", doff)
	case doff > len(seg):
		return perr("tcp", "data offset %d > segment length %d", doff, len(seg))
	}
	p.L4 = off
	p.SrcPort = binary.BigEndian.Uint16(seg[0:2])
	p.DstPort = binary.BigEndian.Uint16(seg[2:4])
	p.Seq = binary.BigEndian.Uint32(seg[4:8])
	p.Ack = binary.BigEndian.Uint32(seg[8:12])
	p.Flags = seg[13]
	p.OptOff = off + tcpMinLen
	p.OptLen = doff - tcpMinLen
	p.PayOff = off + doff
	p.PayLen = len(seg) - doff
	return nil
}

// Option is one TCP option: Off indexes the packet's Frame at the kind byte,
// Len is its whole length (1 for NOP), Data its body.
type Option struct {
	Kind uint8
	Off  int
	Len  int
	Data []byte
}

// Options returns the TCP options up to an EOL (RFC 9293 §3.1). A length byte
// below 2 or past the option space is an error.
func (p *Packet) Options() ([]Option, error) {
	if !p.IsTCP() {
		return nil, nil
	}
	var opts []Option
	b := p.Frame[p.OptOff : p.OptOff+p.OptLen]
	for i := 0; i < len(b); {
		kind := b[i]
		switch kind {
		case OptEOL:
			return opts, nil
		case OptNOP:
			opts = append(opts, Option{Kind: OptNOP, Off: p.OptOff + i, Len: 1})
			i++
			continue
		}
		if i+1 >= len(b) {
			return opts, perr("tcp options", "kind %d at %d has no length byte", kind, i)
		}
		l := int(b[i+1])
		if l < 2 || i+l > len(b) {
			return opts, perr("tcp options", "kind %d at %d has length %d (space left %d)", kind, i, l, len(b)-i)
		}
		opts = append(opts, Option{Kind: kind, Off: p.OptOff + i, Len: l, Data: b[i+2 : i+l]})
		i += l
	}
	return opts, nil
}

// Option returns the first option of the kind, if any (malformed options end
// the search).
func (p *Packet) Option(kind uint8) (Option, bool) {
	opts, _ := p.Options()
	for _, o := range opts {
		if o.Kind == kind {
			return o, true
		}
	}
	return Option{}, false
}

// FlowKey names one direction of a TCP connection.
type FlowKey struct {
	Src, Dst netip.AddrPort
}

func (k FlowKey) String() string { return k.Src.String() + ">" + k.Dst.String() }

// Reverse is the other direction.
func (k FlowKey) Reverse() FlowKey { return FlowKey{Src: k.Dst, Dst: k.Src} }

// Flow returns the segment's flow key (zero for non-TCP).
func (p *Packet) Flow() FlowKey {
	if !p.IsTCP() {
		return FlowKey{}
	}
	return FlowKey{Src: netip.AddrPortFrom(p.Src, p.SrcPort), Dst: netip.AddrPortFrom(p.Dst, p.DstPort)}
}
