package stack

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// ErrNotEncrypted is returned by Conn.SessionID for a connection that is
// not encrypted (ENO fell back or was off): RFC 8547 §5.1 requires an error
// when no session ID is available (ENO-33).
var ErrNotEncrypted = errors.New("stack: connection is not encrypted (no session ID)")

// ErrENORequired is matched (errors.Is) by a *RefusedError.
var ErrENORequired = errors.New("stack: encryption required but not negotiated")

// RefusedError reports a connection refused (reset) because policy required
// encryption and ENO fell back.
type RefusedError struct {
	Reason eno.Reason // why ENO fell back
	Detail string
}

func (e *RefusedError) Error() string {
	s := "stack: encryption required, refused: " + e.Reason.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes errors.Is(err, ErrENORequired) true.
func (e *RefusedError) Is(target error) bool { return target == ErrENORequired }

// Negotiation describes how a connection's protection was settled.
type Negotiation struct {
	Mode      eno.Mode
	Encrypted bool
	// Reason says why the connection is not encrypted (eno.ReasonNone
	// when it is).
	Reason eno.Reason
	Detail string
	// The fields below are set only when Encrypted.
	Role      eno.Role
	TEP       kex.ID
	AEAD      schedule.AEADID
	Resumed   bool
	SessionID []byte
}

// SessionInfo is what a caller can learn about a connection's encryption.
// *Conn implements it.
type SessionInfo interface {
	// SessionID returns the tcpcrypt session ID, or ErrNotEncrypted.
	SessionID() ([]byte, error)
	Negotiation() Negotiation
}

var _ SessionInfo = (*Conn)(nil)
var _ net.Conn = (*Conn)(nil)

// Conn is a connection made by Dial or Listener.Accept: a *tcpcrypt.Conn
// when ENO negotiated tcpcrypt, else the plain TCP connection.
type Conn struct {
	net.Conn // *tcpcrypt.Conn or *tcpStream

	stream *tcpStream
	tc     *tcpcrypt.Conn // nil when plain
	neg    Negotiation
	id     flowID

	closeOnce sync.Once
	release   func() // unlists the flow; nil if none
}

// flowID is a connection's 4-tuple in netip form (for logs and tables).
type flowID struct {
	Local, Remote string
}

// SessionID returns the session ID (RFC 8547 §5.1, RFC 8548 §3.4), or
// ErrNotEncrypted (ENO-33).
func (c *Conn) SessionID() ([]byte, error) {
	if c.tc == nil {
		return nil, ErrNotEncrypted
	}
	return append([]byte(nil), c.neg.SessionID...), nil
}

// Negotiation returns how the connection's protection was settled.
func (c *Conn) Negotiation() Negotiation {
	n := c.neg
	n.SessionID = append([]byte(nil), n.SessionID...)
	return n
}

// Encrypted reports whether the connection runs tcpcrypt.
func (c *Conn) Encrypted() bool { return c.tc != nil }

// TCPCrypt returns the tcpcrypt connection (nil when plain).
func (c *Conn) TCPCrypt() *tcpcrypt.Conn { return c.tc }

// CloseWrite half-closes the connection: a FINp frame then TCP FIN when
// encrypted (RFC 8548 §3.7), a TCP FIN when plain.
func (c *Conn) CloseWrite() error {
	if c.tc != nil {
		return c.tc.CloseWrite()
	}
	return c.stream.CloseWrite()
}

// setResume makes reads of this connection in the relay suspend instead of
// block (see tcpStream.resume).
func (c *Conn) setResume(f func()) { c.stream.setResume(f) }

// WaitRead implements readWaiter (see idle.go) for a plain connection (the
// relay waits on the stream itself for an encrypted one).
func (c *Conn) WaitRead(idle func()) error { return c.stream.WaitRead(idle) }

// PeekEOF implements eofPeeker (see idle.go) for a plain connection (the
// relay reads it into tcpcrypt.Conn.ReadFromAndClose).
func (c *Conn) PeekEOF() bool { return c.tc == nil && c.stream.PeekEOF() }

// CloseRead shuts down the reading side of the TCP connection.
func (c *Conn) CloseRead() error { return c.stream.CloseRead() }

// Close closes the connection and forgets its ENO flow state.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.done)
	return err
}

// Abort resets the connection (TCP RST) and forgets its flow state.
func (c *Conn) Abort() {
	c.stream.Abort()
	c.closeOnce.Do(c.done)
}

