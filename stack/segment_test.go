package stack

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	v4src = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	v4dst = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	v6src = tcpip.AddrFrom16([16]byte{0xfd, 0, 15: 1})
	v6dst = tcpip.AddrFrom16([16]byte{0xfd, 0, 15: 2})
)

// buildPacket builds an IPv4 or IPv6 TCP packet with valid checksums.
func buildPacket(v6 bool, flags header.TCPFlags, opts, payload []byte) []byte {
	if len(opts)%4 != 0 {
		panic("options must be padded")
	}
	tcpLen := header.TCPMinimumSize + len(opts)
	ipHdr := header.IPv4MinimumSize
	if v6 {
		ipHdr = header.IPv6MinimumSize
	}
	b := make([]byte, ipHdr+tcpLen+len(payload))
	src, dst := v4src, v4dst
	if v6 {
		src, dst = v6src, v6dst
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(tcpLen + len(payload)),
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           src,
			DstAddr:           dst,
		})
	} else {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         64,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	t := header.TCP(b[ipHdr:])
	t.Encode(&header.TCPFields{
		SrcPort: 1234, DstPort: 80, SeqNum: 1000, AckNum: 2000,
		DataOffset: uint8(tcpLen), Flags: flags, WindowSize: 65535,
	})
	copy(t[header.TCPMinimumSize:], opts)
	copy(t[tcpLen:], payload)
	s := segment{v6: v6, ipHdrLen: ipHdr, tcpHdrLen: tcpLen, ipLen: len(b), src: src, dst: dst}
	t.SetChecksum(^tcpChecksum(b[ipHdr:], &s))
	return b
}

// gVisor-like option layouts.
var (
	synOpts = []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7} // mss,sackOK,TS,nop,wscale
	ackOpts = []byte{1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 1}                            // nop,nop,TS
)

func TestParseSegment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pkt    []byte
		size   int
		reason SegmentReason
	}{
		{"v4 syn", buildPacket(false, header.TCPFlagSyn, synOpts, nil), 0, 0},
		{"v6 synack", buildPacket(true, header.TCPFlagSyn|header.TCPFlagAck, synOpts, nil), 0, 0},
		{"v4 data", buildPacket(false, header.TCPFlagAck, ackOpts, []byte("hello")), 0, 0},
		{"empty", nil, 0, SegShort},
		{"version 5", []byte{0x50, 0, 0, 0}, 0, SegVersion},
		{"v4 short", buildPacket(false, header.TCPFlagAck, nil, nil)[:10], 0, SegShort},
		{"v4 udp", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			b[9] = 17
			return b
		}(), 0, SegNotTCP},
		{"v4 fragment", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			header.IPv4(b).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
			return b
		}(), 0, SegFragment},
		{"v4 ihl 4", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			b[0] = 0x44
			return b
		}(), 0, SegIPHeader},
		{"v4 total length too big", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			header.IPv4(b).SetTotalLength(1000)
			return b
		}(), 0, SegIPLength},
		{"v6 ext header", func() []byte {
			b := buildPacket(true, header.TCPFlagAck, nil, nil)
			b[6] = 0 // hop-by-hop
			return b
		}(), 0, SegNotTCP},
		{"v6 payload length too big", func() []byte {
			b := buildPacket(true, header.TCPFlagAck, nil, nil)
			b[4], b[5] = 0xff, 0xff
			return b
		}(), 0, SegIPLength},
		{"tcp data offset 4", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			b[20+12] = 0x10
			return b
		}(), 0, SegTCPHeader},
		{"tcp data offset past end", func() []byte {
			b := buildPacket(false, header.TCPFlagAck, nil, nil)
			b[20+12] = 0xf0
			return b
		}(), 0, SegTCPHeader},
		{"headers only prefix of a large packet", buildPacket(false, header.TCPFlagAck, ackOpts, make([]byte, 1000))[:64], 1072, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.size
			if size == 0 {
				size = len(tc.pkt)
			}
			s, err := parseSegment(tc.pkt, size)
			if got := segmentReason(err); got != tc.reason {
				t.Fatalf("reason = %v (%v), want %v", got, err, tc.reason)
			}
			if err == nil && s.ipHdrLen+s.tcpHdrLen+s.payloadLen != s.ipLen {
				t.Fatalf("lengths do not add up: %+v", s)
			}
		})
	}
}

