package impair

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// seg describes a test segment; build encodes it with gVisor's header package,
// an implementation independent of the one under test.
type seg struct {
	v6       bool
	src, dst netip.AddrPort
	flags    header.TCPFlags
	seq, ack uint32
	opts     []byte // padded with EOL to a multiple of 4
	payload  []byte
	ttl      uint8
	pad      int // link-layer padding after the IP packet
	fragment bool
}

var (
	macA = []byte{2, 0, 0, 0, 0, 0xa}
	macB = []byte{2, 0, 0, 0, 0, 0xb}

	v4a = netip.MustParseAddrPort("10.0.0.1:40000")
	v4b = netip.MustParseAddrPort("10.0.0.2:80")
	v6a = netip.MustParseAddrPort("[fd00::1]:40000")
	v6b = netip.MustParseAddrPort("[fd00::2]:80")
)

// enoSYNOpts is a Linux-like SYN option set plus ENO (kind 69, two TEPs).
var enoSYNOpts = []byte{
	2, 4, 0x05, 0xb4, // MSS 1460
	4, 2, // SACK permitted
	8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // TS
	1, 3, 3, 7, // NOP, WS 7
	69, 4, 0x21, 0x23, // ENO
}

func (s seg) build() []byte {
	opts := append([]byte(nil), s.opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, OptEOL)
	}
	tcpLen := tcpMinLen + len(opts)
	ipLen := ipv4MinLen
	if s.v6 {
		ipLen = ipv6HdrLen
	}
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	total := ipLen + tcpLen + len(s.payload)
	b := make([]byte, ethHdrLen+total+s.pad)
	copy(b[0:6], macB)
	copy(b[6:12], macA)
	src := tcpip.AddrFromSlice(s.src.Addr().AsSlice())
	dst := tcpip.AddrFromSlice(s.dst.Addr().AsSlice())
	ip := b[ethHdrLen:]
	if s.v6 {
		binary.BigEndian.PutUint16(b[12:], EtherTypeIPv6)
		header.IPv6(ip).Encode(&header.IPv6Fields{
			PayloadLength: uint16(tcpLen + len(s.payload)), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: ttl, SrcAddr: src, DstAddr: dst,
		})
	} else {
		binary.BigEndian.PutUint16(b[12:], EtherTypeIPv4)
		f := &header.IPv4Fields{
			TotalLength: uint16(total), TTL: ttl, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: src, DstAddr: dst,
		}
		if s.fragment {
			f.Flags = header.IPv4FlagMoreFragments
		}
		header.IPv4(ip).Encode(f)
		header.IPv4(ip).SetChecksum(^header.IPv4(ip).CalculateChecksum())
	}
	t := header.TCP(ip[ipLen:])
	t.Encode(&header.TCPFields{
		SrcPort: s.src.Port(), DstPort: s.dst.Port(), SeqNum: s.seq, AckNum: s.ack,
		DataOffset: uint8(tcpLen), Flags: s.flags, WindowSize: 65535,
	})
	copy(t[tcpMinLen:], opts)
	copy(t[tcpLen:], s.payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen+len(s.payload)))
	xsum = checksum.Checksum(s.payload, xsum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return b
}

// gvisorChecksumsOK verifies a built or rewritten frame with gVisor's code.
func gvisorChecksumsOK(t *testing.T, frame []byte) {
	t.Helper()
	ip := frame[ethHdrLen:]
	var tcp header.TCP
	var src, dst tcpip.Address
	if ip[0]>>4 == 4 {
		h := header.IPv4(ip)
		if !h.IsChecksumValid() {
			t.Fatalf("IPv4 header checksum invalid (gVisor)")
		}
		tcp = header.TCP(ip[h.HeaderLength():h.TotalLength()])
		src, dst = h.SourceAddress(), h.DestinationAddress()
	} else {
		h := header.IPv6(ip)
		tcp = header.TCP(ip[ipv6HdrLen : ipv6HdrLen+int(h.PayloadLength())])
		src, dst = h.SourceAddress(), h.DestinationAddress()
	}
	payload := tcp[tcp.DataOffset():]
	if !tcp.IsChecksumValid(src, dst, checksum.Checksum(payload, 0), uint16(len(payload))) {
		t.Fatalf("TCP checksum invalid (gVisor)")
	}
}

