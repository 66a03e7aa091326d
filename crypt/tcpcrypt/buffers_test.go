package tcpcrypt

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

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

// pollDeadline is how long the tests below let a read wait before it
// times out: a caller polling an idle stream.
const pollDeadline = 2 * time.Millisecond

// WriteTo delivers the stream exactly and returns nil at FINp; a stream
// read that times out is returned, leaves the Conn usable, and with
// nothing buffered leaves it holding no receive buffer, so a caller that
// waits for the stream itself (the relay) holds no memory while it idles.
func TestWriteToReleasesBufferWhileIdle(t *testing.T) {
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, tcpStreams)
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
	var total int64
	idle := 0
	for {
		cb.SetReadDeadline(time.Now().Add(pollDeadline))
		n, err := cb.WriteTo(&got)
		total += n
		if err == nil {
			break
		}
		if !isTimeout(err) {
			t.Fatalf("WriteTo: %v", err)
		}
		in := &cb.in
		switch {
		case in.buf == nil:
			idle++
		case in.r == in.w:
			t.Fatalf("receive buffer (%d bytes) held with nothing in it after a timeout", cap(in.buf))
		}
	}
	if total != int64(want.Len()) || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("WriteTo: %d bytes, equal %v; want %d", total, bytes.Equal(got.Bytes(), want.Bytes()), want.Len())
	}
	if idle < 6 {
		t.Errorf("idle without a buffer %d times over 12 paced writes; want most of them", idle)
	}
}

// WriteTo reports a truncated stream (FIN without FINp) as ErrTruncated.
func TestWriteToTruncated(t *testing.T) {
	var a net.Conn
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, func(t testing.TB) (net.Conn, net.Conn) {
		x, b := tcpStreams(t)
		a = x
		return x, b
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

// ReadFrom returns a source's timeout as it is and can be called again:
// the caller waits for the source itself between calls, and every byte is
// delivered once.
func TestReadFromResumesAfterSourceTimeout(t *testing.T) {
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, tcpStreams)
	srcW, src := tcpStreams(t)
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
	timeouts := 0
	go func() {
		for {
			src.SetReadDeadline(time.Now().Add(pollDeadline))
			_, err := ca.ReadFrom(src)
			if err == nil {
				done <- ca.CloseWrite()
				return
			}
			if !isTimeout(err) {
				done <- err
				return
			}
			timeouts++
		}
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
	if timeouts < 5 {
		t.Errorf("source timed out %d times over 10 paced writes", timeouts)
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
