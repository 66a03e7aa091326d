package tcpcrypt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Conn is a tcpcrypt connection: a net.Conn whose Write seals data into
// encryption frames and whose Read opens them (RFC 8548 §3.6-§3.9).
//
// Read and Write may be called from two goroutines at once; each direction
// has its own lock (in, out), like crypto/tls's halfConn. Conn starts no
// goroutines.
//
// Locking and the rekey answer (TC-35). A frame with rekey = 1 is seen by
// Read, but must be answered by a frame we send. Read never waits for the
// write lock: it records that an answer is owed (rekeyOwed) and answers
// itself only if it gets the write lock with TryLock. If a Write holds the
// lock, that Write answers: before each frame it catches the local
// generation up with the remote one, so its next frame carries rekey = 1,
// and every path that releases the write lock re-checks rekeyOwed after
// unlocking (unlockOut), so an answer owed while the lock was held is
// never lost. Read's own answer is a small frame whose write is bounded
// by answerTimeout: on a stream with no room (a peer that does not read
// while the transport buffers nothing, like net.Pipe) the rest of the frame
// stays pending and goes out first with our next Write, CloseWrite or
// Close. So a Read never blocks for long on a peer that is not reading.
//
// Write deadlines. A frame is all-or-nothing on the wire: once sealed its
// bytes must all be sent, or the stream desynchronises and nonces could be
// reused. When a deadline interrupts a stream write halfway, the rest of the
// frame stays pending and goes out first on the next Write (or Close, or
// CloseWrite); the timed-out Write counts the frame's data as written. A
// deadline that has already passed fails Write before it seals anything.
//
// The stream. CloseWrite half-closes it if it has a CloseWrite() error
// method, and aborts (authentication failure, truncation, handshake
// failure) send a RST if it has SetLinger(int) error, as *net.TCPConn
// does; wrappers around a TCP stream should forward both.
type Conn struct {
	stream     net.Conn
	cfg        *Config
	aead       *schedule.AEAD
	maxData    int
	rekeyAfter uint64

	// Immutable connection facts.
	sessionID []byte
	resumed   bool
	tep       kex.ID
	role      eno.Role
	chainID   uint64

	in struct {
		sync.Mutex
		open  *frame.Opener
		buf   []byte // raw stream bytes; buf[r:w] not yet opened
		r, w  int
		plain []byte // opened data not yet returned (aliases buf)
		// lastCap is the capacity of the buffer given back while idle
		// (releaseReadBufLocked), taken again for the next read.
		lastCap int
		eof     bool  // FINp frame opened (TC-32)
		err     error // sticky error
		// deferred is a stream error that came with data; reported once the
		// data is used up.
		deferred error
	}

	out struct {
		sync.Mutex
		seal *frame.Sealer
		buf  []byte // sealing buffer, reused
		pend []byte // sealed bytes not yet written (aliases buf)
		fin  bool   // FINp frame sealed (TC-31)
		shut bool   // the stream's write side was closed
		err  error  // sticky error
	}

	// readFromSize is the read size ReadFrom grew to. Atomic: a relay
	// that parked between calls may resume in a new ReadFrom call on
	// another goroutine before the old call has returned.
	readFromSize atomic.Int64

	// Generations mirrored for the other direction's lock holder (§3.8).
	localGen  atomic.Uint64 // L, written under out
	remoteGen atomic.Uint64 // R, written under in
	rekeyOwed atomic.Bool   // R > L seen by Read; the write side must answer

	deadlineMu    sync.Mutex            // serialises setting the stream's write deadline
	writeDeadline atomic.Int64          // the user's, unix nanoseconds, 0 = none
	closing       atomic.Bool           // Close was called
	closed        atomic.Bool           // Close is past sending FINp
	abortErr      atomic.Pointer[error] // why we aborted the stream
}

var _ net.Conn = (*Conn)(nil)

// ErrRekeyFlood reports a peer that ran more than maxRekeyLead key
// generations ahead of the rekey answers we had sealed (RFC 8548 §3.8).
// The connection has been aborted (RST).
var ErrRekeyFlood = errors.New("tcpcrypt: peer rekeyed too far ahead of our answers")

