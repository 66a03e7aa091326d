package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// relayBufSize is the copy buffer of one relay direction: a whole tcpcrypt
// frame's worth (frame.MaxCLen is 64 KiB), so each read can become one
// frame.
const relayBufSize = 64 << 10

var relayBufs = sync.Pool{New: func() any {
	b := make([]byte, relayBufSize)
	return &b
}}

// relayLeg is one side of a relay.
type relayLeg interface {
	io.Reader
	io.Writer
	CloseWrite() error // half-close: FIN (plain) or FINp + FIN (tcpcrypt)
	Close() error
	Abort() // reset (RST)
}

var _ relayLeg = (*Conn)(nil)

// netLeg adapts a net.Conn (a backend's kernel socket) to relayLeg.
type netLeg struct{ net.Conn }

// CloseWrite half-closes if the connection supports it (*net.TCPConn,
// *net.UnixConn do); otherwise the direction stays open until Close.
func (l netLeg) CloseWrite() error {
	if cw, ok := l.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Abort resets the connection where it can (SO_LINGER 0), else closes it.
func (l netLeg) Abort() {
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

// relay copies between inner and outer until both directions end, carrying
// half-closes across (a FIN read on one leg becomes CloseWrite on the
// other: application FIN <-> FINp). Any error (authentication failure,
// reset, truncation) aborts both legs with RST. relay owns both legs and
// the table entry: it runs its two copiers, waits for both, closes the
// legs and removes e. Cancelling ctx aborts the relay. It returns the
// first error, as a *RelayError.
func (s *Stack) relay(ctx context.Context, e *tableEntry, inner, outer relayLeg) error {
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
	defer func() {
		if !stop() { // abort was started by ctx: let it finish first
			<-aborted
		}
	}()
	s.table.setAbort(e, abort)
	e.state.Store(uint32(StateRelaying))
	type result struct {
		dir string
		err error
	}
	done := make(chan result, 2)
	go func() { done <- result{"inner->outer", copyHalf(outer, inner, &e.in2out)} }()
	go func() { done <- result{"outer->inner", copyHalf(inner, outer, &e.out2in)} }()
	var first error
	for range 2 {
		r := <-done
		e.state.Store(uint32(StateClosing))
		if r.err != nil && first == nil {
			first = &RelayError{Dir: r.dir, Err: r.err}
			abort()
		}
	}
	if first == nil {
		_ = inner.Close()
		_ = outer.Close()
	}
	s.finish(e, first)
	return first
}

// copyHalf copies src to dst until src ends, then half-closes dst. It
// returns nil only for a clean end of stream (io.EOF: a TCP FIN on a plain
// leg, an authenticated FINp on a tcpcrypt leg).
func copyHalf(dst, src relayLeg, n *atomic.Uint64) error {
	if c, ok := dst.(*Conn); ok && c.tc != nil {
		// Towards a tcpcrypt leg, let it read straight into its frames
		// (tcpcrypt.Conn.ReadFrom): no copy besides the AEAD's, and no
		// 64 KiB buffer held while the connection idles.
		if _, err := c.tc.ReadFrom(countingReader{src, n}); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		if err := dst.CloseWrite(); err != nil {
			return fmt.Errorf("close write: %w", err)
		}
		return nil
	}
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(uint64(nw))
			if werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
		}
		if errors.Is(rerr, io.EOF) {
			if err := dst.CloseWrite(); err != nil {
				return fmt.Errorf("close write: %w", err)
			}
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
}

// countingReader counts the bytes read through it into n, so the
// connection table shows bytes while a copy runs.
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countingReader) Read(b []byte) (int, error) {
	m, err := c.r.Read(b)
	c.n.Add(uint64(m))
	return m, err
}
