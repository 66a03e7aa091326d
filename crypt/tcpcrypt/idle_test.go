package tcpcrypt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// waitConn is a stream that implements ReadWaiter over a bufio.Reader: it
// counts the times it had to block and runs onIdle right after idle.
type waitConn struct {
	net.Conn
	br     *bufio.Reader
	idles  atomic.Int32
	onIdle func()
}

func newWaitConn(c net.Conn) *waitConn { return &waitConn{Conn: c, br: bufio.NewReader(c)} }

func (w *waitConn) Read(b []byte) (int, error) { return w.br.Read(b) }

func (w *waitConn) WaitRead(idle func()) error {
	if w.br.Buffered() > 0 {
		return nil
	}
	w.idles.Add(1)
	idle()
	if w.onIdle != nil {
		w.onIdle()
	}
	if _, err := w.br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (w *waitConn) CloseWrite() error { return w.Conn.(*net.TCPConn).CloseWrite() }

// chunks returns n random chunks of random sizes up to max.
func chunks(seed uint64, n, max int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var out [][]byte
	for range n {
		b := make([]byte, 1+r.IntN(max))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		out = append(out, b)
	}
	return out
}

// WriteTo delivers the stream exactly, returns nil at FINp, and holds no
// receive buffer while it waits for data.
func TestWriteToReleasesBufferWhileIdle(t *testing.T) {
	var wb *waitConn
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, func(t testing.TB) (net.Conn, net.Conn) {
		a, b := tcpStreams(t)
		wb = newWaitConn(b)
		return a, wb
	})
	var heldWhileIdle atomic.Int32
	wb.onIdle = func() {
		if cb.in.buf != nil { // WriteTo holds the receive lock here
			heldWhileIdle.Add(1)
		}
	}
	parts := chunks(1, 12, 200_000)
	var want bytes.Buffer
	go func() {
		for _, p := range parts {
			ca.Write(p)
			time.Sleep(5 * time.Millisecond) // let B go idle
		}
		ca.CloseWrite()
	}()
	for _, p := range parts {
		want.Write(p)
	}
	var got bytes.Buffer
	n, err := cb.WriteTo(&got)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(want.Len()) || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("WriteTo: %d bytes, equal %v; want %d", n, bytes.Equal(got.Bytes(), want.Bytes()), want.Len())
	}
	if wb.idles.Load() < 6 {
		t.Errorf("went idle %d times over 12 paced writes; want most of them", wb.idles.Load())
	}
	if h := heldWhileIdle.Load(); h > 0 {
		t.Errorf("receive buffer held during %d idle waits", h)
	}
}

// WriteTo reports a truncated stream (FIN without FINp) as ErrTruncated.
func TestWriteToTruncated(t *testing.T) {
	var a net.Conn
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, func(t testing.TB) (net.Conn, net.Conn) {
		x, b := tcpStreams(t)
		a = x
		return x, newWaitConn(b)
	})
	if _, err := ca.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	a.(*net.TCPConn).CloseWrite() // FIN, no FINp
	var got bytes.Buffer
	_, err := cb.WriteTo(&got)
	if !errors.Is(err, ErrTruncated) || got.String() != "hello" {
		t.Fatalf("WriteTo = %q, %v; want \"hello\", ErrTruncated", got.String(), err)
	}
}

// ReadFrom from a ReadWaiter gives its buffer back while the source idles
// and still delivers every byte.
func TestReadFromReleasesBufferWhileIdle(t *testing.T) {
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, tcpStreams)
	srcW, srcR := tcpStreams(t)
	src := newWaitConn(srcR)
	parts := chunks(2, 10, 150_000)
	var want bytes.Buffer
	for _, p := range parts {
		want.Write(p)
	}
	go func() {
		for _, p := range parts {
			srcW.Write(p)
			time.Sleep(5 * time.Millisecond)
		}
		srcW.(*net.TCPConn).CloseWrite()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := ca.ReadFrom(src)
		if err == nil {
			err = ca.CloseWrite()
		}
		done <- err
	}()
	got, err := io.ReadAll(cb)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d (equal %v)", len(got), want.Len(), bytes.Equal(got, want.Bytes()))
	}
	if src.idles.Load() < 5 {
		t.Errorf("source went idle %d times over 10 paced writes", src.idles.Load())
	}
}

// Buffers come back from the pool at the size asked for.
func TestBufPool(t *testing.T) {
	for _, size := range []int{4 << 10, 65538, 200 << 10} {
		b := getBuf(size)
		if len(b) != size {
			t.Fatalf("getBuf(%d): len %d", size, len(b))
		}
		putBuf(b)
		if b2 := getBuf(size); len(b2) != size || cap(b2) != size {
			t.Fatalf("getBuf(%d) after put: len %d cap %d", size, len(b2), cap(b2))
		}
	}
}
