package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/tun/internal/nstest"
)

// These tests run the endpoint's I/O without a TUN device: one end of a SOCK_SEQPACKET
// socket pair stands in for the TUN descriptor (it keeps message boundaries, so each
// read is one virtio header + packet), the test plays the kernel on the other end.

func newPairEndpoint(t *testing.T, opts Options) (*Endpoint, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds { // room for a burst of super-packets
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	e, err := NewFromFile(os.NewFile(uintptr(fds[0]), "pair"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	t.Cleanup(e.Close)
	return e, peer
}

// recorder is a stack.NetworkDispatcher that keeps copies of what it is given.
type recorder struct {
	mu   sync.Mutex
	pkts []delivered
}

type delivered struct {
	proto     tcpip.NetworkProtocolNumber
	data      []byte
	validated bool
}

func (r *recorder) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	r.mu.Lock()
	r.pkts = append(r.pkts, delivered{p, v.ToSlice(), pkt.RXChecksumValidated})
	r.mu.Unlock()
}

func (*recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *recorder) got() []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivered(nil), r.pkts...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func send(t *testing.T, peer *os.File, h virtioHdr, pkt []byte) {
	t.Helper()
	if _, err := peer.Write(append(vhdr(h), pkt...)); err != nil {
		t.Fatal(err)
	}
}

func tcpPayload(pkt []byte, l4Off int) []byte {
	return pkt[l4Off+int(pkt[l4Off+12]>>4)*4:]
}

func TestReaderBurstGROAndDrops(t *testing.T) {
	for _, disableGRO := range []bool{false, true} {
		name := "GRO"
		if disableGRO {
			name = "noGRO"
		}
		t.Run(name, func(t *testing.T) {
			nstest.CheckLeaks(t, "tun/link.")
			e, peer := newPairEndpoint(t, Options{DisableGRO: disableGRO})

			// Queue a whole burst before attaching, so one wake-up reads it all.
			const segs, segLen = 8, 1000
			var flowA []byte
			for i := range segs {
				pkt, l4Off := pktSpec{proto: ipProtoTCP, payload: segLen, tcpOpts: 12, seq: uint32(1000 + i*segLen), csum: csumPartial}.build()
				flowA = append(flowA, tcpPayload(pkt, l4Off)...)
				send(t, peer, partialHdr(l4Off, ipProtoTCP), pkt)
			}
			super, superOff := pktSpec{v6: true, proto: ipProtoTCP, payload: 40000, csum: csumPartial}.build()
			send(t, peer, tsoHdr(true, superOff, 1428), super)
			icmp, icmpOff := pktSpec{proto: 1, payload: 56, csum: csumPartial}.build()
			send(t, peer, partialHdr(icmpOff, 1), icmp)
			bad, _ := pktSpec{proto: ipProtoTCP, payload: 10, csum: csumBad}.build()
			send(t, peer, virtioHdr{}, bad)
			udp, udpOff := pktSpec{proto: ipProtoUDP, payload: 3000, csum: csumPartial}.build()
			uh := partialHdr(udpOff, ipProtoUDP)
			uh.gsoType, uh.gsoSize = virtioGSOUDPL4, 1000
			send(t, peer, uh, udp)
			if _, err := peer.Write([]byte{1, 2, 3}); err != nil {
				t.Fatal(err)
			}

			rec := &recorder{}
			e.Attach(rec)
			waitFor(t, "all reads handled", func() bool {
				s := e.Stats()
				return s.RXPackets+s.RXDrops() == segs+5
			})
			s := e.Stats()
			if s.RXDropChecksum != 1 || s.RXDropUnsupportedGSO != 1 || s.RXDropShort != 1 || s.RXGSOPackets != 1 || s.RXCompleted != 1 {
				t.Errorf("stats = %+v", s)
			}

			got := rec.got()
			wantN := 3 // flow A coalesced, the super-packet, ICMP
			if disableGRO {
				wantN = segs + 2
			}
			if len(got) != wantN {
				t.Fatalf("%d deliveries, want %d", len(got), wantN)
			}
			// Flow A's bytes arrive in order, before the super-packet (GRO is flushed first).
			var a []byte
			for _, d := range got[:wantN-2] {
				if d.proto != header.IPv4ProtocolNumber || !d.validated {
					t.Errorf("flow A delivery proto %d validated %v", d.proto, d.validated)
				}
				if int(binary.BigEndian.Uint16(d.data[2:])) != len(d.data) {
					t.Errorf("IP total length %d for %d bytes", binary.BigEndian.Uint16(d.data[2:]), len(d.data))
				}
				a = append(a, tcpPayload(d.data, 20)...)
			}
			if !bytes.Equal(a, flowA) {
				t.Error("flow A payload differs")
			}
			if d := got[wantN-2]; d.proto != header.IPv6ProtocolNumber || !bytes.Equal(d.data, super) {
				t.Error("super-packet not delivered unsplit and unchanged")
			}
			if d := got[wantN-1]; !transportChecksumOK(d.data, false, 1, icmpOff) {
				t.Error("ICMP checksum not completed")
			}
		})
	}
}

// gvisorPacket builds an outbound PacketBuffer the way gVisor's stack does: payload
// in (here two) views, transport and network headers pushed into reserved space.
func gvisorPacket(t *testing.T, raw []byte, l4Off, l4Len int, v6 bool, gso stack.GSO) *stack.PacketBuffer {
	t.Helper()
	payload := raw[l4Off+l4Len:]
	buf := buffer.MakeWithData(payload[:len(payload)/2])
	if rest := payload[len(payload)/2:]; len(rest) > 0 {
		if err := buf.Append(buffer.NewViewWithData(rest)); err != nil {
			t.Fatal(err)
		}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buf})
	copy(pkt.TransportHeader().Push(l4Len), raw[l4Off:l4Off+l4Len])
	copy(pkt.NetworkHeader().Push(l4Off), raw[:l4Off])
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if v6 {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	pkt.GSOOptions = gso
	return pkt
}

func TestWritePackets(t *testing.T) {
	nstest.CheckLeaks(t, "tun/link.")
	e, peer := newPairEndpoint(t, Options{})

	super, superOff := pktSpec{proto: ipProtoTCP, payload: 60000, tcpOpts: 12, csum: csumPartial}.build()
	ack, ackOff := pktSpec{v6: true, proto: ipProtoTCP, tcpOpts: 12, csum: csumPartial}.build()
	var pkts stack.PacketBufferList
	pkts.PushBack(gvisorPacket(t, super, superOff, 32, false, hostGSO(stack.GSOTCPv4, 1448)))
	pkts.PushBack(gvisorPacket(t, ack, ackOff, 32, true, hostGSO(stack.GSOTCPv6, 1428)))
	n, err := e.WritePackets(pkts)
	pkts.DecRef()
	if n != 2 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}

	want := []struct {
		h   virtioHdr
		pkt []byte
	}{
		{virtioHdr{flags: virtioFlagNeedsCsum, gsoType: virtioGSOTCPv4, gsoSize: 1448, csumStart: 20, csumOffset: 16, hdrLen: 52}, super},
		{virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 40, csumOffset: 16, hdrLen: 72}, ack},
	}
	buf := make([]byte, 1<<17)
	for i, w := range want {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := decodeVirtioHdr(buf[:n])
		if h != w.h || !bytes.Equal(buf[virtioNetHdrLen:n], w.pkt) {
			t.Errorf("write %d: header %v, %d bytes; want %v, %d bytes", i, h, n-virtioNetHdrLen, w.h, len(w.pkt))
		}
	}
	if s := e.Stats(); s.TXPackets != 2 || s.TXGSOPackets != 1 || s.TXBytes != uint64(len(super)+len(ack)) {
		t.Errorf("stats = %+v", s)
	}

	// A packet gVisor should never produce is dropped, counted, and not written.
	var bad stack.PacketBufferList
	bad.PushBack(gvisorPacket(t, super, superOff, 32, false, stack.GSO{Type: stack.GSOTCPv4, MSS: 1448}))
	if n, err := e.WritePackets(bad); n != 1 || err != nil {
		t.Errorf("WritePackets(bad) = %d, %v", n, err)
	}
	bad.DecRef()
	if s := e.Stats(); s.TXDropNoCsum != 1 || s.TXPackets != 2 {
		t.Errorf("stats after bad packet = %+v", s)
	}
}

