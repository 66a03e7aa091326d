package link

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpSeg builds a TCP/IPv4 segment as gVisor hands it to the link: host GSO
// options as on every segment of a connection, ack its acknowledgement
// number, opts its options (a multiple of 4 bytes).
func tcpSeg(t *testing.T, flags uint8, ack uint32, payload int, opts []byte) (*stack.PacketBuffer, []byte) {
	t.Helper()
	raw, off := pktSpec{proto: ipProtoTCP, payload: payload, tcpOpts: len(opts), csum: csumPartial, flags: flags}.build()
	binary.BigEndian.PutUint32(raw[off+8:], ack)
	copy(raw[off+tcpMinHdrLen:], opts)
	return gvisorPacket(t, raw, off, tcpMinHdrLen+len(opts), false, hostGSO(stack.GSOTCPv4, 1448)), raw
}

// timestamps is a TCP timestamps option as gVisor lays it out.
var timestamps = []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}

func writeSeg(t *testing.T, e *Endpoint, pkt *stack.PacketBuffer) {
	t.Helper()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	if n, err := e.WritePackets(l); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	l.DecRef()
}

// written reads what the endpoint wrote, until nothing more comes within
// wait; it returns the IP packets.
func written(t *testing.T, peer *os.File, wait time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 1<<16)
	for {
		peer.SetReadDeadline(time.Now().Add(wait))
		n, err := peer.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), buf[virtioNetHdrLen:n]...))
	}
}

func ackOf(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[ipv4MinHdrLen+8:]) }

func TestAckDelay(t *testing.T) {
	const long = time.Hour // the timer never fires within a case
	t.Run("data carries the held ACK", func(t *testing.T) {
		e, peer := newPairEndpoint(t, Options{AckDelay: long})
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, timestamps)))
		if got := written(t, peer, 20*time.Millisecond); len(got) != 0 {
			t.Fatalf("pure ACK written at once (%d packets)", len(got))
		}
		seg, data := tcpSeg(t, 0x18, 100, 64, timestamps)
		writeSeg(t, e, seg)
		got := written(t, peer, 20*time.Millisecond)
		if len(got) != 1 || len(got[0]) != len(data) {
			t.Fatalf("got %d packets, want only the data segment", len(got))
		}
		if s := e.Stats(); s.TXAcksCoalesced != 1 || s.TXPackets != 1 {
			t.Errorf("stats %+v, want 1 coalesced, 1 written", s)
		}
	})
	t.Run("every second ACK goes at once", func(t *testing.T) {
		e, peer := newPairEndpoint(t, Options{AckDelay: long})
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, nil)))
		writeSeg(t, e, must(tcpSeg(t, 0x10, 3000, 0, nil)))
		got := written(t, peer, 20*time.Millisecond)
		if len(got) != 1 || ackOf(got[0]) != 3000 {
			t.Fatalf("got %d packets, want the second ACK alone", len(got))
		}
	})
	t.Run("a duplicate ACK never replaces one", func(t *testing.T) {
		e, peer := newPairEndpoint(t, Options{AckDelay: long})
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, nil)))
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, nil)))
		if got := written(t, peer, 20*time.Millisecond); len(got) != 2 {
			t.Fatalf("got %d packets, want both duplicates", len(got))
		}
	})
	t.Run("not held", func(t *testing.T) {
		sack := []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2}
		for name, seg := range map[string]func() (*stack.PacketBuffer, []byte){
			"SACK":  func() (*stack.PacketBuffer, []byte) { return tcpSeg(t, 0x10, 100, 0, sack) },
			"FIN":   func() (*stack.PacketBuffer, []byte) { return tcpSeg(t, 0x11, 100, 0, nil) },
			"RST":   func() (*stack.PacketBuffer, []byte) { return tcpSeg(t, 0x14, 100, 0, nil) },
			"data":  func() (*stack.PacketBuffer, []byte) { return tcpSeg(t, 0x10, 100, 10, nil) },
			"other": func() (*stack.PacketBuffer, []byte) { return tcpSeg(t, 0x10, 100, 0, []byte{2, 4, 5, 180}) },
		} {
			e, peer := newPairEndpoint(t, Options{AckDelay: long})
			writeSeg(t, e, must(seg()))
			if got := written(t, peer, 20*time.Millisecond); len(got) != 1 {
				t.Errorf("%s: %d packets written, want 1 at once", name, len(got))
			}
		}
	})
	t.Run("held at most the delay", func(t *testing.T) {
		e, peer := newPairEndpoint(t, Options{AckDelay: 5 * time.Millisecond})
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, timestamps)))
		got := written(t, peer, 300*time.Millisecond)
		if len(got) != 1 || ackOf(got[0]) != 100 {
			t.Fatalf("got %d packets, want the held ACK", len(got))
		}
		if s := e.Stats(); s.TXAcksCoalesced != 0 || s.TXPackets != 1 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("off", func(t *testing.T) {
		e, peer := newPairEndpoint(t, Options{})
		writeSeg(t, e, must(tcpSeg(t, 0x10, 100, 0, timestamps)))
		writeSeg(t, e, must(tcpSeg(t, 0x18, 100, 64, timestamps)))
		if got := written(t, peer, 20*time.Millisecond); len(got) != 2 {
			t.Fatalf("got %d packets, want 2", len(got))
		}
	})
}

func must(pkt *stack.PacketBuffer, _ []byte) *stack.PacketBuffer { return pkt }