func TestParseFrame(t *testing.T) {
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	tests := []struct {
		name    string
		frame   []byte
		wantErr string // substring; "" for success
		check   func(t *testing.T, p Packet)
	}{
		{name: "IPv4 SYN with ENO", frame: seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, seq: 100, opts: enoSYNOpts}.build(),
			check: func(t *testing.T, p Packet) {
				if p.Version != 4 || !p.IsTCP() || !p.SYN() || p.SYNACK() || p.Seq != 100 || p.PayLen != 0 {
					t.Fatalf("parsed %+v", p)
				}
				if p.Flow() != (FlowKey{Src: v4a, Dst: v4b}) {
					t.Fatalf("flow %v", p.Flow())
				}
				o, ok := p.Option(OptENO)
				if !ok || !bytes.Equal(o.Data, []byte{0x21, 0x23}) {
					t.Fatalf("ENO option %+v %v", o, ok)
				}
				if !p.TCPChecksumValid() || !p.IPv4ChecksumValid() {
					t.Fatal("checksums of a valid frame reported invalid")
				}
			}},
		{name: "IPv6 SYN-ACK", frame: seg{v6: true, src: v6b, dst: v6a, flags: header.TCPFlagSyn | header.TCPFlagAck, opts: []byte{69, 3, 0x21}}.build(),
			check: func(t *testing.T, p Packet) {
				if p.Version != 6 || !p.SYNACK() || p.Src != v6b.Addr() || p.DstPort != v6a.Port() {
					t.Fatalf("parsed %+v", p)
				}
				if !p.TCPChecksumValid() {
					t.Fatal("IPv6 TCP checksum reported invalid")
				}
			}},
		{name: "data with link padding", frame: seg{src: v4a, dst: v4b, flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte("hi"), pad: 6}.build(),
			check: func(t *testing.T, p Packet) {
				if string(p.Payload()) != "hi" || p.End != len(p.Frame)-6 {
					t.Fatalf("payload %q end %d len %d", p.Payload(), p.End, len(p.Frame))
				}
				if !p.TCPChecksumValid() {
					t.Fatal("checksum invalid with padding")
				}
			}},
		{name: "ARP is not IP", frame: arp, check: func(t *testing.T, p Packet) {
			if p.Version != 0 || p.IsTCP() {
				t.Fatalf("parsed %+v", p)
			}
		}},
		{name: "IPv4 fragment is not a TCP segment", frame: seg{src: v4a, dst: v4b, flags: header.TCPFlagAck, payload: []byte("x"), fragment: true}.build(),
			check: func(t *testing.T, p Packet) {
				if p.Version != 4 || p.IsTCP() {
					t.Fatalf("parsed %+v", p)
				}
			}},
		{name: "short ethernet", frame: make([]byte, 10), wantErr: "ethernet"},
		{name: "truncated IPv4", frame: seg{src: v4a, dst: v4b}.build()[:30], wantErr: "ipv4"},
		{name: "truncated IPv6", frame: seg{v6: true, src: v6a, dst: v6b}.build()[:40], wantErr: "ipv6"},
		{name: "IPv4 total length past frame", frame: func() []byte {
			b := seg{src: v4a, dst: v4b}.build()
			binary.BigEndian.PutUint16(b[ethHdrLen+2:], 1000)
			return b
		}(), wantErr: "total length"},
		{name: "IPv4 IHL too small", frame: func() []byte {
			b := seg{src: v4a, dst: v4b}.build()
			b[ethHdrLen] = 0x44
			return b
		}(), wantErr: "header length"},
		{name: "TCP data offset past segment", frame: func() []byte {
			b := seg{src: v4a, dst: v4b}.build()
			b[ethHdrLen+ipv4MinLen+12] = 0xf0
			return b
		}(), wantErr: "data offset"},
		{name: "TCP data offset below 20", frame: func() []byte {
			b := seg{src: v4a, dst: v4b}.build()
			b[ethHdrLen+ipv4MinLen+12] = 0x40
			return b
		}(), wantErr: "data offset"},
		{name: "IP version 5", frame: func() []byte {
			b := seg{src: v4a, dst: v4b}.build()
			b[ethHdrLen] = 0x55
			return b
		}(), wantErr: "version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseFrame(tc.frame)
			if tc.wantErr != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || !bytes.Contains([]byte(err.Error()), []byte(tc.wantErr)) {
					t.Fatalf("err = %v, want a ParseError mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func TestParseIPRaw(t *testing.T) {
	f := seg{v6: true, src: v6a, dst: v6b, flags: header.TCPFlagAck, payload: []byte("raw")}.build()
	p, err := ParseIP(f[ethHdrLen:])
	if err != nil || string(p.Payload()) != "raw" || p.DstMAC() != nil {
		t.Fatalf("ParseIP: %v %+v", err, p)
	}
	if _, err := ParseIP(nil); err == nil {
		t.Fatal("empty packet parsed")
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    []byte
		kinds   []uint8
		wantErr bool
	}{
		{name: "linux SYN + ENO", opts: enoSYNOpts, kinds: []uint8{2, 4, 8, 1, 3, 69}},
		{name: "EOL ends the list", opts: []byte{1, 0, 69, 2}, kinds: []uint8{1}},
		{name: "length 1", opts: []byte{69, 1, 0, 0}, wantErr: true},
		{name: "length past the space", opts: []byte{1, 69, 8, 0}, kinds: []uint8{1}, wantErr: true},
		{name: "kind without length byte", opts: []byte{1, 1, 1, 69}, kinds: []uint8{1, 1, 1}, wantErr: true},
		{name: "empty ENO", opts: []byte{69, 2, 1, 1}, kinds: []uint8{69, 1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseFrame(seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: tc.opts}.build())
			if err != nil {
				t.Fatal(err)
			}
			opts, err := p.Options()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var kinds []uint8
			for _, o := range opts {
				kinds = append(kinds, o.Kind)
				if o.Kind != OptNOP && len(o.Data) != o.Len-2 {
					t.Fatalf("option %d: data %d bytes, length %d", o.Kind, len(o.Data), o.Len)
				}
			}
			if !bytes.Equal(kinds, tc.kinds) {
				t.Fatalf("kinds %v, want %v", kinds, tc.kinds)
			}
		})
	}
}

func TestStripOption(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		src, dst := v4a, v4b
		if v6 {
			src, dst = v6a, v6b
		}
		f := seg{v6: v6, src: src, dst: dst, flags: header.TCPFlagSyn, opts: enoSYNOpts}.build()
		orig := bytes.Clone(f)
		p, _ := ParseFrame(f)
		n, err := p.StripOption(OptENO)
		if err != nil || n != 1 {
			t.Fatalf("v6=%v: StripOption = %d, %v", v6, n, err)
		}
		if _, ok := p.Option(OptENO); ok {
			t.Fatalf("v6=%v: ENO still present", v6)
		}
		for _, k := range []uint8{2, 4, 8, 3} {
			if _, ok := p.Option(k); !ok {
				t.Fatalf("v6=%v: option %d lost", v6, k)
			}
		}
		if len(f) != len(orig) || p.OptLen != len(enoSYNOpts) {
			t.Fatalf("v6=%v: length changed", v6)
		}
		gvisorChecksumsOK(t, f)
		if n, _ := p.StripOption(OptENO); n != 0 {
			t.Fatalf("second strip replaced %d", n)
		}
	}
	p, _ := ParseFrame(seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: enoSYNOpts}.build())
	if _, err := p.StripOption(OptNOP); err == nil {
		t.Fatal("stripping NOP accepted")
	}
	arp := make([]byte, 42)
	q, _ := ParseFrame(arp)
	if _, err := q.StripOption(OptENO); err == nil {
		t.Fatal("strip on a non-TCP frame accepted")
	}
}

