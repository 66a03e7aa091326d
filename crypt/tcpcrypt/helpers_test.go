package tcpcrypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// detRand is a deterministic randomness source for tests (crypto/tls's
// zeroSource idea, but varied so nonces differ).
func detRand(seed uint64) io.Reader {
	return rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 0x7c})
}

// fixedClock is an injectable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fixedClock { return &fixedClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// negotiate runs the ENO SYN exchange between two real eno.Negotiators, A
// active with sa's Offer and B passive with sb as policy, feeding each
// one's Outgoing into the other's Incoming. It returns both results, or the
// error of whichever side fell back.
func negotiate(t testing.TB, sa, sb *Session) (ra, rb eno.Result, err error) {
	t.Helper()
	na := eno.NewActive(eno.Config{Offer: sa.Offer(), Policy: sa})
	nb := eno.NewPassive(eno.Config{Policy: sb})
	// SYN, SYN-ACK, ACK: the options areas hold just the ENO option.
	nb.Incoming(true, false, na.Outgoing(true, false), 0)
	na.Incoming(true, true, nb.Outgoing(true, true), 0)
	nb.Incoming(false, true, na.Outgoing(false, true), 0)
	ra, errA := na.Result()
	rb, errB := nb.Result()
	if errA != nil {
		return ra, rb, errA
	}
	return ra, rb, errB
}

// runHandshakes runs both handshakes concurrently over the two ends of a
// stream pair.
func runHandshakes(t testing.TB, sa, sb *Session, ra, rb eno.Result, a, b net.Conn) (ca, cb *Conn, errA, errB error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cb, errB = sb.Handshake(ctx, b, rb)
	}()
	ca, errA = sa.Handshake(ctx, a, ra)
	wg.Wait()
	return ca, cb, errA, errB
}

// host names the host a Config stands for, as a peer name for the cache.
func host(c *Config) string { return fmt.Sprintf("host-%p", c) }

// connPair negotiates and handshakes a Conn pair between cfgA (the active
// opener) and cfgB over streams from mk.
func connPair(t testing.TB, cfgA, cfgB *Config, pa, pb Policy, mk func(testing.TB) (net.Conn, net.Conn)) (*Conn, *Conn) {
	t.Helper()
	sa, sb := cfgA.NewSession(host(cfgB), pa), cfgB.NewSession(host(cfgA), pb)
	ra, rb, err := negotiate(t, sa, sb)
	if err != nil {
		t.Fatalf("ENO negotiation failed: %v", err)
	}
	a, b := mk(t)
	ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, b)
	if errA != nil || errB != nil {
		t.Fatalf("handshake: A: %v, B: %v", errA, errB)
	}
	// Streams first: over net.Pipe, Close would otherwise wait for the
	// peer to read our FINp frame.
	t.Cleanup(func() { a.Close(); b.Close(); ca.Close(); cb.Close() })
	return ca, cb
}

func pipeStreams(t testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tcpStreams returns the two ends of a real TCP connection on 127.0.0.1.
func tcpStreams(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// recConn records every Write to a stream.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (r *recConn) Write(b []byte) (int, error) {
	n, err := r.Conn.Write(b)
	r.mu.Lock()
	r.buf.Write(b[:n])
	r.writes++
	r.mu.Unlock()
	return n, err
}

// SetLinger and CloseWrite pass through (no-ops for streams without
// them), so aborts (RST) and half-closes reach a TCP stream under the
// recorder.
func (r *recConn) SetLinger(sec int) error {
	if l, ok := r.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

func (r *recConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (r *recConn) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// rwConn is a net.Conn over a reader and a writer (for replaying recorded
// streams).
type rwConn struct {
	io.Reader
	io.Writer
	closed bool
}

func (c *rwConn) Close() error                     { c.closed = true; return nil }
func (c *rwConn) LocalAddr() net.Addr              { return fakeAddr("local") }
func (c *rwConn) RemoteAddr() net.Addr             { return fakeAddr("remote") }
func (c *rwConn) SetDeadline(time.Time) error      { return nil }
func (c *rwConn) SetReadDeadline(time.Time) error  { return nil }
func (c *rwConn) SetWriteDeadline(time.Time) error { return nil }

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

// checkLeaks fails the test if goroutines started during it outlive it.
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var n int
		for range 100 {
			n = runtime.NumGoroutine()
			if n <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<16)
		t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	})
}

// vectors is crypt/testdata/vectors.json (written by an independent Python
// implementation).
func loadVectors(t testing.TB) *kat.File { return kat.Load(t) }

// aeadIDs converts the vectors' cipher IDs.
func aeadIDs(ids []uint16) []schedule.AEADID {
	out := make([]schedule.AEADID, len(ids))
	for i, id := range ids {
		out[i] = schedule.AEADID(id)
	}
	return out
}

// mustGroup looks a TEP up.
func mustGroup(t testing.TB, id kex.ID) kex.Group {
	t.Helper()
	g, ok := kex.Lookup(id)
	if !ok {
		t.Fatalf("no group %v", id)
	}
	return g
}

// wantErrIs fails unless errors.Is(err, target).
func wantErrIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// freshResults builds ENO results for a fresh exchange of tep by hand, with
// the given transcript.
func freshResults(tep kex.ID, transcript []byte) (ra, rb eno.Result) {
	ra = eno.Result{TEP: byte(tep), TEPByte: byte(tep), Role: eno.RoleA, Transcript: transcript,
		ASubs: []eno.Suboption{{TEP: byte(tep)}}, BSubs: []eno.Suboption{{TEP: byte(tep)}}}
	rb = ra
	rb.Role = eno.RoleB
	return ra, rb
}