func TestOptionsUsed(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    []byte
		want int
	}{
		{"none", nil, 0},
		{"gvisor syn", synOpts, 20},
		{"gvisor ack", ackOpts, 12},
		{"trailing nops", []byte{2, 4, 5, 0xb4, 1, 1, 1, 1}, 4},
		{"eol padding", []byte{2, 4, 5, 0xb4, 0, 0, 0, 0}, 4},
		{"eol then garbage", []byte{2, 4, 5, 0xb4, 0, 9, 9, 9}, 4},
		{"malformed length", []byte{2, 4, 5, 0xb4, 8, 1, 0, 0}, 8},
		{"length past end", []byte{8, 10, 0, 0}, 4},
	} {
		if got := optionsUsed(tc.o); got != tc.want {
			t.Errorf("%s: optionsUsed = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// ENO-3/ENO-18: the shim appends whole options after the existing ones;
// the result must be a valid packet a stack accepts.
func TestAppendOption(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v6       bool
		flags    header.TCPFlags
		opts     []byte
		payload  []byte
		opt      []byte
		mtu      int
		wantOpts []byte
		reason   SegmentReason
	}{
		{"v4 syn", false, header.TCPFlagSyn, synOpts, nil, []byte{69, 4, 0x21, 0x23}, 1500,
			append(append([]byte{}, synOpts...), 69, 4, 0x21, 0x23), 0},
		{"v6 synack odd", true, header.TCPFlagSyn | header.TCPFlagAck, synOpts, nil, []byte{69, 3, 0x23}, 1500,
			append(append([]byte{}, synOpts...), 1, 69, 3, 0x23), 0},
		{"v4 ack non-syn form", false, header.TCPFlagAck, ackOpts, nil, []byte{69, 2}, 1500,
			append(append([]byte{}, ackOpts...), 1, 1, 69, 2), 0},
		{"v4 data with payload", false, header.TCPFlagAck | header.TCPFlagPsh, ackOpts, []byte("init1 bytes"), []byte{69, 2}, 1500,
			append(append([]byte{}, ackOpts...), 1, 1, 69, 2), 0},
		{"reuse trailing nops", false, header.TCPFlagAck, []byte{2, 4, 5, 0xb4, 1, 1, 1, 1}, nil, []byte{69, 2}, 0,
			[]byte{2, 4, 5, 0xb4, 1, 1, 69, 2}, 0},
		{"no options", false, header.TCPFlagAck, nil, nil, []byte{69, 2}, 0, []byte{1, 1, 69, 2}, 0},
		{"too long", false, header.TCPFlagSyn, synOpts, nil, append([]byte{69, 22}, make([]byte, 20)...), 0, nil, SegNoOptionSpace},
		{"exactly 40", false, header.TCPFlagSyn, synOpts, nil, append([]byte{69, 20}, make([]byte, 18)...), 0,
			append(append([]byte{}, synOpts...), append([]byte{69, 20}, make([]byte, 18)...)...), 0},
		{"mtu", false, header.TCPFlagAck, ackOpts, make([]byte, 1448), []byte{69, 2}, 1500, nil, SegExceedsMTU},
		{"bad option length", false, header.TCPFlagAck, nil, nil, []byte{69, 3}, 0, nil, SegBadOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := buildPacket(tc.v6, tc.flags, tc.opts, tc.payload)
			orig := append([]byte(nil), pkt...)
			s, err := parseSegment(pkt, len(pkt))
			if err != nil {
				t.Fatal(err)
			}
			out, err := appendOption(pkt, &s, tc.opt, tc.mtu)
			if !bytes.Equal(pkt, orig) {
				t.Fatal("input packet modified")
			}
			if got := segmentReason(err); got != tc.reason {
				t.Fatalf("reason = %v (%v), want %v", got, err, tc.reason)
			}
			if err != nil {
				return
			}
			s2, err := parseSegment(out, len(out))
			if err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			if !bytes.Equal(s2.options(out), tc.wantOpts) {
				t.Errorf("options = % x, want % x", s2.options(out), tc.wantOpts)
			}
			if !checksumsValid(out, &s2) {
				t.Error("bad checksums")
			}
			if s2.payloadLen != len(tc.payload) || !bytes.Equal(out[s2.ipHdrLen+s2.tcpHdrLen:], tc.payload) {
				t.Error("payload changed")
			}
			if s2.flags != s.flags || s2.seq != s.seq || s2.ack != s.ack {
				t.Error("header fields changed")
			}
			if s2 != s {
				t.Errorf("returned segment %+v != reparsed %+v", s, s2)
			}
		})
	}
}

func TestStripPayload(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		pkt := buildPacket(v6, header.TCPFlagSyn, append(append([]byte{}, synOpts...), 1, 69, 3, 0x23), []byte("syn data"))
		s, err := parseSegment(pkt, len(pkt))
		if err != nil {
			t.Fatal(err)
		}
		out := stripPayload(pkt, &s)
		s2, err := parseSegment(out, len(out))
		if err != nil {
			t.Fatal(err)
		}
		if s2.payloadLen != 0 || !checksumsValid(out, &s2) || !bytes.Equal(s2.options(out), s.options(pkt)) {
			t.Errorf("v6=%v: bad stripped packet % x", v6, out)
		}
	}
}

