package wiretest

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// ENOKind is the TCP option kind of TCP-ENO (RFC 8547 §11).
const ENOKind = 69

// Segment is a parsed IPv4/IPv6 TCP packet. Options and Payload alias the
// packet.
type Segment struct {
	V6       bool
	Src, Dst netip.AddrPort
	Flags    header.TCPFlags
	Seq, Ack uint32
	Options  []byte
	Payload  []byte

	ipHdr, tcpHdr int
}

// SYN reports a SYN segment (SYN-only or SYN-ACK).
func (s Segment) SYN() bool { return s.Flags&header.TCPFlagSyn != 0 }

// ACK reports the ACK flag.
func (s Segment) ACK() bool { return s.Flags&header.TCPFlagAck != 0 }

// SYNOnly reports SYN without ACK.
func (s Segment) SYNOnly() bool { return s.SYN() && !s.ACK() }

// SYNACK reports SYN with ACK.
func (s Segment) SYNACK() bool { return s.SYN() && s.ACK() }

// ParseTCP parses an IPv4 (no fragments) or IPv6 (no extension headers)
// packet carrying TCP.
func ParseTCP(b []byte) (Segment, bool) {
	var s Segment
	var ipLen int
	var src, dst []byte
	switch {
	case len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4:
		ip := header.IPv4(b)
		s.ipHdr = int(ip.HeaderLength())
		ipLen = int(ip.TotalLength())
		if ip.Protocol() != uint8(header.TCPProtocolNumber) || s.ipHdr < header.IPv4MinimumSize || ipLen > len(b) || ipLen < s.ipHdr {
			return s, false
		}
		src, dst = b[12:16], b[16:20]
	case len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6:
		ip := header.IPv6(b)
		s.V6, s.ipHdr = true, header.IPv6MinimumSize
		ipLen = header.IPv6MinimumSize + int(ip.PayloadLength())
		if ip.NextHeader() != uint8(header.TCPProtocolNumber) || ipLen > len(b) {
			return s, false
		}
		src, dst = b[8:24], b[24:40]
	default:
		return s, false
	}
	if ipLen-s.ipHdr < header.TCPMinimumSize {
		return s, false
	}
	t := header.TCP(b[s.ipHdr:ipLen])
	s.tcpHdr = int(t.DataOffset())
	if s.tcpHdr < header.TCPMinimumSize || s.tcpHdr > len(t) {
		return s, false
	}
	sa, _ := netip.AddrFromSlice(src)
	da, _ := netip.AddrFromSlice(dst)
	s.Src = netip.AddrPortFrom(sa, t.SourcePort())
	s.Dst = netip.AddrPortFrom(da, t.DestinationPort())
	s.Flags = t.Flags()
	s.Seq, s.Ack = t.SequenceNumber(), t.AckNumber()
	s.Options = t[header.TCPMinimumSize:s.tcpHdr]
	s.Payload = t[s.tcpHdr:]
	return s, true
}

// OptionsOfKind returns every option of the given kind in a TCP options
// area (whole options: kind, length, contents), stopping at EOL or at a
// malformed option.
func OptionsOfKind(opts []byte, kind byte) [][]byte {
	var out [][]byte
	for i := 0; i < len(opts); {
		switch opts[i] {
		case header.TCPOptionEOL:
			return out
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return out
		}
		if opts[i] == kind {
			out = append(out, opts[i:i+int(opts[i+1])])
		}
		i += int(opts[i+1])
	}
	return out
}

// ENO returns the segment's ENO options.
func (s Segment) ENO() [][]byte { return OptionsOfKind(s.Options, ENOKind) }

// FixTCPChecksum recomputes the TCP checksum of packet b (parsed as s).
func FixTCPChecksum(b []byte, s Segment) {
	t := header.TCP(b[s.ipHdr : s.ipHdr+s.tcpHdr+len(s.Payload)])
	t.SetChecksum(0)
	src := tcpip.AddrFromSlice(s.Src.Addr().AsSlice())
	dst := tcpip.AddrFromSlice(s.Dst.Addr().AsSlice())
	x := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))
	t.SetChecksum(^checksum.Checksum(t, x))
}

// StripENO overwrites every ENO option of packet b with NOPs and fixes the
// TCP checksum, as a middlebox removing unknown options would. It reports
// whether an option was removed.
func StripENO(b []byte) bool {
	s, ok := ParseTCP(b)
	if !ok {
		return false
	}
	found := false
	for _, o := range s.ENO() {
		for i := range o {
			o[i] = header.TCPOptionNOP
		}
		found = true
	}
	if found {
		FixTCPChecksum(b, s)
	}
	return found
}

