package tcpcrypt

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
)

// recordA is a connPair stream maker that records what A sends.
func recordA(rec **recConn) func(testing.TB) (net.Conn, net.Conn) {
	return func(t testing.TB) (net.Conn, net.Conn) {
		a, b := tcpStreams(t)
		*rec = &recConn{Conn: a}
		return *rec, b
	}
}

// frameLens splits a recorded stream into its frames' lengths.
func frameLens(t *testing.T, wire []byte) []int {
	t.Helper()
	var out []int
	for len(wire) > 0 {
		n, ok := frame.FrameLen(wire)
		if !ok || n > len(wire) {
			t.Fatalf("partial frame at the end (%d bytes)", len(wire))
		}
		out = append(out, n)
		wire = wire[n:]
	}
	return out
}

// Policy.MaxFrame caps every frame sent, header and tag included, through
// Write and ReadFrom alike, and the peer still gets every byte.
func TestMaxFrameCapsFrames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxFrame int
		wantMax  int // largest frame expected
	}{
		{"segment-sized", 1448 * 3, 1448 * 3},
		{"below the overhead: one byte per frame", 5, frame.DataOffset(false) + 1 + 16},
		{"above the protocol maximum", 1 << 20, frame.HeaderLen + frame.MaxCLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec *recConn
			ca, cb := connPair(t, &Config{}, &Config{}, Policy{MaxFrame: tc.maxFrame}, Policy{}, recordA(&rec))
			init1 := len(rec.bytes())
			msg := pattern(200_000)
			if tc.maxFrame == 5 {
				msg = msg[:300]
			}
			done := make(chan []byte)
			go func() {
				got, _ := io.ReadAll(cb)
				done <- got
			}()
			half := len(msg) / 2
			if _, err := ca.Write(msg[:half]); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.ReadFrom(bytes.NewReader(msg[half:])); err != nil {
				t.Fatal(err)
			}
			if err := ca.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if got := <-done; !bytes.Equal(got, msg) {
				t.Fatalf("peer got %d bytes, equal %v; want %d", len(got), bytes.Equal(got, msg), len(msg))
			}
			lens := frameLens(t, rec.bytes()[init1:])
			largest := 0
			for _, n := range lens {
				largest = max(largest, n)
			}
			if largest != tc.wantMax {
				t.Errorf("largest of %d frames is %d bytes; want %d", len(lens), largest, tc.wantMax)
			}
		})
	}
}

// pattern returns n bytes that show where they were misplaced.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// countWriter counts the writes it gets.
type countWriter struct {
	bytes.Buffer
	writes int
	max    int
}

func (w *countWriter) Write(b []byte) (int, error) {
	w.writes++
	w.max = max(w.max, len(b))
	return w.Buffer.Write(b)
}

// WriteTo hands the data of frames that are already whole in its buffer to
// one Write, up to our own frame size, in order.
func TestWriteToCoalescesFrames(t *testing.T) {
	var rec *recConn
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{MaxFrame: 4000}, recordA(&rec))
	var want bytes.Buffer
	const frames = 60
	for i := range frames {
		p := pattern(700 + i)
		want.Write(p)
		if _, err := ca.Write(p); err != nil { // one frame each
			t.Fatal(err)
		}
	}
	if err := ca.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var got countWriter
	if _, err := cb.WriteTo(&got); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("got %d bytes, equal %v; want %d", got.Len(), bytes.Equal(got.Bytes(), want.Bytes()), want.Len())
	}
	if got.writes > frames/3 {
		t.Errorf("%d frames written in %d writes; want them coalesced", frames, got.writes)
	}
	if limit := 4000 - frame.DataOffset(false) - 16; got.max > limit {
		t.Errorf("a write of %d bytes; want at most %d (our frame data size)", got.max, limit)
	}
}

// A bad frame behind good ones: WriteTo delivers the good frames' data,
// then reports the authentication failure.
func TestWriteToCoalesceStopsAtBadFrame(t *testing.T) {
	var rec *recConn
	ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, recordA(&rec))
	for _, s := range []string{"one", "two"} {
		if _, err := ca.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// A frame of the right shape that does not authenticate.
	rec.Conn.Write([]byte{0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	var got countWriter
	_, err := cb.WriteTo(&got)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("WriteTo error %v; want ErrAuth", err)
	}
	if got.String() != "onetwo" {
		t.Fatalf("WriteTo delivered %q; want \"onetwo\"", got.String())
	}
}

// ReadFromAndClose puts FINp on the frame with the source's last bytes when
// the source's end is known with them (data returned with io.EOF), so a
// response followed by close is one frame; otherwise an empty
// FINp frame follows as with CloseWrite. Either way the peer reads every
// byte and a clean end (TC-31). ReadFrom never sets FINp.
func TestReadFromAndCloseFINOnLastFrame(t *testing.T) {
	msg := []byte("one response, then close")
	for _, tc := range []struct {
		name   string
		msg    []byte
		src    func(msg []byte) io.Reader
		frames int // 0: not checked
	}{
		{"data with EOF", msg, func(m []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(m)) }, 1},
		{"end not known", msg, func(m []byte) io.Reader { return bytes.NewReader(m) }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec *recConn
			ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, recordA(&rec))
			init1 := len(rec.bytes())
			done := make(chan error, 1)
			var got []byte
			go func() {
				var err error
				got, err = io.ReadAll(cb)
				done <- err
			}()
			if n, err := ca.ReadFromAndClose(tc.src(tc.msg)); err != nil || n != int64(len(tc.msg)) {
				t.Fatalf("ReadFromAndClose = %d, %v", n, err)
			}
			if err := <-done; err != nil || !bytes.Equal(got, tc.msg) {
				t.Fatalf("peer read %d bytes, %v; want %d and a clean end", len(got), err, len(tc.msg))
			}
			lens := frameLens(t, rec.bytes()[init1:])
			if tc.frames != 0 && len(lens) != tc.frames {
				t.Fatalf("%d frames %v, want %d", len(lens), lens, tc.frames)
			}
			empty := frame.DataOffset(false) + 16
			if wantEmpty := tc.frames != 1; (lens[len(lens)-1] == empty) != wantEmpty {
				t.Fatalf("frames %v: last one empty %v, want %v", lens, !wantEmpty, wantEmpty)
			}
			if _, err := ca.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
				t.Fatalf("Write after ReadFromAndClose: %v, want ErrWriteClosed", err)
			}
		})
	}
	t.Run("ReadFrom", func(t *testing.T) {
		ca, cb := connPair(t, &Config{}, &Config{}, Policy{}, Policy{}, tcpStreams)
		if _, err := ca.ReadFrom(iotest.DataErrReader(bytes.NewReader(msg))); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Write(msg); err != nil {
			t.Fatalf("Write after ReadFrom: %v", err)
		}
		if err := ca.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(cb); err != nil || !bytes.Equal(got, append(slices.Clone(msg), msg...)) {
			t.Fatalf("peer read %q, %v", got, err)
		}
	})
}
