package stack

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
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
// cleared) and cuts in two, each piece with the option, a segment the
// option would push over the MTU: never a segment without ENO while the
// negotiator wants one (RFC 8547 §4.6).
func TestShimWritePackets(t *testing.T) {
	var c Counters
	child := channel.New(16, testMTU, "")
	sh, neg := shimWithFlow(t, child, &c, false)
	small := buildPacket(false, header.TCPFlagAck|header.TCPFlagPsh, ackOpts, []byte("init1"))
	// A partial (pseudo-header only) checksum as with host GSO.
	partial := append([]byte(nil), small...)
	ps, _ := parseSegment(partial, len(partial))
	header.TCP(partial[ps.ipHdrLen:]).SetChecksum(0x1234)
	fullPayload := pattern(testMTU-20-20-len(ackOpts), "FULL|")
	full := buildPacket(false, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin, ackOpts, fullPayload)
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
	got := readAll(child)
	if len(got) != 3 {
		t.Fatalf("%d packets written, want 3 (the small one, the full one in two)", len(got))
	}
	b1 := got[0].b
	s1 := got[0].s
	if !bytes.HasSuffix(s1.options(b1), eno.NonSYNForm) || !checksumsValid(b1, &s1) || got[0].gso.Type != gvstack.GSONone {
		t.Fatalf("rewritten packet: opts % x, checksum ok %v, gso %v", s1.options(b1), checksumsValid(b1, &s1), got[0].gso.Type)
	}
	fs, _ := parseSegment(full, len(full))
	var stream []byte
	for i, g := range got[1:] {
		if len(g.b) > testMTU || !bytes.HasSuffix(g.s.options(g.b), eno.NonSYNForm) || !checksumsValid(g.b, &g.s) {
			t.Fatalf("piece %d: %d bytes, opts % x, checksum ok %v", i, len(g.b), g.s.options(g.b), checksumsValid(g.b, &g.s))
		}
		if g.s.seq != fs.seq+uint32(len(stream)) || g.s.ack != fs.ack {
			t.Fatalf("piece %d: seq %d ack %d, want %d %d", i, g.s.seq, g.s.ack, fs.seq+uint32(len(stream)), fs.ack)
		}
		last := i == len(got)-2
		if fin := g.s.flags&(header.TCPFlagFin|header.TCPFlagPsh) != 0; fin != last {
			t.Fatalf("piece %d: flags %v", i, g.s.flags)
		}
		stream = append(stream, g.b[g.s.ipHdrLen+g.s.tcpHdrLen:]...)
	}
	if !bytes.Equal(stream, fullPayload) {
		t.Fatal("the pieces do not carry the segment's payload")
	}
	if c.Rewrites.Load() != 2 || c.Split.Load() != 1 || c.NoRoom.Load() != 0 || neg.outgoing != 2 {
		t.Fatalf("rewrites %d, split %d, no-room %d, outgoing calls %d", c.Rewrites.Load(), c.Split.Load(), c.NoRoom.Load(), neg.outgoing)
	}
}

// shimWithFlow returns a shim over child with one active flow (10.0.0.1:1234
// to 10.0.0.2:80, or the IPv6 addresses) whose negotiator wants 45 02 on
// every segment.
func shimWithFlow(t *testing.T, child gvstack.LinkEndpoint, c *Counters, v6 bool) (*shim, *fakeNeg) {
	t.Helper()
	flows := newFlowTable(flowLimits{max: 8, halfOpen: time.Minute, unclaim: time.Minute}, time.Now, c, nil)
	sh := newShim(child, flows, c, time.Hour)
	t.Cleanup(sh.stopSweeper)
	neg := &fakeNeg{opt: eno.NonSYNForm}
	src, dst := v4src, v4dst
	if v6 {
		src, dst = v6src, v6dst
	}
	if _, err := flows.insert(gvstack.TransportEndpointID{LocalAddress: src, LocalPort: 1234, RemoteAddress: dst, RemotePort: 80}, flowActive, flowSpec{neg: neg}); err != nil {
		t.Fatal(err)
	}
	return sh, neg
}

type written struct {
	b   []byte
	s   segment
	gso gvstack.GSO
}

// readAll takes every packet the shim wrote to child.
func readAll(child *channel.Endpoint) []written {
	var out []written
	for {
		p := child.Read()
		if p == nil {
			return out
		}
		b := append([]byte(nil), p.ToView().AsSlice()...)
		s, _ := parseSegment(b, len(b))
		out = append(out, written{b: b, s: s, gso: p.GSOOptions})
		p.DecRef()
	}
}