func (c *Conn) done() {
	if c.release != nil {
		c.release()
	}
}

// String names the connection for logs.
func (c *Conn) String() string {
	state := "plain"
	if c.tc != nil {
		state = fmt.Sprintf("tcpcrypt/%v/%v", c.neg.TEP, c.neg.AEAD)
	}
	return fmt.Sprintf("%s->%s %s", c.id.Local, c.id.Remote, state)
}

// tcpStream is a gVisor TCP connection as a net.Conn that can also be
// reset: tcpcrypt aborts a stream through SetLinger(0) and Close, as with a
// *net.TCPConn (RFC 8548 §3.3, §3.6).
type tcpStream struct {
	*gonet.TCPConn
	ep tcpip.Endpoint
	wq *waiter.Queue

	closed atomic.Bool // Close was called: a wake-up armed after it fires at once

	// resume, when set (setResume), puts the stream in relay mode (see
	// idle.go): Read returns errWouldBlock rather than block, and WaitRead
	// suspends rather than block: it returns errSuspended and resume runs on a new
	// goroutine once the endpoint is readable (or closed). pending is
	// the armed wake-up, for Close to fire.
	resume  atomic.Pointer[func()]
	pending atomic.Pointer[wakeup]

	// noTimeWait: reset the endpoint once it reaches TIME-WAIT after
	// Close (see dropTimeWait). Set on the forwarder's inner legs.
	noTimeWait bool
	// writeSize is the largest write gVisor sends as one packet on this
	// connection (see writeSizes); 0 when there is no such limit.
	writeSize int
	// work runs a suspended relay direction when it wakes up.
	work *workers
	// lossy, when set (outer legs), is called at Close if the connection
	// had to retransmit: its peer then gets SACK (peerrtt.go).
	lossy func()
}

// dropTimeWait resets the endpoint if it is in TIME-WAIT now, or once it
// gets there within timeWaitCheck. A forwarded (inner) connection has no
// listening endpoint behind it, and gVisor hands a new SYN that meets a
// TIME-WAIT endpoint only to a listener: the application's next connection
// from the same port (a kernel that was the passive closer reuses ports at
// once) would be ignored for the whole TIME-WAIT (60 s). On this leg,
// between the host's kernel and us over the TUN device, TIME-WAIT guards
// against nothing: our FIN has been acknowledged and the peer's received,
// so the reset only frees the 4-tuple.
func (t *tcpStream) dropTimeWait() {
	switch tcp.EndpointState(t.ep.State()) {
	case tcp.StateTimeWait:
		t.ep.Abort()
	case tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateClosing:
		time.AfterFunc(timeWaitCheck, func() {
			if tcp.EndpointState(t.ep.State()) == tcp.StateTimeWait {
				t.ep.Abort()
			}
		})
	}
}

// timeWaitCheck is how long after Close dropTimeWait looks again for an
// endpoint still finishing its close.
const timeWaitCheck = time.Second

// setResume puts the stream in suspend mode (see tcpStream.resume).
func (t *tcpStream) setResume(f func()) { t.resume.Store(&f) }

// wakeup is one armed resume: it fires at most once, from gVisor's
// notification or from Close, whichever comes first.
type wakeup struct {
	t      *tcpStream
	entry  waiter.Entry
	fired  atomic.Bool
	resume func()
}

// NotifyEvent implements waiter.EventListener. It runs inside gVisor's
// Queue.Notify, which holds the queue's lock, so the entry is unregistered
// on the new goroutine.
func (w *wakeup) NotifyEvent(waiter.EventMask) { w.fire() }

func (w *wakeup) fire() {
	if !w.fired.CompareAndSwap(false, true) {
		return
	}
	w.t.work.Go(func() {
		w.t.pending.CompareAndSwap(w, nil)
		w.t.wq.EventUnregister(&w.entry)
		w.resume()
	})
}

// suspend arms a wakeup for resume and reports errSuspended, or
// nil if the endpoint became readable meanwhile (the caller goes on).
func (t *tcpStream) suspend(idle, resume func()) error {
	idle()
	w := &wakeup{t: t, resume: resume}
	w.entry.Init(w, waitReadEvents)
	t.pending.Store(w)
	t.wq.EventRegister(&w.entry)
	// Close sets closed before it looks at pending, and we stored pending
	// before looking at closed: one of us sees the other.
	ready := t.ep.Readiness(waitReadEvents) != 0 || t.closed.Load()
	if ready && w.fired.CompareAndSwap(false, true) {
		// Readable before we parked: carry on in this goroutine.
		t.pending.CompareAndSwap(w, nil)
		t.wq.EventUnregister(&w.entry)
		return nil
	}
	return errSuspended
}