func TestLifecycle(t *testing.T) {
	nstest.CheckLeaks(t, "tun/link.")
	e, peer := newPairEndpoint(t, Options{})
	closed := 0
	e.SetOnCloseAction(func() { closed++ })

	pkt, l4Off := pktSpec{proto: ipProtoTCP, payload: 10, csum: csumPartial}.build()
	r1 := &recorder{}
	e.Attach(r1)
	if !e.IsAttached() {
		t.Fatal("not attached")
	}
	e.Attach(&recorder{}) // already attached: ignored
	send(t, peer, partialHdr(l4Off, ipProtoTCP), pkt)
	waitFor(t, "first delivery", func() bool { return len(r1.got()) == 1 })

	e.Attach(nil) // stops the reader and waits for it
	e.Wait()
	if e.IsAttached() {
		t.Fatal("still attached")
	}
	send(t, peer, partialHdr(l4Off, ipProtoTCP), pkt)
	time.Sleep(50 * time.Millisecond)
	if len(r1.got()) != 1 {
		t.Fatal("delivery after Attach(nil)")
	}

	r2 := &recorder{}
	e.Attach(r2) // a new reader picks up the queued packet
	waitFor(t, "delivery after re-attach", func() bool { return len(r2.got()) == 1 })

	e.Close()
	e.Close()
	if closed != 1 {
		t.Errorf("close action ran %d times", closed)
	}
	var pkts stack.PacketBufferList
	pkts.PushBack(gvisorPacket(t, pkt, l4Off, 20, false, stack.GSO{}))
	if _, err := e.WritePackets(pkts); !errors.Is(tcpipErr(err), errClosedForSend) {
		t.Errorf("write after Close: %v", err)
	}
	pkts.DecRef()
	e.Attach(&recorder{}) // after Close: ignored, starts nothing
	if e.IsAttached() {
		t.Error("attached after Close")
	}
	if e.Err() != nil {
		t.Errorf("Err after orderly close = %v", e.Err())
	}
}