// A GSO super-packet keeps its offload: the option goes into its header
// template, with a partial checksum the host can complete, and when the
// host's segments would then exceed the MTU the GSO segment size is
// lowered. Cut as the host would (wiretest.Offload), every segment carries
// the option, fits the MTU and has a valid checksum. Before the fix the
// super-packet left without the option.
func TestShimGSOSuperPacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("v6=%v/fullsize=%v", v6, full), func(t *testing.T) {
				var c Counters
				child := channel.New(16, testMTU, "")
				child.SupportedGSOKind = gvstack.HostGSOSupported
				sh, _ := shimWithFlow(t, child, &c, v6)
				ipHdr, typ := 20, gvstack.GSOTCPv4
				if v6 {
					ipHdr, typ = 40, gvstack.GSOTCPv6
				}
				// full: segments of exactly the MTU (peer MSS above
				// ours, no SACK), so the option cannot fit as it is.
				mss := testMTU - ipHdr - 20 - len(ackOpts)
				if !full {
					mss -= roomForENO
				}
				payload := pattern(5*mss+100, "SUPER|")
				b := buildPacket(v6, header.TCPFlagAck|header.TCPFlagPsh, ackOpts, payload)
				s, _ := parseSegment(b, len(b))
				header.TCP(b[s.ipHdrLen:]).SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, s.src, s.dst, uint16(s.ipLen-s.ipHdrLen)))
				var l gvstack.PacketBufferList
				l.PushBack(outPacket(b, gvstack.GSO{Type: typ, NeedsCsum: true, CsumOffset: 16, MSS: uint16(mss), L3HdrLen: uint16(ipHdr), MaxSize: 1 << 16}))
				pkts := l.AsSlice()
				if n, err := sh.WritePackets(l); n != 1 || err != nil {
					t.Fatalf("WritePackets = %d, %v", n, err)
				}
				pkts[0].DecRef()
				got := readAll(child)
				if len(got) != 1 || got[0].gso.Type != typ {
					t.Fatalf("%d packets written (want 1 super-packet)", len(got))
				}
				segs, ok := wiretest.Offload(got[0].b, got[0].gso)
				if !ok {
					t.Fatal("the host would reject the partial checksum")
				}
				var stream []byte
				for i, sb := range segs {
					ws, ok := wiretest.ParseTCP(sb)
					ss, _ := parseSegment(sb, len(sb))
					if !ok || len(sb) > testMTU || len(ws.ENO()) != 1 || !checksumsValid(sb, &ss) {
						t.Fatalf("segment %d: %d bytes, ENO %v, checksum ok %v", i, len(sb), ws.ENO(), checksumsValid(sb, &ss))
					}
					stream = append(stream, ws.Payload...)
				}
				if !bytes.Equal(stream, payload) {
					t.Fatal("the segments do not carry the super-packet's payload")
				}
				lowered := uint64(0)
				if full {
					lowered = 1
				}
				if c.GSOMSSLowered.Load() != lowered || c.NoRoom.Load() != 0 || c.Rewrites.Load() != 1 {
					t.Fatalf("gso-mss-lowered %d (want %d), no-room %d, rewrites %d", c.GSOMSSLowered.Load(), lowered, c.NoRoom.Load(), c.Rewrites.Load())
				}
			})
		}
	}
}

// A segment whose options area is full cannot carry ENO: it is dropped and
// counted (TCP retransmits it), never sent without the option.
func TestShimNoOptionSpaceDrops(t *testing.T) {
	var c Counters
	child := channel.New(16, testMTU, "")
	sh, _ := shimWithFlow(t, child, &c, false)
	fullOpts := append(append([]byte(nil), ackOpts...), 1, 1, 5, 26) // nop,nop,SACK with 3 blocks
	fullOpts = append(fullOpts, make([]byte, 24)...)
	b := buildPacket(false, header.TCPFlagAck, fullOpts, []byte("x"))
	var l gvstack.PacketBufferList
	l.PushBack(outPacket(b, gvstack.GSO{}))
	l.PushBack(outPacket(buildPacket(false, header.TCPFlagAck, ackOpts, nil), gvstack.GSO{}))
	pkts := l.AsSlice()
	if n, err := sh.WritePackets(l); n != 2 || err != nil {
		t.Fatalf("WritePackets = %d, %v (a dropped segment counts as written)", n, err)
	}
	for _, p := range pkts {
		p.DecRef()
	}
	got := readAll(child)
	if len(got) != 1 || got[0].s.payloadLen != 0 || !bytes.HasSuffix(got[0].s.options(got[0].b), eno.NonSYNForm) {
		t.Fatalf("%d packets written, want only the pure ACK, with ENO", len(got))
	}
	if c.NoRoom.Load() != 1 {
		t.Fatalf("no-room %d, want 1", c.NoRoom.Load())
	}
}