// dropSACKPermitted turns exactly the SACK-permitted option into NOPs and
// keeps the packet valid; without one it changes nothing.
func TestDropSACKPermitted(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		opts := synOpts // MSS, SACK-permitted at 4, timestamps, NOP, window scale
		pkt := buildPacket(v6, header.TCPFlagSyn, opts, nil)
		s, err := parseSegment(pkt, len(pkt))
		if err != nil {
			t.Fatal(err)
		}
		if !dropSACKPermitted(pkt, &s) {
			t.Fatalf("v6=%v: SACK-permitted not found", v6)
		}
		want := append([]byte{}, opts...)
		want[4], want[5] = 1, 1
		if got := s.options(pkt); !bytes.Equal(got, want) || !checksumsValid(pkt, &s) {
			t.Errorf("v6=%v: options % x (checksums valid %v), want % x", v6, got, checksumsValid(pkt, &s), want)
		}
		before := append([]byte{}, pkt...)
		if dropSACKPermitted(pkt, &s) || !bytes.Equal(pkt, before) {
			t.Errorf("v6=%v: second drop found an option or changed the packet", v6)
		}
	}
}

func TestChecksumsValidDetectsCorruption(t *testing.T) {
	pkt := buildPacket(false, header.TCPFlagAck, ackOpts, []byte("payload"))
	s, _ := parseSegment(pkt, len(pkt))
	if !checksumsValid(pkt, &s) {
		t.Fatal("valid packet reported invalid")
	}
	pkt[len(pkt)-1] ^= 1
	if checksumsValid(pkt, &s) {
		t.Fatal("corrupted payload not detected")
	}
}

func TestSYNDataMustGo(t *testing.T) {
	for _, tc := range []struct {
		o    []byte
		want bool
	}{
		{synOpts, false},
		{append(append([]byte{}, synOpts...), 69, 2), true},
		{[]byte{0, 69, 2}, false}, // after EOL: not an option
		{[]byte{1, 69, 2}, true},
		{[]byte{253, 4, 0x45, 0x4e}, true}, // legacy ENO
		{[]byte{8, 1}, true},               // malformed area: cannot tell
	} {
		if got := synDataMustGo(tc.o); got != tc.want {
			t.Errorf("synDataMustGo(% x) = %v", tc.o, got)
		}
	}
}