// maxRekeyLead bounds how many generations the peer's frames (R) may run
// ahead of the newest generation we have sealed a frame under (L).
//
// Every rekey = 1 frame obliges us to answer with one frame per generation
// (RFC 8548 §3.8: the peer counts R up by exactly one per rekey frame), and
// the answers can only go out as fast as the peer lets our direction
// drain. A peer that floods rekey frames behind a zero window would make
// us owe an unbounded number of answers; frame.Sealer refuses more than
// 1024 pending generations. An honest peer runs at most one generation
// ahead with empty frames (§3.8: "MUST NOT initiate rekeying with an empty
// encryption frame more than once while its record of the remote
// generation number is less than its own"); any further lead comes from
// rekeys by volume, one per rekey_after_bytes of data (1 GiB by default)
// sent while never reading what we send. 64 generations is far beyond
// that and far below the sealer's limit.
//
// Decision: a constant, not a configuration key. It is a protocol sanity
// bound, not a resource budget an operator trades against load: it costs
// at most 64 empty frames (about 1.3 KiB) and 64 key derivations per
// connection, and a value near the sealer's limit would reopen the hole.
const maxRekeyLead = 64

func newConn(stream net.Conn, cfg *Config, p Policy, k *keys, r eno.Result) (*Conn, error) {
	seal, err := frame.NewSealer(k.aead, k.mk0, k.send, k.sendOff)
	if err != nil {
		return nil, err
	}
	open, err := frame.NewOpener(k.aead, k.mk0, k.send.Reverse(), k.recvOff)
	if err != nil {
		seal.Zero()
		return nil, err
	}
	c := &Conn{
		stream:     stream,
		cfg:        cfg,
		aead:       k.aead,
		maxData:    p.maxData(frame.MaxData(k.aead), k.aead.Overhead),
		rekeyAfter: cfg.rekeyAfter(),
		sessionID:  k.sessionID,
		resumed:    k.resumed,
		tep:        kex.ID(r.TEP &^ vBit),
		role:       r.Role,
		chainID:    k.chainID,
	}
	c.in.open = open
	c.out.seal = seal
	return c, nil
}

// SessionID returns the 33-byte session ID (RFC 8548 §3.4): B's TEP byte
// (v = 1 for a resumed session) followed by the derived tail. Applications
// compare it out of band to rule out a man in the middle.
func (c *Conn) SessionID() []byte { return slices.Clone(c.sessionID) }

// Resumed reports whether the session was resumed from a cached secret.
func (c *Conn) Resumed() bool { return c.resumed }

// TEP returns the negotiated key-agreement TEP.
func (c *Conn) TEP() kex.ID { return c.tep }

// AEAD returns the negotiated AEAD.
func (c *Conn) AEAD() schedule.AEADID { return c.aead.ID }

// Role returns our ENO role in this connection.
func (c *Conn) Role() eno.Role { return c.role }

// Generations returns the local generation L (the key we send with) and the
// remote generation R (the newest key the peer used) (RFC 8548 §3.8). After
// Rekey, remote catching up with local proves the peer alive (§3.9).
func (c *Conn) Generations() (local, remote uint64) {
	return c.localGen.Load(), c.remoteGen.Load()
}

// FlushCache drops the resumption-cache state this connection used or
// created (RFC 8548 §3.5, TC-27): later connections cannot resume from it.
func (c *Conn) FlushCache() {
	if c.chainID != 0 && c.cfg.Cache != nil {
		c.cfg.Cache.flushChain(c.chainID)
	}
}

// LocalAddr returns the stream's local address.
func (c *Conn) LocalAddr() net.Addr { return c.stream.LocalAddr() }

// RemoteAddr returns the stream's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.stream.RemoteAddr() }

// SetDeadline sets both deadlines on the stream.
func (c *Conn) SetDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.storeWriteDeadline(t)
	return c.stream.SetDeadline(t)
}

// SetReadDeadline sets the stream's read deadline. A Read that times out
// keeps any partial frame; the next Read continues it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.stream.SetReadDeadline(t) }

// SetWriteDeadline sets the stream's write deadline (see Conn on what a
// timed-out Write means).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.storeWriteDeadline(t)
	return c.stream.SetWriteDeadline(t)
}

func (c *Conn) storeWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.writeDeadline.Store(0)
	} else {
		c.writeDeadline.Store(max(t.UnixNano(), 1))
	}
}