// StripENOWhen returns a hook stripping ENO from the segments for which
// pred is true (e.g. Segment.SYNACK: only from SYN-ACKs).
func StripENOWhen(pred func(Segment) bool) Hook {
	return func(p *Packet) Verdict {
		if s, ok := ParseTCP(p.Data); ok && pred(s) {
			StripENO(p.Data)
		}
		return Verdict{}
	}
}

// Chain runs hooks in order on the same packet and merges their verdicts:
// drop if any drops (later hooks are skipped), copies and delays add up.
func Chain(hooks ...Hook) Hook {
	return func(p *Packet) Verdict {
		var v Verdict
		for _, h := range hooks {
			if h == nil {
				continue
			}
			w := h(p)
			if w.Drop {
				return Verdict{Drop: true, Before: append(v.Before, w.Before...)}
			}
			v.Dup += w.Dup
			v.Delay += w.Delay
			v.Before = append(v.Before, w.Before...)
		}
		return v
	}
}

// Loss drops each packet with probability rate (seeded, deterministic per
// link order).
func Loss(rate float64, seed uint64) Hook {
	r := rand.New(rand.NewPCG(seed, 1))
	return func(*Packet) Verdict { return Verdict{Drop: r.Float64() < rate} }
}

// Duplicate sends an extra copy of each packet with probability rate.
func Duplicate(rate float64, seed uint64) Hook {
	r := rand.New(rand.NewPCG(seed, 2))
	return func(*Packet) Verdict {
		if r.Float64() < rate {
			return Verdict{Dup: 1}
		}
		return Verdict{}
	}
}

// Reorder delays each packet with probability rate by delay, so later
// packets overtake it.
func Reorder(rate float64, delay time.Duration, seed uint64) Hook {
	r := rand.New(rand.NewPCG(seed, 3))
	return func(*Packet) Verdict {
		if r.Float64() < rate {
			return Verdict{Delay: delay}
		}
		return Verdict{}
	}
}

// FlipPayloadBit flips bit (0..7) of payload byte off in the first TCP
// segment for which pred is true and whose payload is longer than off, then
// fixes the TCP checksum so the receiving stack accepts the corrupted data
// (an on-path attacker, not line noise). Later packets pass untouched.
func FlipPayloadBit(pred func(Segment) bool, off int, bit uint) Hook {
	done := false
	return func(p *Packet) Verdict {
		if done {
			return Verdict{}
		}
		s, ok := ParseTCP(p.Data)
		if !ok || len(s.Payload) <= off || !pred(s) {
			return Verdict{}
		}
		s.Payload[off] ^= 1 << (bit & 7)
		FixTCPChecksum(p.Data, s)
		done = true
		return Verdict{}
	}
}

// Capture records a copy of every packet it sees. Safe for concurrent use.
type Capture struct {
	mu      sync.Mutex
	packets []Packet
	max     int
}

// NewCapture returns a capture keeping at most max packets (0: no bound).
func NewCapture(max int) *Capture { return &Capture{max: max} }

// Hook returns a hook recording packets, then calling next (may be nil).
// It records the packet as sent, before next modifies it.
func (c *Capture) Hook(next Hook) Hook {
	return func(p *Packet) Verdict {
		c.mu.Lock()
		if c.max == 0 || len(c.packets) < c.max {
			c.packets = append(c.packets, Packet{From: p.From, To: p.To, N: p.N, Data: append([]byte(nil), p.Data...)})
		}
		c.mu.Unlock()
		if next != nil {
			return next(p)
		}
		return Verdict{}
	}
}

// Packets returns the recorded packets.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.packets...)
}

// Segments returns the recorded TCP segments with their packets' ports.
func (c *Capture) Segments() []CapturedSegment {
	var out []CapturedSegment
	for _, p := range c.Packets() {
		if s, ok := ParseTCP(p.Data); ok {
			out = append(out, CapturedSegment{From: p.From, To: p.To, Segment: s})
		}
	}
	return out
}

// Reset forgets the recorded packets.
func (c *Capture) Reset() {
	c.mu.Lock()
	c.packets = nil
	c.mu.Unlock()
}

// CapturedSegment is a recorded TCP segment and its link.
type CapturedSegment struct {
	From, To string
	Segment
}

// Payloads concatenates the TCP payloads the capture saw from src to dst
// in capture order (retransmissions included): enough to search for
// plaintext on the wire.
func (c *Capture) Payloads(src, dst netip.AddrPort) []byte {
	var out []byte
	for _, s := range c.Segments() {
		if s.Src == src && s.Dst == dst {
			out = append(out, s.Payload...)
		}
	}
	return out
}

// SeqAfter reports whether sequence number a is after b (RFC 1982).
func SeqAfter(a, b uint32) bool { return int32(a-b) > 0 }