var errClosedForSend = errors.New("closed for send")

func tcpipErr(err tcpip.Error) error {
	if _, ok := err.(*tcpip.ErrClosedForSend); ok {
		return errClosedForSend
	}
	return nil
}

// TestReaderStopsOnDeadDescriptor: reads that keep failing (the peer is gone, so
// every read returns 0) end the reader after rxMaxConsecutiveErrors attempts
// instead of spinning, and Err reports why.
func TestReaderStopsOnDeadDescriptor(t *testing.T) {
	nstest.CheckLeaks(t, "tun/link.")
	e, peer := newPairEndpoint(t, Options{})
	e.Attach(&recorder{})
	peer.Close()
	e.Wait()
	if e.Err() == nil {
		t.Fatal("Err is nil after the reader gave up")
	}
	if s := e.Stats(); s.RXReadErrors != rxMaxConsecutiveErrors {
		t.Errorf("read errors = %d", s.RXReadErrors)
	}
}

func TestNewFromFileRejects(t *testing.T) {
	if _, err := NewFromFile(nil, Options{MTU: 1500}); err == nil {
		t.Error("nil file accepted")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0) // blocking
	if err != nil {
		t.Fatal(err)
	}
	blocking := os.NewFile(uintptr(fds[0]), "blocking")
	defer blocking.Close()
	defer unix.Close(fds[1])
	if _, err := NewFromFile(blocking, Options{MTU: 1500}); err == nil {
		t.Error("blocking descriptor accepted")
	}
	if _, err := NewFromFile(blocking, Options{MTU: 20}); err == nil {
		t.Error("MTU 20 accepted")
	}
}