// userWriteDeadline returns the deadline set by the user.
func (c *Conn) userWriteDeadline() time.Time {
	if d := c.writeDeadline.Load(); d != 0 {
		return time.Unix(0, d)
	}
	return time.Time{}
}

// boundedWriteLocked runs f (which writes to the stream) with the write
// deadline lowered to at most answerTimeout from now, then restores the
// user's deadline. Used by Read's rekey answer so that Read never waits
// long for a peer that does not read (see Conn).
func (c *Conn) boundedWriteLocked(f func() error) error {
	c.deadlineMu.Lock()
	d := time.Now().Add(answerTimeout)
	if u := c.userWriteDeadline(); !u.IsZero() && u.Before(d) {
		d = u
	}
	_ = c.stream.SetWriteDeadline(d)
	c.deadlineMu.Unlock()
	err := f()
	c.deadlineMu.Lock()
	_ = c.stream.SetWriteDeadline(c.userWriteDeadline())
	c.deadlineMu.Unlock()
	return err
}

// Read reads decrypted application data. It returns io.EOF only after an
// authenticated FINp frame (RFC 8548 §3.7, TC-32); a stream that ends
// without one gives ErrTruncated, a frame that fails authentication
// ErrAuth (both abort the connection), a transport failure an error
// wrapping ErrAborted.
func (c *Conn) Read(b []byte) (int, error) {
	c.in.Lock()
	defer c.in.Unlock()
	for len(c.in.plain) == 0 {
		if err := c.readEndLocked(); err != nil {
			return 0, err
		}
		if len(b) == 0 {
			return 0, nil
		}
		if err := c.readFrameLocked(); err != nil {
			return 0, err
		}
	}
	n := copy(b, c.in.plain)
	c.in.plain = c.in.plain[n:]
	return n, nil
}

// readEndLocked reports why nothing more can be read, once the opened
// data is used up: Close (net.ErrClosed), a sticky error, or io.EOF after
// FINp. It is nil while frames may still come.
func (c *Conn) readEndLocked() error {
	switch {
	case c.closed.Load():
		c.in.open.Zero()
		return c.opError("read", net.ErrClosed)
	case c.in.err != nil:
		return c.in.err
	case c.in.eof:
		return io.EOF
	}
	return nil
}

// readFrameLocked opens the next frame, reading from the stream as needed.
func (c *Conn) readFrameLocked() error {
	in := &c.in
	for {
		n, ok := frame.FrameLen(in.buf[in.r:in.w])
		if ok && in.w-in.r >= n {
			return c.openLocked(in.buf[in.r : in.r+n])
		}
		if in.deferred != nil {
			err := in.deferred
			in.deferred = nil
			return c.streamReadError(err)
		}
		need := frame.HeaderLen
		if ok {
			need = n
		}
		c.makeRoomLocked(need)
		m, err := c.stream.Read(in.buf[in.w:cap(in.buf)])
		in.w += m
		if err != nil {
			if m > 0 {
				in.deferred = err
				continue
			}
			return c.streamReadError(err)
		}
	}
}

// makeRoomLocked makes sure buf can hold need unopened bytes plus some
// read-ahead.
func (c *Conn) makeRoomLocked(need int) {
	in := &c.in
	if in.r > 0 && (in.r == in.w || cap(in.buf)-in.r < need || cap(in.buf)-in.w < frame.HeaderLen) {
		in.w = copy(in.buf[:cap(in.buf)], in.buf[in.r:in.w])
		in.r = 0
	}
	if cap(in.buf)-in.r < need || cap(in.buf) == 0 {
		size := max(minReadBuf, 2*cap(in.buf), need)
		if cap(in.buf) == 0 {
			size = max(size, in.lastCap)
		}
		size = min(size, max(need, frame.HeaderLen+frame.MaxCLen))
		nb := getBuf(size)
		in.w = copy(nb, in.buf[in.r:in.w])
		in.r = 0
		if cap(in.buf) > 0 {
			clear(in.buf[:cap(in.buf)])
			putBuf(in.buf)
		}
		in.buf = nb
	}
	in.buf = in.buf[:cap(in.buf)]
}

