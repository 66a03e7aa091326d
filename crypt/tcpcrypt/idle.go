package tcpcrypt

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
)

// ReadWaiter is implemented by streams, and by sources given to ReadFrom,
// that can wait until a Read would not block without being handed a buffer.
// A Conn uses it so that a connection with nothing to read holds no buffer:
// a relay of thousands of idle connections then costs little memory.
type ReadWaiter interface {
	// WaitRead returns once a Read would return data, end of stream or an
	// error without blocking, or the stream has been closed. If it has to
	// block, it first calls idle, once. It may also return nil at once and
	// leave the waiting to Read (then the caller's buffer is held while
	// Read blocks). It does not observe read deadlines: Conn uses it only
	// in WriteTo and ReadFrom, the relay's paths, never in Read.
	WaitRead(idle func()) error
}

// ErrSuspended may be returned by a ReadWaiter's WaitRead instead of
// blocking (after calling idle): WriteTo and ReadFrom then return it at once,
// with the bytes moved so far, and the connection stays usable. The
// ReadWaiter's owner calls them again once the stream is readable. A relay
// uses it to park an idle connection without a goroutine.
var ErrSuspended = errors.New("tcpcrypt: read wait suspended")

// EOFPeeker is a source for ReadFromAndClose that can tell, without
// blocking and without consuming anything, that it has reached its end.
type EOFPeeker interface {
	// PeekEOF reports whether the next Read would return io.EOF at once.
	// False when more data is waiting, may still come, or it cannot tell.
	PeekEOF() bool
}

// Buffers of ReadFrom and of the receive side, pooled by capacity so that
// connections that go idle return theirs and busy ones do not allocate. Only
// a few capacities occur (powers of two from 4 KiB, and the largest frame
// plus slack per AEAD); others are left to the garbage collector. Lookups
// take no lock: a relay gets a buffer each time a source wakes up.
var (
	bufPools    sync.Map // int (capacity) -> *sync.Pool
	bufPoolKeys atomic.Int32
)

const (
	maxPooledBuf   = 128 << 10
	maxBufPoolKeys = 32
)

func poolFor(size int, create bool) *sync.Pool {
	if p, ok := bufPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	if !create || size > maxPooledBuf || bufPoolKeys.Load() >= maxBufPoolKeys {
		return nil
	}
	p, loaded := bufPools.LoadOrStore(size, &sync.Pool{})
	if !loaded {
		bufPoolKeys.Add(1)
	}
	return p.(*sync.Pool)
}

// getBuf returns a buffer of length and capacity size (contents undefined).
func getBuf(size int) []byte {
	if p := poolFor(size, false); p != nil {
		if bp, ok := p.Get().(*[]byte); ok {
			return (*bp)[:size]
		}
	}
	return make([]byte, size)
}

// putBuf gives b back for reuse. The caller has cleared any plaintext in
// it and keeps no reference.
func putBuf(b []byte) {
	if p := poolFor(cap(b), true); p != nil {
		b = b[:cap(b)]
		p.Put(&b)
	}
}

// releaseReadBufLocked returns the receive buffer to the pool when it holds
// no unopened bytes (an idle connection): the opened plaintext in it is
// cleared first. The next read takes a buffer of the same size again.
func (c *Conn) releaseReadBufLocked() {
	in := &c.in
	if in.r != in.w || len(in.plain) > 0 || cap(in.buf) == 0 {
		return
	}
	clear(in.buf[:in.w])
	in.lastCap = cap(in.buf)
	putBuf(in.buf)
	in.buf, in.r, in.w, in.plain = nil, 0, 0, nil
}

// coalesceLocked opens the frames that follow in.plain whole in the
// buffer and moves their data down over the headers and tags in between,
// so that in.plain holds them all, up to limit bytes: a relay writes many
// small frames (a sender that seals whatever it has, several streams
// sharing a link) as one write, one packet, instead of one per frame; the
// price is one copy of the later frames' data, paid only when frames are
// small (a full-size frame never has company within limit). It stops at
// FINp, and on an error (sticky in in.err, the stream aborted)
// leaves in.plain as it was, so the data already authenticated is still
// delivered before the error.
func (c *Conn) coalesceLocked(limit int) {
	in := &c.in
	buf := in.buf[:cap(in.buf)]
	for !in.eof && in.err == nil && len(in.plain) > 0 {
		n, ok := frame.FrameLen(buf[in.r:in.w])
		if !ok || in.w-in.r < n || len(in.plain)+n-frame.DataOffset(false)-c.aead.Overhead > limit {
			return
		}
		// in.plain aliases buf up to its end (frames are opened in
		// place); find where it starts, and check rather than trust it.
		start := cap(buf) - cap(in.plain)
		if start < 0 || start >= in.r || &buf[start] != &in.plain[0] {
			return
		}
		end := start + len(in.plain)
		if err := c.openLocked(buf[in.r : in.r+n]); err != nil {
			in.plain = buf[start:end]
			return
		}
		in.plain = buf[start : end+copy(buf[end:], in.plain)]
	}
}

// WriteTo implements io.WriterTo, for io.Copy out of a Conn (the relay's
// tcpcrypt-to-plain direction): frames are opened in place and their data
// written to w straight from the receive buffer, and while the stream has
// nothing to read (if it is a ReadWaiter) the Conn holds no buffer at all.
// The data of frames already whole in the buffer go out in one write (see
// coalesceLocked). It returns nil after the authenticated FINp, like
// io.Copy at EOF; errors are Read's (ErrTruncated, ErrAuth, ErrAborted) or
// w's.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	rw, _ := c.stream.(ReadWaiter)
	var total int64
	c.in.Lock()
	defer c.in.Unlock()
	for {
		for len(c.in.plain) == 0 {
			if err := c.readEndLocked(); err != nil {
				if err == io.EOF {
					err = nil // io.WriterTo: end of stream is no error
				}
				return total, err
			}
			if rw != nil && c.in.r == c.in.w && c.in.deferred == nil {
				if err := rw.WaitRead(c.releaseReadBufLocked); err != nil {
					if errors.Is(err, ErrSuspended) {
						return total, err // not an error of the stream
					}
					return total, c.streamReadError(err)
				}
			}
			if err := c.readFrameLocked(); err != nil {
				return total, err
			}
			c.coalesceLocked(c.maxData)
		}
		// The receive lock is held across w.Write: plain aliases the
		// buffer, and WriteTo is the only reader of a relayed Conn.
		n, err := w.Write(c.in.plain)
		total += int64(n)
		c.in.plain = c.in.plain[n:]
		if err != nil {
			return total, err
		}
	}
}
