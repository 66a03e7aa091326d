package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// relayBufSize is the copy buffer of one plain relay direction. A copy
// into one of our stack's connections reads at most its writeSize, so each
// write leaves as one packet.
const relayBufSize = 64 << 10

var relayBufs = sync.Pool{New: func() any {
	b := make([]byte, relayBufSize)
	return &b
}}

// relayBufsOut counts the copy buffers plain relays hold right now (an idle
// relay holds none; tests check it).
var relayBufsOut atomic.Int64

// relayLeg is one side of a relay.
type relayLeg interface {
	io.Reader
	io.Writer
	CloseWrite() error // half-close: FIN (plain) or FINp + FIN (tcpcrypt)
	Close() error
	Abort() // reset (RST)
}

var (
	_ relayLeg   = (*Conn)(nil)
	_ readWaiter = (*netLeg)(nil)
	_ readWaiter = (*Conn)(nil)
	_ eofPeeker  = (*netLeg)(nil)
)

// netLeg adapts a net.Conn (a backend's kernel socket) to relayLeg.
type netLeg struct {
	net.Conn
	// lastFull: the last Read filled its buffer, so more data is likely
	// waiting and WaitRead skips its syscall (one per read, on the hot
	// path of a bulk download, otherwise). Only the relay direction
	// reading this leg touches it.
	lastFull bool
}

// Read reads from the socket and notes whether the buffer was filled.
func (l *netLeg) Read(b []byte) (int, error) {
	n, err := l.Conn.Read(b)
	l.lastFull = n == len(b) && n > 0
	return n, err
}

// CloseWrite half-closes if the connection supports it (*net.TCPConn,
// *net.UnixConn do); otherwise the direction stays open until Close.
func (l *netLeg) CloseWrite() error {
	if cw, ok := l.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// WaitRead implements readWaiter for kernel sockets: it waits in
// the runtime's poller for the socket to become readable, peeking (never
// consuming) to tell data or end of stream from "would block".
func (l *netLeg) WaitRead(idle func()) error {
	rc := l.raw()
	if rc == nil || l.lastFull {
		return nil
	}
	var one [1]byte
	idled := false
	rerr := rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EINTR {
			if !idled {
				idled = true
				idle()
			}
			return false // wait for readability
		}
		return true // data, EOF or an error: Read will tell
	})
	if rerr != nil && !errors.Is(rerr, net.ErrClosed) {
		return rerr
	}
	return nil
}

// PeekEOF implements eofPeeker for kernel sockets with a
// non-blocking one-byte peek. Data waiting counts as a full read, so the
// WaitRead that follows skips its own peek.
func (l *netLeg) PeekEOF() bool {
	rc := l.raw()
	if rc == nil {
		return false
	}
	var one [1]byte
	eof := false
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		eof = n == 0 && err == nil
		l.lastFull = n > 0
		return true
	})
	return eof
}

// readable reports whether a Read would not block: the last read filled
// its buffer (more is likely waiting; no syscall), or a non-blocking
// one-byte peek finds data, the end of stream or an error. True when it
// cannot tell (then Read blocks).
func (l *netLeg) readable() bool {
	if l.lastFull {
		return true
	}
	rc := l.raw()
	if rc == nil {
		return true
	}
	var one [1]byte
	ready := true
	_ = rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ready = err != unix.EAGAIN && err != unix.EINTR
		return true
	})
	return ready
}