func TestCorruptPayload(t *testing.T) {
	payload := []byte("the quick brown fox")
	for _, v6 := range []bool{false, true} {
		src, dst := v4a, v4b
		if v6 {
			src, dst = v6a, v6b
		}
		f := seg{v6: v6, src: src, dst: dst, flags: header.TCPFlagAck, payload: payload}.build()
		p, _ := ParseFrame(f)
		if err := p.CorruptPayload(4, 0x20); err != nil {
			t.Fatal(err)
		}
		if got := string(p.Payload()); got != "the Quick brown fox" {
			t.Fatalf("payload %q", got)
		}
		gvisorChecksumsOK(t, f)
		if !p.TCPChecksumValid() {
			t.Fatal("own checksum check disagrees with gVisor")
		}
		for _, bad := range []struct {
			i    int
			mask byte
		}{{-1, 1}, {len(payload), 1}, {0, 0}} {
			if err := p.CorruptPayload(bad.i, bad.mask); err == nil {
				t.Fatalf("CorruptPayload(%d, %d) accepted", bad.i, bad.mask)
			}
		}
	}
}

func TestChecksumDetectsChange(t *testing.T) {
	f := seg{src: v4a, dst: v4b, flags: header.TCPFlagAck, payload: []byte("odd")}.build()
	p, _ := ParseFrame(f)
	p.Payload()[0] ^= 1
	if p.TCPChecksumValid() {
		t.Fatal("changed payload still has a valid checksum")
	}
	p.FixTCPChecksum()
	gvisorChecksumsOK(t, f)
}