func FuzzParseSegment(f *testing.F) {
	f.Add(buildPacket(false, header.TCPFlagSyn, synOpts, nil), []byte{69, 4, 0x21, 0x23})
	f.Add(buildPacket(true, header.TCPFlagSyn|header.TCPFlagAck, synOpts, nil), []byte{69, 3, 0x23})
	f.Add(buildPacket(false, header.TCPFlagAck, ackOpts, []byte("data")), []byte{69, 2})
	f.Add([]byte{0x45}, []byte{69, 2})
	f.Fuzz(func(t *testing.T, pkt, opt []byte) {
		s, err := parseSegment(pkt, len(pkt))
		if err != nil {
			var se *SegmentError
			if !errors.As(err, &se) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if s.ipHdrLen+s.tcpHdrLen+s.payloadLen != s.ipLen || s.ipLen > len(pkt) {
			t.Fatalf("inconsistent segment %+v for %d bytes", s, len(pkt))
		}
		_ = synDataMustGo(s.options(pkt))
		out, err := appendOption(pkt, &s, opt, 0)
		if err != nil {
			return
		}
		s2, err := parseSegment(out, len(out))
		if err != nil {
			t.Fatalf("appended packet does not parse: %v", err)
		}
		if !checksumsValid(out, &s2) {
			t.Fatal("appended packet has bad checksums")
		}
		o := s2.options(out)
		if !bytes.HasSuffix(o, opt) || len(o)%4 != 0 {
			t.Fatalf("options % x do not end with % x", o, opt)
		}
		st := stripPayload(out, &s2)
		if s3, err := parseSegment(st, len(st)); err != nil || s3.payloadLen != 0 {
			t.Fatalf("stripped packet: %v %+v", err, s3)
		}
	})
}

// splitSegment keeps the byte stream, the options and the last segment's
// FIN and PSH; each piece fits the MTU with valid checksums, and IPv4
// pieces get IDs of their own.
func TestSplitSegment(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		payload := bytes.Repeat([]byte("abcdefghij"), 150)
		b := buildPacket(v6, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin, ackOpts, payload)
		s, err := parseSegment(b, len(b))
		if err != nil {
			t.Fatal(err)
		}
		pieces := splitSegment(b, &s, 700)
		if len(pieces) != 3 {
			t.Fatalf("v6=%v: %d pieces, want 3", v6, len(pieces))
		}
		var stream []byte
		ids := map[uint16]bool{}
		for i, p := range pieces {
			ps, err := parseSegment(p, len(p))
			if err != nil || len(p) > 700 || !checksumsValid(p, &ps) || !bytes.Equal(ps.options(p), ackOpts) {
				t.Fatalf("v6=%v piece %d: %v, %d bytes", v6, i, err, len(p))
			}
			if ps.seq != s.seq+uint32(len(stream)) || ps.ack != s.ack {
				t.Fatalf("v6=%v piece %d: seq %d", v6, i, ps.seq)
			}
			last := i == len(pieces)-1
			if (ps.fin() || ps.flags&header.TCPFlagPsh != 0) != last {
				t.Fatalf("v6=%v piece %d: flags %v", v6, i, ps.flags)
			}
			if !v6 {
				ids[header.IPv4(p).ID()] = true
			}
			stream = append(stream, p[ps.ipHdrLen+ps.tcpHdrLen:]...)
		}
		if !bytes.Equal(stream, payload) {
			t.Fatalf("v6=%v: stream changed", v6)
		}
		if !v6 && len(ids) != len(pieces) {
			t.Fatal("IPv4 pieces share an ID")
		}
	}
	s, _ := parseSegment(buildPacket(false, header.TCPFlagAck, ackOpts, nil), 52)
	if splitSegment(buildPacket(false, header.TCPFlagAck, ackOpts, nil), &s, 40) != nil {
		t.Fatal("a segment without payload was split")
	}
}
