package link

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// writer is the state of one WritePackets call, pooled so that concurrent callers
// (every TCP endpoint's goroutine) need no lock and no per-packet allocation.
type writer struct {
	vh      [virtioNetHdrLen]byte
	iov     [][]byte
	err     error
	writeFn func(fd uintptr) bool
}

func newWriter() *writer {
	w := &writer{iov: make([][]byte, 0, 8)}
	w.writeFn = w.write
	return w
}

// write is the raw-conn callback: one writev(2) of virtio header + packet. A TUN
// write is atomic; EAGAIN (no skb memory) parks in the poller until writable.
func (w *writer) write(fd uintptr) bool {
	for {
		_, err := unix.Writev(int(fd), w.iov)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case nil:
			w.err = nil
		default:
			w.err = err
		}
		return true
	}
}

// WritePackets implements stack.LinkWriter.WritePackets: one write per packet (a TUN
// has no multi-packet write), each with the virtio header from txHeader. Packets gVisor
// should never produce are dropped and counted; they count as written so the stack
// does not retry them. It stops at the first write error.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	if e.closed.Load() {
		return 0, &tcpip.ErrClosedForSend{}
	}
	w := e.writers.Get().(*writer)
	defer e.writers.Put(w)
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(w, pkt); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (e *Endpoint) writePacket(w *writer, pkt *stack.PacketBuffer) tcpip.Error {
	l3 := pkt.NetworkHeader().View().Size()
	l4 := pkt.TransportHeader().View().Size()
	vh, v := txHeader(txPacket{
		gso:        pkt.GSOOptions,
		l3Len:      l3,
		l4Len:      l4,
		l4Proto:    pkt.TransportProtocolNumber,
		payloadLen: pkt.Data().Size(),
	})
	if v != txOK {
		e.stats.txDrops[v].Add(1)
		return nil
	}
	vh.encode(w.vh[:])

	// Gather the packet's views, skipping the unused reserved header space.
	w.iov = append(w.iov[:0], w.vh[:])
	views, skip := pkt.AsViewList()
	size := 0
	for view := views.Front(); view != nil; view = view.Next() {
		s := view.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		s, skip = s[skip:], 0
		w.iov = append(w.iov, s)
		size += len(s)
	}

	err := e.rc.Write(w.writeFn)
	clear(w.iov) // do not keep packet memory alive in the pool
	if err != nil {
		// The descriptor is closed or closing.
		e.stats.txErrors.Add(1)
		return &tcpip.ErrClosedForSend{}
	}
	if w.err != nil {
		e.stats.txErrors.Add(1)
		err := w.err
		w.err = nil
		if errno, ok := err.(unix.Errno); ok {
			// EIO: the device is down; EINVAL: the kernel rejected the header.
			return tcpip.TranslateErrno(errno)
		}
		return &tcpip.ErrAborted{}
	}
	e.stats.txPackets.Add(1)
	e.stats.txBytes.Add(uint64(size))
	if vh.gsoType != virtioGSONone {
		e.stats.txGSO.Add(1)
	}
	return nil
}
