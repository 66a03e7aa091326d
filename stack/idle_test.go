package stack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// peekEnd is a relay source that tells when it has nothing left.
type peekEnd struct {
	r     io.Reader
	left  *bytes.Reader
	peeks int
}

func (p *peekEnd) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *peekEnd) PeekEOF() bool              { p.peeks++; return p.left.Len() == 0 }

func newPeekEnd(b []byte, wrap func(io.Reader) io.Reader) *peekEnd {
	br := bytes.NewReader(b)
	return &peekEnd{r: wrap(br), left: br}
}

// countingReader returns a short read's data with io.EOF when its source
// says the end is there (so ReadFromAndClose puts FINp on the last data
// frame), but only over the first peekEOFLimit bytes; and counts bytes.
func TestCountingReaderPeeksEOF(t *testing.T) {
	var n atomic.Uint64
	msg := []byte("one response, then close")
	cr := &countingReader{r: newPeekEnd(msg, func(r io.Reader) io.Reader { return r }), n: &n}
	m, err := cr.Read(make([]byte, 4096))
	if m != len(msg) || err != io.EOF || n.Load() != uint64(len(msg)) {
		t.Fatalf("short last read: %d, %v (counted %d); want %d, io.EOF", m, err, n.Load(), len(msg))
	}

	big := pattern(peekEOFLimit+10_000, "BULK|")
	src := newPeekEnd(big, iotest.HalfReader)
	cr = &countingReader{r: src, n: &n}
	var got bytes.Buffer
	buf := make([]byte, 8192)
	for {
		m, err := cr.Read(buf)
		got.Write(buf[:m])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), big) {
		t.Fatalf("read %d bytes, want %d", got.Len(), len(big))
	}
	if max := peekEOFLimit/(len(buf)/2) + 1; src.peeks > max {
		t.Fatalf("%d peeks, want at most %d (only the first %d bytes peek)", src.peeks, max, peekEOFLimit)
	}
}

// A kernel socket with nothing to read is errWouldBlock to ReadFrom (a
// timeout, and os.ErrDeadlineExceeded), so the relay direction gives its
// buffer back and waits for the socket without one; with data it reads.
func TestCountingReaderWouldBlock(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var n atomic.Uint64
	cr := &countingReader{r: &netLeg{Conn: r}, n: &n}
	_, err = cr.Read(make([]byte, 10))
	var ne net.Error
	if err != errWouldBlock || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle socket: %v, want errWouldBlock", err)
	}
	w.Write([]byte("data"))
	if err := cr.WaitRead(func() {}); err != nil {
		t.Fatal(err)
	}
	if m, err := cr.Read(make([]byte, 10)); m != 4 || err != nil {
		t.Fatalf("after WaitRead: %d, %v", m, err)
	}
}
