package link

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// Reader error handling: a failing read is retried after a pause, and the reader gives
// up (recording Err) after this many failures in a row, so a dead descriptor cannot
// spin a core.
const (
	rxMaxConsecutiveErrors = 100
	rxErrorPause           = 10 * time.Millisecond
)

// reader is the state of one reader goroutine. It is used only by that goroutine.
type reader struct {
	e   *Endpoint
	d   stack.NetworkDispatcher
	gro gro.GRO

	vh  [virtioNetHdrLen]byte
	iov [2][]byte
	// buf is the 64 KiB read buffer. We own it exclusively (refcount 1) until it is
	// handed to a PacketBuffer, so reading into its slice is safe despite View's
	// copy-on-write rule for shared chunks.
	buf *buffer.View

	n      int   // packets taken in the current wake-up
	err    error // read error seen inside readFn
	readFn func(fd uintptr) bool
}

// readLoop is the reader goroutine started by Attach. It exits when stopRX is set (by
// Attach(nil) or Close, which wake it with a read deadline), when the descriptor is
// closed, or after rxMaxConsecutiveErrors failed reads (Err then reports the last).
// It closes done on exit and nothing else.
func (e *Endpoint) readLoop(d stack.NetworkDispatcher, done chan struct{}) {
	defer close(done)
	r := &reader{e: e, d: d}
	r.gro.Init(e.gro)
	r.gro.Dispatcher = d
	r.readFn = r.read
	defer func() {
		if r.buf != nil {
			r.buf.Release()
		}
	}()

	failures := 0
	for !e.stopRX.Load() { // also checked here: a busy descriptor may never block
		r.n, r.err = 0, nil
		err := e.rc.Read(r.readFn)
		// A burst has ended (would block, burst limit, or error): release what GRO holds.
		r.gro.Flush()
		if err == nil {
			err = r.err
		}
		if err == nil {
			failures = 0
			continue
		}
		if e.stopRX.Load() || errors.Is(err, os.ErrClosed) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue // a stale stop deadline raced with a restart
		}
		e.stats.rxReadErrors.Add(1)
		failures++
		if failures >= rxMaxConsecutiveErrors {
			e.log.Error("TUN reads keep failing; reader stops", "dev", e.name, "err", err, "attempts", failures)
			e.rxErr.Store(&err)
			return
		}
		time.Sleep(rxErrorPause)
	}
}

// read is the raw-conn callback: it drains up to burst packets without blocking and
// reports true once it has taken at least one (or hit an error), false to park in
// the poller until the descriptor is readable.
func (r *reader) read(fd uintptr) bool {
	for r.n < r.e.burst {
		if r.buf == nil {
			r.buf = buffer.NewViewSize(rxBufSize)
		}
		r.iov[0], r.iov[1] = r.vh[:], r.buf.AsSlice()
		n, err := unix.Readv(int(fd), r.iov[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return r.n > 0
		case err != nil:
			r.err = os.NewSyscallError("readv", err)
			return true
		case n == 0:
			r.err = os.NewSyscallError("readv", unix.EIO) // a TUN never returns EOF
			return true
		}
		r.n++
		r.handle(n)
	}
	return true
}

// handle turns one read of n bytes (virtio header + packet) into a delivery.
func (r *reader) handle(n int) {
	e := r.e
	if n < virtioNetHdrLen {
		e.stats.rxDrops[rxDropShort].Add(1)
		return
	}
	pkt := r.buf.AsSlice()[:n-virtioNetHdrLen]
	m, v := inspectInbound(r.vh[:], pkt)
	if v != rxOK {
		e.stats.rxDrops[v].Add(1)
		return
	}
	pkt = pkt[:m.length]

	// The headers go into a chunk of their own (see rxHeaderSplit), the rest
	// into the read buffer handed over whole (large packets) or a copy.
	split := min(len(pkt), rxHeaderSplit)
	payload := buffer.MakeWithData(pkt[:split])
	switch {
	case len(pkt) > rxCopyMax:
		r.buf.CapLength(len(pkt))
		r.buf.TrimFront(split)
		payload.Append(r.buf)
		r.buf = nil
	case len(pkt) > split:
		payload.Append(buffer.NewViewWithData(pkt[split:]))
	}
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	pb.NetworkProtocolNumber = m.proto
	pb.RXChecksumValidated = m.csumOK

	e.stats.rxPackets.Add(1)
	e.stats.rxBytes.Add(uint64(len(pkt)))
	if m.completed {
		e.stats.rxCompleted.Add(1)
	}
	if m.unverified {
		e.stats.rxUnverified.Add(1)
	}
	if m.gso {
		// A super-packet is already coalesced: deliver it directly, after whatever GRO
		// holds, so a flow's segments stay in order.
		e.stats.rxGSO.Add(1)
		r.gro.Flush()
		r.d.DeliverNetworkPacket(m.proto, pb)
	} else {
		r.gro.Enqueue(pb)
	}
	pb.DecRef()
}
