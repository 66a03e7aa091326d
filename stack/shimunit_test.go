package stack

import (
	"bytes"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// fakeNeg asks for an option on every segment and records calls.
type fakeNeg struct {
	opt      []byte
	outgoing int
}

func (f *fakeNeg) Outgoing(syn, ack bool) []byte { f.outgoing++; return f.opt }
func (f *fakeNeg) Incoming(bool, bool, []byte, int) bool {
	return false
}
func (f *fakeNeg) State() eno.State            { return eno.StateNegotiating }
func (f *fakeNeg) Result() (eno.Result, error) { return eno.Result{}, eno.ErrPending }

// outPacket makes an outgoing PacketBuffer from a built packet, as gVisor's
// TCP hands it to the link (headers pushed).
func outPacket(b []byte, gso gvstack.GSO) *gvstack.PacketBuffer {
	s, _ := parseSegment(b, len(b))
	hl := s.ipHdrLen + s.tcpHdrLen
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{ReserveHeaderBytes: hl, Payload: buffer.MakeWithData(b[hl:])})
	copy(pkt.TransportHeader().Push(s.tcpHdrLen), b[s.ipHdrLen:hl])
	copy(pkt.NetworkHeader().Push(s.ipHdrLen), b[:s.ipHdrLen])
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if s.v6 {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	pkt.GSOOptions = gso
	return pkt
}

// The shim grows segments that fit the MTU (full checksum, GSO options
// cleared) and sends the others unchanged, counting them.
func TestShimWritePackets(t *testing.T) {
	var c Counters
	child := channel.New(16, testMTU, "")
	flows := newFlowTable(flowLimits{max: 8, halfOpen: time.Minute, unclaim: time.Minute}, time.Now, &c, nil)
	sh := newShim(child, flows, &c, time.Hour)
	defer sh.stopSweeper()
	neg := &fakeNeg{opt: eno.NonSYNForm}
	s := segment{src: v4src, dst: v4dst, srcPort: 1234, dstPort: 80}
	if _, err := flows.insert(gvstack.TransportEndpointID{LocalAddress: s.src, LocalPort: 1234, RemoteAddress: s.dst, RemotePort: 80}, flowActive, flowSpec{neg: neg}); err != nil {
		t.Fatal(err)
	}
	small := buildPacket(false, header.TCPFlagAck|header.TCPFlagPsh, ackOpts, []byte("init1"))
	// A partial (pseudo-header only) checksum as with host GSO.
	partial := append([]byte(nil), small...)
	ps, _ := parseSegment(partial, len(partial))
	header.TCP(partial[ps.ipHdrLen:]).SetChecksum(0x1234)
	full := buildPacket(false, header.TCPFlagAck, ackOpts, make([]byte, testMTU-20-20-len(ackOpts)))
	var l gvstack.PacketBufferList
	for _, b := range [][]byte{partial, full} {
		l.PushBack(outPacket(b, gvstack.GSO{Type: gvstack.GSOTCPv4, NeedsCsum: true, MSS: 1448}))
	}
	pkts := l.AsSlice()
	if n, err := sh.WritePackets(l); n != 2 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	for _, p := range pkts {
		p.DecRef()
	}
	got1, got2 := child.Read(), child.Read()
	if got1 == nil || got2 == nil {
		t.Fatal("packets not written")
	}
	defer got1.DecRef()
	defer got2.DecRef()
	b1 := got1.ToView().AsSlice()
	s1, err := parseSegment(b1, len(b1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(s1.options(b1), eno.NonSYNForm) || !checksumsValid(b1, &s1) || got1.GSOOptions.Type != gvstack.GSONone {
		t.Fatalf("rewritten packet: opts % x, checksum ok %v, gso %v", s1.options(b1), checksumsValid(b1, &s1), got1.GSOOptions.Type)
	}
	if !bytes.Equal(got2.ToView().AsSlice(), full) {
		t.Fatal("full-sized segment changed")
	}
	if c.Rewrites.Load() != 1 || c.NoRoom.Load() != 1 || neg.outgoing != 2 {
		t.Fatalf("rewrites %d, no-room %d, outgoing calls %d", c.Rewrites.Load(), c.NoRoom.Load(), neg.outgoing)
	}
}