// newTCPStream wraps ep. writeSize is the largest write that leaves as one
// packet (see writeSizes; 0: no limit).
func newTCPStream(ep tcpip.Endpoint, wq *waiter.Queue, writeSize int, work *workers) *tcpStream {
	return &tcpStream{TCPConn: gonet.NewTCPConn(wq, ep), ep: ep, wq: wq, writeSize: writeSize, work: work}
}

// Read is gonet's Read with its error mapped (see streamErr). In relay
// mode (setResume) it never blocks: with nothing to read it returns
// errWouldBlock, and the relay waits (WaitRead) before reading again.
func (t *tcpStream) Read(b []byte) (int, error) {
	if t.resume.Load() != nil {
		return t.readNow(b)
	}
	n, err := t.TCPConn.Read(b)
	if err != nil && err != io.EOF {
		err = streamErr(err)
	}
	return n, err
}

// readNow is a Read that does not block, for relay mode: one read of
// the endpoint, its errors as gonet's Read reports them (mapped, see
// NetError), ErrWouldBlock as errWouldBlock.
func (t *tcpStream) readNow(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w := tcpip.SliceWriter(b)
	res, terr := t.ep.Read(&w, tcpip.ReadOptions{})
	switch terr.(type) {
	case nil:
		return res.Count, nil
	case *tcpip.ErrWouldBlock:
		if t.closed.Load() {
			return 0, &net.OpError{Op: "read", Net: "tcp", Source: t.LocalAddr(), Addr: t.RemoteAddr(), Err: net.ErrClosed}
		}
		return 0, errWouldBlock
	case *tcpip.ErrClosedForReceive:
		return 0, io.EOF
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Source: t.LocalAddr(), Addr: t.RemoteAddr(), Err: netErr(terr)}
}

// Write is gonet's Write with its error mapped (see streamErr).
func (t *tcpStream) Write(b []byte) (int, error) {
	n, err := t.TCPConn.Write(b)
	if err != nil {
		err = streamErr(err)
	}
	return n, err
}

// Close closes the connection and fires a suspended relay direction's
// wake-up (gVisor notifies waiters of a close only once the endpoint has
// reached CLOSED).
func (t *tcpStream) Close() error {
	if t.lossy != nil && !t.closed.Load() && retransmitted(t.ep) {
		t.lossy()
	}
	t.closed.Store(true)
	err := t.TCPConn.Close()
	if t.noTimeWait {
		t.dropTimeWait()
	}
	if w := t.pending.Load(); w != nil {
		w.fire() // a suspended relay direction must see the close
	}
	return err
}

var _ readWaiter = (*tcpStream)(nil)

// waitReadEvents wake WaitRead: data or FIN, an error, a reset, or the
// endpoint closed by us.
const waitReadEvents = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// WaitRead implements readWaiter: the relay waits here instead of
// in a Read with a buffer, so an idle connection holds none.
func (t *tcpStream) WaitRead(idle func()) error {
	if t.ep.Readiness(waitReadEvents) != 0 {
		return nil
	}
	if r := t.resume.Load(); r != nil {
		return t.suspend(idle, *r)
	}
	return nil // not suspendable: the caller's Read blocks, buffer in hand
}

var _ eofPeeker = (*tcpStream)(nil)

// PeekEOF implements eofPeeker: a one-byte peek that consumes
// nothing tells data waiting from the peer's FIN with nothing left.
func (t *tcpStream) PeekEOF() bool {
	w := tcpip.LimitedWriter{W: io.Discard, N: 1}
	_, err := t.ep.Read(&w, tcpip.ReadOptions{Peek: true})
	_, eof := err.(*tcpip.ErrClosedForReceive)
	return eof
}

// SetLinger sets SO_LINGER like (*net.TCPConn).SetLinger: sec < 0 turns it
// off, 0 makes Close send a RST and drop unsent data.
func (t *tcpStream) SetLinger(sec int) error {
	t.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: sec >= 0, Timeout: time.Duration(max(sec, 0)) * time.Second})
	return nil
}

// Abort resets the connection.
func (t *tcpStream) Abort() {
	_ = t.SetLinger(0)
	_ = t.Close()
}
