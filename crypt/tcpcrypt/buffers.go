package tcpcrypt

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
)

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
// cleared first. The next read takes a buffer of the same size again. It
// runs when a stream read times out with nothing buffered, so a caller
// that waits for the stream itself (a relay polling with a deadline, or a
// stream that reports "would block" as a timeout) leaves an idle Conn
// holding no buffer.
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
// written to w straight from the receive buffer. The data of frames already
// whole in the buffer go out in one write (see coalesceLocked). It returns
// nil after the authenticated FINp, like io.Copy at EOF; errors are Read's
// (ErrTruncated, ErrAuth, ErrAborted) or w's. A stream read that times out
// (a net.Error with Timeout) is returned as it is and leaves the Conn
// usable, the partial frame kept; with nothing buffered the receive buffer
// goes back to the pool first, so the caller can wait for the stream
// without the Conn holding memory, then call WriteTo again.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
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
			if err := c.readFrameLocked(); err != nil {
				if isTimeout(err) {
					c.releaseReadBufLocked()
				}
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
