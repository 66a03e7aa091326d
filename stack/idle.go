package stack

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
)

// Idle parking of relays. A relay of thousands of idle connections should
// cost little memory: a direction with nothing to read holds no buffer
// and, when its source is one of our stack's connections, no goroutine
// either. The parking is the relay's business, done here; tcpcrypt.Conn
// only offers plain primitives: ReadFrom and WriteTo return a source's or
// stream's timeout error as it is, keep the connection usable, and hold no
// buffer once they have returned with nothing buffered.
//
// The pieces: a source that can wait for readability without a buffer
// (readWaiter), a stream in relay mode whose Read reports "nothing to read
// yet" as errWouldBlock instead of blocking (tcpStream.setResume), and a
// direction that parks without a goroutine (errSuspended) until the
// stream's wake-up runs it again.

// readWaiter is implemented by relay sources that can wait until a Read
// would not block without being handed a buffer.
type readWaiter interface {
	// WaitRead returns once a Read would return data, end of stream or an
	// error without blocking, or the source has been closed. If it has to
	// block, it first calls idle, once. It may also return nil at once and
	// leave the waiting to Read. A source in relay mode (see
	// tcpStream.resume) does not block: it arms its wake-up and returns
	// errSuspended.
	WaitRead(idle func()) error
}

// errSuspended is returned by a relay-mode source's WaitRead instead of
// blocking: the direction returns at once, and the source's wake-up runs
// it again once the source is readable.
var errSuspended = errors.New("stack: relay direction suspended")

// errWouldBlock is a relay-mode stream's Read with nothing to read yet.
// It is a timeout (net.Error), which tcpcrypt.Conn's ReadFrom and WriteTo
// return as it is, keeping the connection usable; the relay then waits
// (WaitRead) and calls them again.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "stack: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Is makes errWouldBlock an os.ErrDeadlineExceeded too: a deadline that
// has already passed, in net.Conn's terms.
func (wouldBlock) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// eofPeeker is a relay source that can tell, without blocking and without
// consuming anything, that it has reached its end.
type eofPeeker interface {
	// PeekEOF reports whether the next Read would return io.EOF at once.
	// False when more data is waiting, may still come, or it cannot tell.
	PeekEOF() bool
}

// peekEOFLimit bounds the bytes a relay direction into a tcpcrypt leg moves
// while it still asks its source whether the end has come after each
// short read (see countingReader): a request or response gains a frame,
// and a bulk stream does not pay a peek per read for one frame at its end.
const peekEOFLimit = 64 << 10

// countingReader is a relay source as a tcpcrypt.Conn's ReadFrom sees it.
// It counts the bytes read into n, so the connection table shows bytes
// while a copy runs; reports "nothing to read yet" as errWouldBlock
// (relay-mode streams do that themselves; a kernel socket is asked with a
// peek), so that ReadFrom returns and gives its buffer back while the
// source idles; and, after a short read of the first peekEOFLimit bytes,
// returns the data with io.EOF when the source's end is already there, so
// that ReadFromAndClose puts FINp on the last data frame.
type countingReader struct {
	r      io.Reader
	n      *atomic.Uint64
	peeked int64 // bytes read while peeking for the end
}

func (c *countingReader) Read(b []byte) (int, error) {
	if l, ok := c.r.(*netLeg); ok && !l.readable() {
		return 0, errWouldBlock
	}
	m, err := c.r.Read(b)
	c.n.Add(uint64(m))
	if err == nil && m > 0 && m < len(b) && c.peeked+int64(m) <= peekEOFLimit {
		c.peeked += int64(m)
		if p, ok := c.r.(eofPeeker); ok && p.PeekEOF() {
			err = io.EOF
		}
	}
	return m, err
}

// WaitRead waits for the source as readWaiter does, when it is one;
// otherwise it returns at once (the buffer is then held while Read blocks).
func (c *countingReader) WaitRead(idle func()) error {
	if rw, ok := c.r.(readWaiter); ok {
		return rw.WaitRead(idle)
	}
	return nil
}