// raw is the socket's raw descriptor access, nil if it has none.
func (l *netLeg) raw() syscall.RawConn {
	sc, ok := l.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Abort resets the connection where it can (SO_LINGER 0), else closes it.
func (l *netLeg) Abort() {
	if sl, ok := l.Conn.(interface{ SetLinger(int) error }); ok {
		_ = sl.SetLinger(0)
	}
	_ = l.Conn.Close()
}

// RelayError reports how a relay ended badly: which direction failed first
// and why (a tcpcrypt authentication failure, a reset, a truncation...).
type RelayError struct {
	Dir string // "inner->outer" or "outer->inner"
	Err error
}

func (e *RelayError) Error() string { return fmt.Sprintf("relay %s: %v", e.Dir, e.Err) }
func (e *RelayError) Unwrap() error { return e.Err }

// startRelay copies between inner and outer until both directions end,
// carrying half-closes across (a FIN read on one leg becomes CloseWrite on
// the other: application FIN <-> FINp). Any error (authentication failure,
// reset, truncation) aborts both legs with RST. It owns both legs and the
// table entry: once both directions have ended it closes the legs, removes
// e and calls done with the first error (a *RelayError) or nil. Cancelling
// ctx aborts the relay.
//
// It returns at once: the directions run on goroutines of their own, and
// the caller's goroutine (whose stack grew deep in the dial and the tcpcrypt
// handshake) can exit. A direction reading one of our stack's connections
// gives its goroutine up while idle (see tcpStream.suspend), so an idle
// relay between two of them holds no goroutine and no copy buffer; one
// reading a kernel socket keeps a parked goroutine.
func (s *Stack) startRelay(ctx context.Context, e *tableEntry, inner, outer relayLeg, done func(error)) {
	var once sync.Once
	aborted := make(chan struct{})
	abort := func() {
		once.Do(func() {
			inner.Abort()
			outer.Abort()
			close(aborted)
		})
	}
	stop := context.AfterFunc(ctx, abort)
	s.table.setAbort(e, abort)
	e.state.Store(uint32(StateRelaying))
	var first atomic.Pointer[RelayError]
	var running atomic.Int32
	running.Store(2)
	finish := func() {
		if !stop() { // abort was started by ctx: let it finish first
			<-aborted
		}
		var err error
		if re := first.Load(); re != nil {
			err = re
		} else {
			_ = inner.Close()
			_ = outer.Close()
		}
		s.finish(e, err)
		if done != nil {
			done(err)
		}
	}
	run := func(dir string, dst, src relayLeg, n *atomic.Uint64) {
		err := copyHalf(dst, src, n)
		if errors.Is(err, errSuspended) {
			return // src is idle; its wake-up runs this direction again
		}
		e.state.Store(uint32(StateClosing))
		if err != nil {
			// The first failure aborts both legs, which ends the other
			// direction too.
			if first.CompareAndSwap(nil, &RelayError{Dir: dir, Err: err}) {
				s.countRelayAbort(e, err)
			}
			abort()
		}
		if running.Add(-1) == 0 {
			finish()
		}
	}
	in2out := func() { run("inner->outer", outer, inner, &e.in2out) }
	out2in := func() { run("outer->inner", inner, outer, &e.out2in) }
	// A direction whose source is one of our stack's connections parks
	// without a goroutine while it has nothing to read (tcpStream.suspend);
	// one reading a kernel socket (a service's backend) keeps a goroutine.
	for _, d := range []struct {
		src relayLeg
		run func()
	}{{inner, in2out}, {outer, out2in}} {
		if c, ok := d.src.(*Conn); ok {
			c.setResume(d.run)
		}
	}
	s.work.Go(in2out)
	s.work.Go(out2in)
}

// limitRekeyFlood is the limit-log event of a relay aborted because the
// peer flooded rekey frames (tcpcrypt.ErrRekeyFlood).
const limitRekeyFlood = "tcpcrypt peer rekey flood: connection reset"

// countRelayAbort counts and logs a relay's first failure when it is a
// hostile-peer limit (both legs are being reset by the caller).
func (s *Stack) countRelayAbort(e *tableEntry, err error) {
	if errors.Is(err, tcpcrypt.ErrRekeyFlood) {
		s.counters.RekeyFloods.Add(1)
		s.limits.hit(limitRekeyFlood, "peer", e.info.Outer.Remote.String())
	}
}

// copyHalf copies src to dst until src ends, then half-closes dst. It
// returns nil only for a clean end of stream (io.EOF: a TCP FIN on a plain
// leg, an authenticated FINp on a tcpcrypt leg). No direction holds a copy
// buffer while its source has nothing to read.
func copyHalf(dst, src relayLeg, n *atomic.Uint64) error {
	switch {
	case isTCPCrypt(dst):
		// Towards a tcpcrypt leg, let it read straight into its frames
		// (tcpcrypt.Conn.ReadFromAndClose): no copy besides the AEAD's,
		// and FINp on the last data frame when src's end came with it.
		// While src has nothing to read, ReadFrom returns (errWouldBlock,
		// its buffer given back) and the direction waits or parks.
		cr := &countingReader{r: src, n: n}
		for {
			_, err := dst.(*Conn).tc.ReadFromAndClose(cr)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errWouldBlock) {
				return fmt.Errorf("copy: %w", err)
			}
			if err := cr.WaitRead(func() {}); err != nil {
				return waitError(err)
			}
		}
	case isTCPCrypt(src):
		// From a tcpcrypt leg, frames are opened in place and written to
		// dst from the receive buffer (tcpcrypt.Conn.WriteTo). While the
		// leg's stream has nothing to read, WriteTo returns (errWouldBlock,
		// its receive buffer given back) and the direction parks.
		c := src.(*Conn)
		for {
			_, err := c.tc.WriteTo(countingWriter{dst, n})
			if err == nil {
				break
			}
			if !errors.Is(err, errWouldBlock) {
				return fmt.Errorf("copy: %w", err)
			}
			if err := c.stream.WaitRead(func() {}); err != nil {
				return waitError(err)
			}
		}
	default:
		if err := copyPlain(dst, src, n); err != nil {
			return err
		}
	}
	if err := dst.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	return nil
}

// waitError is the error of a direction's wait for its source:
// errSuspended as it is (not a failure), others as read errors.
func waitError(err error) error {
	if errors.Is(err, errSuspended) {
		return err
	}
	return fmt.Errorf("read: %w", err)
}

func isTCPCrypt(l relayLeg) bool {
	c, ok := l.(*Conn)
	return ok && c.tc != nil
}

// copyPlain copies between two plain legs with a pooled buffer that it
// takes only once src has data and gives back whenever src would block.
func copyPlain(dst, src relayLeg, n *atomic.Uint64) error {
	rw, _ := src.(readWaiter)
	chunk := relayBufSize
	if c, ok := dst.(*Conn); ok && c.stream.writeSize > 0 {
		chunk = min(chunk, c.stream.writeSize)
	}
	var bp *[]byte
	release := func() {
		if bp != nil {
			relayBufs.Put(bp)
			relayBufsOut.Add(-1)
			bp = nil
		}
	}
	defer release()
	for {
		if rw != nil {
			if err := rw.WaitRead(release); err != nil {
				return waitError(err)
			}
		}
		if bp == nil {
			bp = relayBufs.Get().(*[]byte)
			relayBufsOut.Add(1)
		}
		nr, rerr := src.Read((*bp)[:chunk])
		if nr > 0 {
			nw, werr := dst.Write((*bp)[:nr])
			n.Add(uint64(nw))
			if werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if errors.Is(rerr, errWouldBlock) {
			continue // a relay-mode stream with nothing yet: wait again
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

// countingWriter counts the bytes written through it into n.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countingWriter) Write(b []byte) (int, error) {
	m, err := c.w.Write(b)
	c.n.Add(uint64(m))
	return m, err
}
