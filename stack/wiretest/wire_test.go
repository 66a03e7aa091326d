package wiretest

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// sink is a NetworkDispatcher recording delivered packets.
type sink struct {
	mu   sync.Mutex
	pkts [][]byte
	got  chan struct{}
}

func newSink() *sink { return &sink{got: make(chan struct{}, 1024)} }

func (s *sink) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer) {
	b := pkt.Data().AsRange().ToSlice()
	s.mu.Lock()
	s.pkts = append(s.pkts, b)
	s.mu.Unlock()
	s.got <- struct{}{}
}

func (s *sink) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gvstack.PacketBuffer) {}

func (s *sink) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		if len(s.pkts) >= n {
			out := append([][]byte(nil), s.pkts...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-s.got:
		case <-timeout:
			t.Fatalf("waited for %d packets", n)
		}
	}
}

// tcpPacket builds an IPv4 TCP packet with valid checksums, payload tagged
// with id.
func tcpPacket(src, dst string, flags header.TCPFlags, opts []byte, id uint32) []byte {
	payload := binary.BigEndian.AppendUint32(nil, id)
	tcpLen := header.TCPMinimumSize + len(opts)
	b := make([]byte, header.IPv4MinimumSize+tcpLen+len(payload))
	sa, da := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: 6,
		SrcAddr: tcpip.AddrFrom4(sa.As4()), DstAddr: tcpip.AddrFrom4(da.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(b[header.IPv4MinimumSize:])
	t.Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, SeqNum: 7, DataOffset: uint8(tcpLen), Flags: flags})
	copy(t[header.TCPMinimumSize:], opts)
	copy(t[tcpLen:], payload)
	x := header.PseudoHeaderChecksum(6, tcpip.AddrFrom4(sa.As4()), tcpip.AddrFrom4(da.As4()), uint16(len(t)))
	t.SetChecksum(^checksum.Checksum(t, x))
	return b
}

func send(ep *channel.Endpoint, b []byte) {
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	var l gvstack.PacketBufferList
	l.PushBack(pkt)
	ep.WritePackets(l)
	pkt.DecRef()
}

func idOf(b []byte) uint32 { return binary.BigEndian.Uint32(b[len(b)-4:]) }

func setup(t *testing.T) (*Hub, *Port, *Port, *channel.Endpoint, *sink) {
	before := runtime.NumGoroutine()
	a, b := channel.New(64, 1500, ""), channel.New(64, 1500, "")
	sb := newSink()
	b.Attach(sb)
	h, pa, pb := Pair(a, b)
	t.Cleanup(func() {
		h.Close()
		for range 100 {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("goroutines: %d > %d", runtime.NumGoroutine(), before)
	})
	return h, pa, pb, a, sb
}

func TestHubDeliversInOrder(t *testing.T) {
	_, _, _, a, sb := setup(t)
	for i := range 10 {
		send(a, tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagAck, nil, uint32(i)))
	}
	for i, p := range sb.wait(t, 10) {
		if idOf(p) != uint32(i) {
			t.Fatalf("packet %d has id %d", i, idOf(p))
		}
	}
}

func TestHubDropDupDelayBefore(t *testing.T) {
	h, pa, pb, a, sb := setup(t)
	h.SetHook(pa, pb, func(p *Packet) Verdict {
		switch idOf(p.Data) {
		case 0:
			return Verdict{Drop: true}
		case 1:
			return Verdict{Dup: 2}
		case 2:
			return Verdict{Delay: 50 * time.Millisecond}
		case 3:
			return Verdict{Before: [][]byte{tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagAck, nil, 99)}}
		}
		return Verdict{}
	})
	for i := range 4 {
		send(a, tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagAck, nil, uint32(i)))
	}
	var ids []uint32
	for _, p := range sb.wait(t, 6) {
		ids = append(ids, idOf(p))
	}
	want := []uint32{1, 1, 1, 99, 3, 2}
	if len(ids) != len(want) {
		t.Fatalf("ids %v", ids)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ids %v, want %v", ids, want)
		}
	}
	if h.Stats.Dropped.Load() != 1 || h.Stats.Duplicated.Load() != 2 || h.Stats.Delayed.Load() != 1 {
		t.Fatalf("stats dropped=%d dup=%d delayed=%d", h.Stats.Dropped.Load(), h.Stats.Duplicated.Load(), h.Stats.Delayed.Load())
	}
}

