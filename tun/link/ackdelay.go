package link

import (
	"encoding/binary"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ackHold delays pure ACKs that gVisor's TCP sends, for at most Options.AckDelay,
// so that a data segment of the same connection written meanwhile carries the
// acknowledgement instead.
//
// Why: gVisor's TCP acknowledges every batch of received segments at once
// (it has no delayed ACK). For request/response traffic the answer follows a
// few tens of µs later and carries the same acknowledgement, so the pure ACK
// is a TUN write, a trip through the kernel and, towards the other daemon, a
// TUN read and a pass through its stack, all for nothing: 3 of the 11 TUN
// packets of a relayed transaction. RFC 9293 §3.8.6.3 (RFC 1122 §4.2.3.2)
// allows delaying an ACK (up to 500 ms; we hold far less) provided at least
// every second full-sized segment is acknowledged: at most one ACK per
// connection is ever held, and a second pure ACK for it is written at once.
//
// What is held: IPv4 or IPv6 TCP segments with no payload, flags exactly ACK,
// and no options but timestamps (no SACK blocks: those report loss and must
// go at once). What supersedes a held ACK: a later segment of the same
// connection whose acknowledgement number is at least as far on; the held ACK
// is then dropped. A pure ACK repeating the held one's number (a duplicate
// ACK, which a sender counts for fast retransmit, or a window update) makes
// the held one go first, so no duplicate is ever lost.
type ackHold struct {
	e     *Endpoint
	delay time.Duration
	mu    sync.Mutex
	held  map[flowKey]heldAck // guarded by mu
	timer *time.Timer         // armed while held is not empty
}

// maxHeldAcks bounds the held ACKs (one per connection); beyond it, ACKs go
// out at once.
const maxHeldAcks = 4096

// flowKey is a TCP connection's addresses and ports as they appear in its
// packets (network byte order), IPv4 addresses zero-padded.
type flowKey struct {
	addrs [32]byte
	ports uint32
}

type heldAck struct {
	ack uint32
	pkt []byte // virtio header and the whole IP packet
}

func newAckHold(e *Endpoint, d time.Duration) *ackHold {
	h := &ackHold{e: e, delay: d, held: make(map[flowKey]heldAck)}
	h.timer = time.AfterFunc(time.Hour, h.flushAll)
	h.timer.Stop()
	return h
}

// tcpOf returns pkt's connection, acknowledgement number and whether it is a
// pure ACK that may be held; ok is false for anything but TCP over IP.
func tcpOf(pkt *stack.PacketBuffer) (k flowKey, ack uint32, hasAck, holdable, ok bool) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return k, 0, false, false, false
	}
	nh := pkt.NetworkHeader().Slice()
	th := pkt.TransportHeader().Slice()
	if len(th) < header.TCPMinimumSize || len(nh) == 0 {
		return k, 0, false, false, false
	}
	switch nh[0] >> 4 {
	case 4:
		if len(nh) < header.IPv4MinimumSize {
			return k, 0, false, false, false
		}
		copy(k.addrs[:], nh[12:20])
	case 6:
		if len(nh) < header.IPv6MinimumSize {
			return k, 0, false, false, false
		}
		copy(k.addrs[:], nh[8:40])
	default:
		return k, 0, false, false, false
	}
	k.ports = binary.BigEndian.Uint32(th[0:4])
	ack = binary.BigEndian.Uint32(th[8:12])
	flags := header.TCPFlags(th[13])
	hasAck = flags&header.TCPFlagAck != 0
	hlen := int(th[12]>>4) * 4
	opts := th[header.TCPMinimumSize:min(hlen, len(th))]
	onlyTS := len(opts) == 0 ||
		len(opts) == 12 && opts[0] == header.TCPOptionNOP && opts[1] == header.TCPOptionNOP &&
			opts[2] == header.TCPOptionTS && opts[3] == header.TCPOptionTSLength
	// (A pure ACK carries the endpoint's GSO options too; with no payload
	// it is never segmented.)
	holdable = flags == header.TCPFlagAck && pkt.Data().Size() == 0 && onlyTS && hlen == len(th)
	return k, ack, hasAck, holdable, true
}

// before is a sequence-number comparison: a precedes b (RFC 9293 §3.4).
func before(a, b uint32) bool { return int32(a-b) < 0 }

// admit decides about pkt before it is written: true means it was held and
// must not be written now. A held ACK it supersedes is dropped; one it does
// not is written first, under the lock, so the order on the wire is kept.
func (h *ackHold) admit(w *writer, pkt *stack.PacketBuffer, vh []byte) bool {
	k, ack, hasAck, holdable, ok := tcpOf(pkt)
	if !ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, had := h.held[k]
	if had {
		delete(h.held, k)
		if holdable && ack == prev.ack || !hasAck || before(ack, prev.ack) {
			// A duplicate (or anything not covering it): the held ACK
			// goes first.
			h.e.writeRaw(w, prev.pkt)
		} else {
			h.e.stats.txAcksCoalesced.Add(1)
		}
		if holdable {
			return false // the second ACK in a row goes out at once
		}
	}
	if !holdable || len(h.held) >= maxHeldAcks {
		return false
	}
	h.held[k] = heldAck{ack: ack, pkt: h.e.copyPacket(pkt, vh)}
	if len(h.held) == 1 {
		h.timer.Reset(h.delay)
	}
	return true
}

// flushAll writes every held ACK (the timer's end).
func (h *ackHold) flushAll() {
	w := h.e.writers.Get().(*writer)
	defer h.e.writers.Put(w)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, a := range h.held {
		delete(h.held, k)
		if !h.e.closed.Load() {
			h.e.writeRaw(w, a.pkt)
		}
	}
}

// stop drops whatever is held (the device is closing).
func (h *ackHold) stop() {
	h.timer.Stop()
	h.mu.Lock()
	clear(h.held)
	h.mu.Unlock()
}

// copyPacket copies the virtio header and pkt's bytes into one slice.
func (e *Endpoint) copyPacket(pkt *stack.PacketBuffer, vh []byte) []byte {
	b := make([]byte, 0, len(vh)+pkt.Size())
	b = append(b, vh...)
	views, skip := pkt.AsViewList()
	for view := views.Front(); view != nil; view = view.Next() {
		s := view.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		b = append(b, s[skip:]...)
		skip = 0
	}
	return b
}

// writeRaw writes a copied packet (copyPacket) and counts it; a failure
// counts as a write error (the ACK is lost, as on a lossy path).
func (e *Endpoint) writeRaw(w *writer, b []byte) {
	w.iov = append(w.iov[:0], b)
	err := e.rc.Write(w.writeFn)
	clear(w.iov)
	if err != nil || w.err != nil {
		w.err = nil
		e.stats.txErrors.Add(1)
		return
	}
	e.stats.txPackets.Add(1)
	e.stats.txBytes.Add(uint64(len(b) - virtioNetHdrLen))
}