// openLocked opens one whole frame in place and handles its flags.
func (c *Conn) openLocked(f []byte) error {
	in := &c.in
	data, flags, _, rekeyed, err := in.open.Open(nil, f)
	if err != nil {
		if !errors.Is(err, ErrAuth) {
			// Malformed frame, frame after FINp, offset exhausted: the
			// stream is no longer what the peer sealed; same treatment
			// as an authentication failure (RFC 8548 §3.6).
			err = fmt.Errorf("%w: %w", ErrAuth, err)
		}
		in.err = err
		c.abort(err)
		return err
	}
	in.r += len(f)
	// Decision (docs/decisions.md, "Urgent data"): urgent data (URGp) is delivered
	// inline and the urgent value is dropped. The RFC's urgent offset is
	// ambiguous, and the stream APIs we serve (sockets relayed by the
	// stack) carry no urgent pointer through; we never send URGp.
	if rekeyed {
		if err := c.peerRekeyed(in.open.Generation()); err != nil {
			// The frame's own data is dropped with the connection.
			clear(data)
			in.err = err
			c.abort(err)
			return err
		}
	}
	in.plain = data
	if flags&frame.FlagFIN != 0 {
		in.eof = true  // TC-32: EOF exactly when FINp arrives
		in.open.Zero() // nothing follows FINp (TC-38)
	}
	return nil
}

// peerRekeyed handles R++ from a rekey = 1 frame (RFC 8548 §3.8, TC-35):
// if R > L we owe an immediate rekey frame, sent here if the write lock is
// free, else by the Write holding it (see Conn). A peer more than
// maxRekeyLead generations ahead of L is misbehaving: ErrRekeyFlood, which
// the caller turns into an abort.
func (c *Conn) peerRekeyed(r uint64) error {
	c.remoteGen.Store(r)
	l := c.localGen.Load()
	if r <= l {
		return nil
	}
	if r-l > maxRekeyLead {
		return rekeyFloodError(r, l)
	}
	c.rekeyOwed.Store(true)
	if c.out.TryLock() {
		c.answerRekeyLocked()
		c.unlockOut()
	}
	return nil
}

// rekeyFloodError is ErrRekeyFlood with the generations seen.
func rekeyFloodError(remote, local uint64) error {
	return fmt.Errorf("%w: remote generation %d, ours %d (at most %d apart)", ErrRekeyFlood, remote, local, maxRekeyLead)
}

// answerRekeyLocked sends the rekey frame owed to the peer, empty, unless
// FINp was sent (TC-35). It is called from Read (directly or through
// unlockOut), so it never waits long: the write is bounded by
// answerTimeout, and bytes it could not send, or left pending by an
// earlier timed-out Write, wait for the next Write, CloseWrite or Close,
// which send them before anything else.
func (c *Conn) answerRekeyLocked() {
	c.rekeyOwed.Store(false)
	if c.outErrLocked() != nil || len(c.out.pend) > 0 {
		return // the next Write flushes, then catches up (catchUpLocked)
	}
	if c.out.seal.Generation() >= c.remoteGen.Load() {
		return
	}
	if c.catchUpLocked() != nil {
		return // aborted; Read reports it
	}
	_ = c.boundedWriteLocked(func() error { return c.sealAndSendLocked(nil, false) })
}

// unlockOut releases the write lock, then answers a rekey that became owed
// while it was held (see Conn).
func (c *Conn) unlockOut() {
	for {
		if c.closed.Load() {
			c.out.seal.Zero()
		}
		c.out.Unlock()
		if !c.rekeyOwed.Load() || !c.out.TryLock() {
			return
		}
		c.answerRekeyLocked()
	}
}

// catchUpLocked sets L := R (TC-35). The next frame sealed carries
// rekey = 1; frame.Sealer inserts empty rekey frames if R - L > 1.
//
// A lead beyond maxRekeyLead aborts the connection with ErrRekeyFlood
// (Read normally sees it first; this is the write side's own check), and a
// sealer that refuses to step (its sticky error) ends the loop: it must
// never spin on a generation it cannot reach.
func (c *Conn) catchUpLocked() error {
	s := c.out.seal
	r := c.remoteGen.Load()
	if g := s.Generation(); r > g && r-g > maxRekeyLead {
		err := rekeyFloodError(r, g)
		c.abort(err)
		c.out.err = err
		return err
	}
	for s.Generation() < r {
		s.Rekey()
		if err := s.Err(); err != nil {
			c.out.err = fmt.Errorf("tcpcrypt: catching up with the peer's rekey: %w", err)
			c.abort(c.out.err)
			return c.out.err
		}
	}
	c.localGen.Store(s.Generation())
	return nil
}