func TestHubDelayLineBounded(t *testing.T) {
	a, b := channel.New(64, 1500, ""), channel.New(64, 1500, "")
	b.Attach(newSink())
	h := New(Options{MaxDelayed: 2})
	pa, pb := h.Attach("a", a), h.Attach("b", b)
	h.Route(pa, netip.MustParsePrefix("0.0.0.0/0"), pb)
	h.SetHook(pa, pb, func(*Packet) Verdict { return Verdict{Delay: time.Hour} })
	h.Start()
	defer h.Close()
	for i := range 5 {
		send(a, tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagAck, nil, uint32(i)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats.Sent.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if h.Stats.Overflow.Load() != 3 || h.Stats.Delayed.Load() != 2 {
		t.Fatalf("overflow %d delayed %d", h.Stats.Overflow.Load(), h.Stats.Delayed.Load())
	}
}

func TestHubRoutesByLongestPrefix(t *testing.T) {
	a, b, c := channel.New(64, 1500, ""), channel.New(64, 1500, ""), channel.New(64, 1500, "")
	sb, sc := newSink(), newSink()
	b.Attach(sb)
	c.Attach(sc)
	h := New(Options{})
	pa, pb, pc := h.Attach("a", a), h.Attach("b", b), h.Attach("c", c)
	h.Route(pa, netip.MustParsePrefix("0.0.0.0/0"), pb)
	h.Route(pa, netip.MustParsePrefix("10.9.0.0/16"), pc)
	h.Start()
	defer h.Close()
	send(a, tcpPacket("10.0.0.1", "10.9.1.1", header.TCPFlagAck, nil, 1))
	send(a, tcpPacket("10.0.0.1", "10.8.1.1", header.TCPFlagAck, nil, 2))
	if idOf(sc.wait(t, 1)[0]) != 1 || idOf(sb.wait(t, 1)[0]) != 2 {
		t.Fatal("misrouted")
	}
	// No route back from b: counted, not delivered.
	send(b, tcpPacket("10.0.0.2", "10.0.0.1", header.TCPFlagAck, nil, 3))
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats.Unroutable.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("unroutable packet not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStripENOAndFlip(t *testing.T) {
	opts := []byte{2, 4, 5, 0xb4, 69, 4, 0x21, 0x23} // mss, ENO
	b := tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagSyn, opts, 5)
	s, ok := ParseTCP(b)
	if !ok || !s.SYNOnly() || len(s.ENO()) != 1 || !bytes.Equal(s.ENO()[0], []byte{69, 4, 0x21, 0x23}) {
		t.Fatalf("parse: %+v", s)
	}
	if !StripENO(b) {
		t.Fatal("nothing stripped")
	}
	s, _ = ParseTCP(b)
	if len(s.ENO()) != 0 || !validTCP(b, s) {
		t.Fatal("ENO left or checksum broken")
	}
	if StripENO(b) {
		t.Fatal("stripped twice")
	}
	h := FlipPayloadBit(func(Segment) bool { return true }, 1, 2)
	p := &Packet{Data: b}
	h(p)
	s, _ = ParseTCP(b)
	if s.Payload[1] != 4 || !validTCP(b, s) {
		t.Fatalf("flip: payload % x", s.Payload)
	}
	h(p) // only once
	if s.Payload[1] != 4 {
		t.Fatal("flipped twice")
	}
}

func validTCP(b []byte, s Segment) bool {
	t := b[s.ipHdr : s.ipHdr+s.tcpHdr+len(s.Payload)]
	src := tcpip.AddrFromSlice(s.Src.Addr().AsSlice())
	dst := tcpip.AddrFromSlice(s.Dst.Addr().AsSlice())
	x := header.PseudoHeaderChecksum(6, src, dst, uint16(len(t)))
	return checksum.Checksum(t, x) == 0xffff
}

func TestLossIsSeeded(t *testing.T) {
	count := func() int {
		h, n := Loss(0.3, 42), 0
		for range 1000 {
			if h(&Packet{}).Drop {
				n++
			}
		}
		return n
	}
	a, b := count(), count()
	if a != b || a < 200 || a > 400 {
		t.Fatalf("loss counts %d %d", a, b)
	}
}

func FuzzParseTCP(f *testing.F) {
	f.Add(tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagSyn, []byte{2, 4, 5, 0xb4, 69, 4, 0x21, 0x23}, 1))
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := ParseTCP(b)
		if !ok {
			return
		}
		_ = s.ENO()
		StripENO(b)
	})
}

// Offload cuts a super-packet as a host would: MSS-sized pieces with the
// header (options included) copied, sequence numbers advanced, FIN and PSH
// on the last piece only, full checksums; a wrong partial checksum is
// refused, and a packet without offload passes unchanged.
func TestOffload(t *testing.T) {
	opts := []byte{1, 1, 69, 2}
	b := tcpPacket("10.0.0.1", "10.0.0.2", header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin, opts, 0)
	payload := bytes.Repeat([]byte("0123456789"), 25)
	b = append(b[:len(b)-4], payload...)
	ip := header.IPv4(b)
	ip.SetTotalLength(uint16(len(b)))
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	tl := len(b) - header.IPv4MinimumSize
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 0, 1}), tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	header.TCP(b[header.IPv4MinimumSize:]).SetChecksum(header.PseudoHeaderChecksum(6, src, dst, uint16(tl)))
	gso := gvstack.GSO{Type: gvstack.GSOTCPv4, NeedsCsum: true, MSS: 100}
	segs, ok := Offload(b, gso)
	if !ok || len(segs) != 3 {
		t.Fatalf("Offload: %d segments, ok %v; want 3", len(segs), ok)
	}
	var got []byte
	for i, sb := range segs {
		s, ok := ParseTCP(sb)
		if !ok || !validTCP(sb, s) || !header.IPv4(sb).IsChecksumValid() || !bytes.Equal(s.Options, opts) {
			t.Fatalf("segment %d: parsed %v, options % x", i, ok, s.Options)
		}
		if s.Seq != 7+uint32(len(got)) {
			t.Fatalf("segment %d: seq %d", i, s.Seq)
		}
		last := i == len(segs)-1
		if (s.Flags&header.TCPFlagFin != 0) != last || (s.Flags&header.TCPFlagPsh != 0) != last {
			t.Fatalf("segment %d: flags %v", i, s.Flags)
		}
		got = append(got, s.Payload...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload changed")
	}
	header.TCP(b[header.IPv4MinimumSize:]).SetChecksum(0x1234)
	if _, ok := Offload(b, gso); ok {
		t.Fatal("a wrong partial checksum was accepted")
	}
	if segs, ok := Offload(b, gvstack.GSO{}); !ok || len(segs) != 1 || !bytes.Equal(segs[0], b) {
		t.Fatal("a packet without offload was changed")
	}
}