func TestDecrementTTL(t *testing.T) {
	f := seg{src: v4a, dst: v4b, flags: header.TCPFlagAck, ttl: 64}.build()
	p, _ := ParseFrame(f)
	if !p.DecrementTTL() || f[ethHdrLen+8] != 63 {
		t.Fatal("IPv4 TTL not decremented")
	}
	gvisorChecksumsOK(t, f)
	f6 := seg{v6: true, src: v6a, dst: v6b, flags: header.TCPFlagAck, ttl: 2}.build()
	p6, _ := ParseFrame(f6)
	if !p6.DecrementTTL() || f6[ethHdrLen+7] != 1 {
		t.Fatal("IPv6 hop limit not decremented")
	}
	if p6.DecrementTTL() {
		t.Fatal("hop limit 1 forwarded")
	}
	one := seg{src: v4a, dst: v4b, ttl: 1}.build()
	q, _ := ParseFrame(one)
	if q.DecrementTTL() || one[ethHdrLen+8] != 1 {
		t.Fatal("TTL 1 forwarded or changed")
	}
}

func TestSetMACs(t *testing.T) {
	f := seg{src: v4a, dst: v4b}.build()
	p, _ := ParseFrame(f)
	p.SetMACs(macB, macA)
	if !bytes.Equal(p.DstMAC(), macA) || !bytes.Equal(p.SrcMAC(), macB) {
		t.Fatalf("MACs dst %x src %x", p.DstMAC(), p.SrcMAC())
	}
}

func TestStreams(t *testing.T) {
	mk := func(seq uint32, flags header.TCPFlags, data string) Packet {
		p, err := ParseFrame(seg{src: v4a, dst: v4b, seq: seq, flags: flags, payload: []byte(data)}.build())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	const isn = 0xfffffff0 // wraps during the stream
	segs := []Packet{
		mk(isn, header.TCPFlagSyn, ""),
		mk(isn+1+6, header.TCPFlagAck, "world "), // out of order
		mk(isn+1, header.TCPFlagAck, "hello "),
		mk(isn+1, header.TCPFlagAck, "hello "), // retransmission
		mk(isn+1+12, header.TCPFlagAck, "and goodbye"),
	}
	// The reverse direction, without its SYN in the capture.
	rev, _ := ParseFrame(seg{src: v4b, dst: v4a, seq: 5000, flags: header.TCPFlagAck, payload: []byte("reply")}.build())
	segs = append(segs, rev)
	got := Streams(segs)
	if s := string(got[FlowKey{Src: v4a, Dst: v4b}]); s != "hello world and goodbye" {
		t.Fatalf("stream %q", s)
	}
	if s := string(got[FlowKey{Src: v4b, Dst: v4a}]); s != "reply" {
		t.Fatalf("reverse stream %q", s)
	}
}

func TestHexDumpAndDescribe(t *testing.T) {
	d := HexDump([]byte("0123456789abcdefXYZ\x00"))
	if !bytes.Contains([]byte(d), []byte("|0123456789abcdef|")) || !bytes.Contains([]byte(d), []byte("|XYZ.|")) {
		t.Fatalf("hex dump:\n%s", d)
	}
	p, _ := ParseFrame(seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: enoSYNOpts}.build())
	if s := Describe(&p); !bytes.Contains([]byte(s), []byte("ENO[2123]")) || !bytes.Contains([]byte(s), []byte("[S]")) {
		t.Fatalf("describe: %s", s)
	}
}

// FuzzParseFrame: no input makes the parser or the rewriters panic, and a
// rewrite of a parsed TCP segment always leaves a valid checksum.
func FuzzParseFrame(f *testing.F) {
	f.Add(seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: enoSYNOpts}.build())
	f.Add(seg{v6: true, src: v6a, dst: v6b, flags: header.TCPFlagSyn | header.TCPFlagAck, opts: []byte{69, 3, 0x21}}.build())
	f.Add(seg{src: v4a, dst: v4b, flags: header.TCPFlagAck, payload: []byte("payload"), pad: 4}.build())
	f.Add(seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: []byte{1, 69, 8, 0}}.build())
	f.Add(make([]byte, 42))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseFrame(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		if p.Version != 0 && (p.End > len(b) || p.End < p.L3) {
			t.Fatalf("End %d outside frame of %d", p.End, len(b))
		}
		if !p.IsTCP() {
			return
		}
		if p.PayOff+p.PayLen != p.End || p.OptOff+p.OptLen != p.PayOff {
			t.Fatalf("inconsistent offsets %+v", p)
		}
		p.Options()
		p.DecrementTTL()
		if n, _ := p.StripOption(OptENO); n > 0 && !p.TCPChecksumValid() {
			t.Fatal("checksum invalid after strip")
		}
		if p.PayLen > 0 {
			if err := p.CorruptPayload(p.PayLen-1, 0xff); err != nil || !p.TCPChecksumValid() {
				t.Fatalf("corrupt: %v, checksum valid %v", err, p.TCPChecksumValid())
			}
		}
		Streams([]Packet{p})
		Describe(&p)
	})
}