// Write seals b into frames of at most frame.MaxData bytes each, sized to
// the data at hand, and writes them to the stream.
func (c *Conn) Write(b []byte) (int, error) {
	c.out.Lock()
	n, err := c.writeLocked(b)
	c.unlockOut()
	return n, err
}

func (c *Conn) writeLocked(b []byte) (int, error) {
	if err := c.outErrLocked(); err != nil {
		return 0, err
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	n := 0
	for len(b) > 0 {
		if c.deadlinePassed() {
			return n, c.opError("write", os.ErrDeadlineExceeded)
		}
		chunk := min(len(b), c.maxData)
		if err := c.catchUpLocked(); err != nil {
			return n, err
		}
		if c.rekeyAfter > 0 && c.out.seal.Bytes() >= c.rekeyAfter {
			c.out.seal.Rekey() // our own rekey by volume (TC-33)
			c.localGen.Store(c.out.seal.Generation())
		}
		err := c.sealAndSendLocked(b[:chunk], false)
		if err == nil || c.out.pend != nil {
			n += chunk // sealed: the data is committed (see Conn)
		}
		b = b[chunk:]
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readFromMinBuf is ReadFrom's first read size; the buffer doubles while
// reads fill it, up to one whole frame, so an idle relayed connection holds
// little memory and a bulk one gets frames of the maximum size.
const readFromMinBuf = 4 << 10

// ReadFrom implements io.ReaderFrom, so io.Copy into a Conn (the relay's
// hot path) reads the data straight into the frame at frame.DataOffset and
// seals it in place: no copy besides the AEAD's own pass.
//
// The read from r happens without the write lock (a rekey answer owed to
// the peer must never wait for r), into a buffer private to this call;
// the lock is taken only to seal and send. The buffer goes back to the
// pool when the call returns, whatever the error: a caller whose r reports
// "nothing to read yet" as an error (a relay that waits for its source
// itself) holds no buffer while it waits, then calls ReadFrom again.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) { return c.readFrom(r, false) }

// ReadFromAndClose is ReadFrom followed by CloseWrite, with one frame fewer
// when it can: if r's last read ends it (it returns data with io.EOF), the
// frame carrying those bytes has FINp set (RFC 8548 §3.7: FINp on the last
// frame, TC-31) instead of an empty FINp frame following it. A response
// followed by close then costs one segment less. The TCP FIN follows as
// with CloseWrite.
func (c *Conn) ReadFromAndClose(r io.Reader) (int64, error) {
	n, err := c.readFrom(r, true)
	if err != nil {
		return n, err
	}
	return n, c.CloseWrite()
}

// readFrom is ReadFrom; closing lets it end with FINp on the last data
// frame (ReadFromAndClose).
func (c *Conn) readFrom(r io.Reader, closing bool) (int64, error) {
	off := frame.DataOffset(false)
	// Room for the frame and for empty rekey frames the sealer may owe.
	slack := off + c.aead.Overhead + 4*(frame.HeaderLen+1+c.aead.Overhead)
	// The frame size reached by earlier calls: a caller that returned
	// while its source was empty comes back at full size.
	size := min(max(readFromMinBuf, int(c.readFromSize.Load())), c.maxData)
	// buf only ever holds sealed bytes when it goes back to the pool:
	// frames are sealed in place.
	var buf []byte
	release := func() {
		if buf != nil {
			putBuf(buf)
			buf = nil
		}
	}
	defer release()
	var total int64
	for {
		if buf == nil {
			buf = getBuf(size + slack)
		}
		m, rerr := r.Read(buf[off : off+size])
		if m > 0 {
			// r's end came with its data: FINp rides on this frame.
			fin := closing && errors.Is(rerr, io.EOF)
			done, err := c.sealFromLocked(buf, m, fin)
			total += int64(done)
			if err != nil {
				// Sealed bytes may still be pending in buf (see
				// sealFromLocked): it must not be reused.
				buf = nil
				return total, err
			}
			if fin {
				return total, nil
			}
			if m == size && size < c.maxData {
				size = min(2*size, c.maxData)
				c.readFromSize.Store(int64(size))
				release()
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// sealFromLocked takes the write lock and sends the m bytes the caller
// placed at buf[frame.DataOffset(false):] as one frame sealed in place,
// with FINp if fin (then nothing can be sent after it, and the keys go).
func (c *Conn) sealFromLocked(buf []byte, m int, fin bool) (int, error) {
	c.out.Lock()
	defer c.unlockOut()
	off := frame.DataOffset(false)
	// Refused before sealing: the data is not sent, and no pending frame
	// aliases buf yet, so its plaintext is erased at once.
	refuse := func(err error) (int, error) {
		clear(buf[off : off+m])
		return 0, err
	}
	if err := c.outErrLocked(); err != nil {
		return refuse(err)
	}
	if err := c.flushLocked(); err != nil {
		return refuse(err)
	}
	if c.deadlinePassed() {
		return refuse(c.opError("write", os.ErrDeadlineExceeded))
	}
	if err := c.catchUpLocked(); err != nil {
		return refuse(err)
	}
	if c.rekeyAfter > 0 && c.out.seal.Bytes() >= c.rekeyAfter {
		c.out.seal.Rekey() // our own rekey by volume (TC-33)
		c.localGen.Store(c.out.seal.Generation())
	}
	sealed, err := c.out.seal.Seal(buf[:0], buf[off:off+m], fin, nil)
	if len(sealed) == 0 || &sealed[0] != &buf[0] {
		// Not sealed in place: more empty rekey frames were owed than
		// buf's slack holds (readFrom leaves room for four), so Seal
		// built the frames in a new array and the plaintext is still in
		// buf, which goes back to the pool. Erase it.
		clear(buf[off : off+m])
	}
	if err != nil {
		c.out.err = fmt.Errorf("tcpcrypt: sealing frame: %w", err)
		return 0, c.out.err
	}
	// pend aliases the caller's buffer; ReadFrom returns on any flush
	// error, so that buffer is never reused while bytes are pending.
	c.out.pend = sealed
	c.localGen.Store(c.out.seal.Generation())
	err = c.flushLocked()
	if fin {
		c.out.fin = true
		c.out.seal.Zero() // nothing follows FINp (TC-38)
	}
	return m, err
}

// sealAndSendLocked seals one frame and writes it.
func (c *Conn) sealAndSendLocked(data []byte, fin bool) error {
	buf, err := c.out.seal.Seal(c.out.buf[:0], data, fin, nil)
	if err != nil {
		c.out.err = fmt.Errorf("tcpcrypt: sealing frame: %w", err)
		return c.out.err
	}
	c.out.buf = buf
	c.out.pend = buf
	c.localGen.Store(c.out.seal.Generation())
	return c.flushLocked()
}

// flushLocked writes pending sealed bytes. A timeout keeps the rest
// pending; any other error is sticky.
func (c *Conn) flushLocked() error {
	for len(c.out.pend) > 0 {
		m, err := c.stream.Write(c.out.pend)
		c.out.pend = c.out.pend[m:]
		if err != nil {
			if isTimeout(err) {
				return err
			}
			c.out.pend = nil
			c.out.err = c.classify("write", err)
			return c.out.err
		}
	}
	c.out.pend = nil
	return nil
}

// outErrLocked returns why nothing more can be sent, if so.
func (c *Conn) outErrLocked() error {
	if c.closed.Load() {
		return c.opError("write", net.ErrClosed)
	}
	if p := c.abortErr.Load(); p != nil {
		return *p
	}
	if c.out.err != nil {
		return c.out.err
	}
	if c.out.fin {
		return c.opError("write", ErrWriteClosed)
	}
	return nil
}

// Rekey starts a new local key generation now and sends an empty frame
// with rekey = 1 (RFC 8548 §3.8, TC-33). The peer must answer with its own
// rekey frame (TC-35), which makes Rekey an authenticated liveness probe
// (§3.9, TC-39): once Generations reports remote >= local, the peer was
// alive. If an earlier rekey is still unanswered (R < L), Rekey sends
// nothing, so at most one empty-frame rekey is outstanding (TC-36).
func (c *Conn) Rekey() error {
	c.out.Lock()
	defer c.unlockOut()
	if err := c.outErrLocked(); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	if c.remoteGen.Load() < c.out.seal.Generation() {
		return nil // TC-36: a rekey is outstanding already
	}
	if err := c.catchUpLocked(); err != nil {
		return err
	}
	c.out.seal.Rekey()
	return c.sealAndSendLocked(nil, false)
}

// CloseWrite sends the FINp frame, the last frame of our direction
// (RFC 8548 §3.7, TC-31), then closes the stream's write side if it can
// (TCP FIN). Later Writes fail with ErrWriteClosed. If a write deadline
// interrupted it, calling it again finishes the job; otherwise calling it
// again does nothing.
func (c *Conn) CloseWrite() error {
	c.out.Lock()
	defer c.unlockOut()
	if !c.out.fin {
		if err := c.sendFINLocked(); err != nil {
			return err
		}
	}
	if err := c.outErrLocked(); err != nil && !errors.Is(err, ErrWriteClosed) {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	if cw, ok := c.stream.(interface{ CloseWrite() error }); ok && !c.out.shut {
		c.out.shut = true
		if err := cw.CloseWrite(); err != nil {
			return c.opError("close-write", err)
		}
	}
	return nil
}

// sendFINLocked flushes pending bytes and sends the FINp frame.
func (c *Conn) sendFINLocked() error {
	if err := c.outErrLocked(); err != nil {
		return err
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	if err := c.catchUpLocked(); err != nil {
		return err
	}
	err := c.sealAndSendLocked(nil, true)
	c.out.fin = true
	c.out.seal.Zero() // nothing follows FINp (TC-38)
	return err
}

// Close sends the FINp frame (if not sent yet and no Write is in progress;
// at most closeFlushTimeout is spent on it, and a failure to send it is
// not reported: the peer may be gone) and closes the stream, unblocking
// Read and Write. Keys are erased.
func (c *Conn) Close() error {
	if !c.closing.CompareAndSwap(false, true) {
		return c.opError("close", net.ErrClosed)
	}
	if c.out.TryLock() {
		if !c.out.fin && c.out.err == nil && c.abortErr.Load() == nil {
			_ = c.stream.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			_ = c.sendFINLocked()
		}
		c.closed.Store(true)
		c.out.seal.Zero()
		c.out.Unlock()
	}
	c.closed.Store(true)
	err := c.stream.Close()
	if errors.Is(err, net.ErrClosed) {
		// The stream is already gone: our own abort (authentication
		// failure, truncation) closed it, or its owner did. Close has
		// still done its job; an error here would only confuse callers.
		err = nil
	}
	if c.in.TryLock() {
		c.in.open.Zero()
		clear(c.in.buf[:cap(c.in.buf)])
		c.in.plain = nil
		c.in.Unlock()
	}
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// abort records err and aborts the stream (RST if possible), as RFC 8548
// §3.6/§3.7 ask on authentication failure and truncation.
func (c *Conn) abort(err error) {
	if c.abortErr.CompareAndSwap(nil, &err) {
		abortStream(c.stream)
	}
}

// streamReadError turns an error from the stream's Read into ours.
func (c *Conn) streamReadError(err error) error {
	switch {
	case isTimeout(err):
		return err // not sticky: the partial frame is kept
	case c.closed.Load():
		return c.opError("read", net.ErrClosed)
	}
	if p := c.abortErr.Load(); p != nil {
		c.in.err = *p
		return c.in.err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// TC-32/TC-46: FIN without FINp is a truncation, not EOF.
		c.in.err = ErrTruncated
		c.abort(ErrTruncated)
		return c.in.err
	}
	c.in.err = c.classify("read", err)
	return c.in.err
}

// classify wraps a transport error as ErrAborted (unless it is ours).
func (c *Conn) classify(op string, err error) error {
	if c.closed.Load() {
		return c.opError(op, net.ErrClosed)
	}
	if p := c.abortErr.Load(); p != nil {
		return *p
	}
	return fmt.Errorf("%w: %s: %w", ErrAborted, op, err)
}

func (c *Conn) deadlinePassed() bool {
	d := c.writeDeadline.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcpcrypt", Source: c.stream.LocalAddr(), Addr: c.stream.RemoteAddr(), Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
