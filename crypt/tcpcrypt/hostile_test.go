package tcpcrypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// hostileWait bounds how long a hostile-peer test waits for the victim to
// give up. Generous (the race detector, a loaded machine): it only turns a
// hang into a failure and says nothing about speed.
const hostileWait = 10 * time.Second

// floodRekey makes c send one empty frame with rekey = 1 even though its
// earlier rekeys are unanswered: what a hostile peer does, and what Rekey
// refuses (TC-36).
func floodRekey(c *Conn) error {
	c.out.Lock()
	defer c.out.Unlock()
	c.out.seal.Rekey()
	return c.sealAndSendLocked(nil, false)
}

// waitErr waits for one result of a goroutine, failing the test after
// hostileWait.
func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(hostileWait):
		t.Fatalf("%s did not return within %v (hang or spin)", what, hostileWait)
		return nil
	}
}

// TestRekeyFlood: a peer floods empty rekey frames (RFC 8548 §3.8) while
// our direction cannot drain (it does not read; net.Pipe buffers nothing,
// like a zero window), then starts reading. We owe one answer frame per
// generation; past maxRekeyLead the connection is aborted with
// ErrRekeyFlood: Read and a blocked Write return it, Close returns at once,
// no goroutine stays (and none spins: before the fix the writer looped for
// ever in its catch-up once the sealer refused more pending generations).
func TestRekeyFlood(t *testing.T) {
	for _, tc := range []struct {
		name    string
		writing bool // the victim has a Write blocked on the stream
	}{
		{"blocked-write", true},
		{"idle", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			p := newRecordedPair(t, pipeStreams, &Config{})
			victim, attacker := p.cb, p.ca
			wrote := make(chan error, 1)
			if tc.writing {
				go func() { _, err := victim.Write(make([]byte, 4*frame.MaxCLen)); wrote <- err }()
			}
			read := make(chan error, 1)
			go func() { _, err := io.Copy(io.Discard, victim); read <- err }()
			time.Sleep(10 * time.Millisecond) // let the Write take the lock

			sent := 0
			for ; sent < 1100; sent++ {
				if floodRekey(attacker) != nil {
					break // the victim aborted the stream
				}
			}
			// Start reading our answers (the window opens): before the
			// fix, this is when the victim's writer started to spin.
			go io.Copy(io.Discard, p.recA.Conn)

			err := waitErr(t, read, "victim's Read")
			if !errors.Is(err, ErrRekeyFlood) {
				t.Fatalf("victim's Read: %v, want ErrRekeyFlood", err)
			}
			if sent > maxRekeyLead+2 {
				t.Errorf("the victim accepted %d rekey frames, want it to abort after about %d", sent, maxRekeyLead)
			}
			if tc.writing {
				if err := waitErr(t, wrote, "victim's Write"); !errors.Is(err, ErrRekeyFlood) {
					t.Fatalf("victim's Write: %v, want ErrRekeyFlood", err)
				}
			}
			if _, err := victim.Write([]byte("x")); !errors.Is(err, ErrRekeyFlood) {
				t.Fatalf("Write after the abort: %v, want ErrRekeyFlood", err)
			}
			closed := make(chan error, 1)
			go func() { closed <- victim.Close() }()
			if err := waitErr(t, closed, "victim's Close"); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// TestRekeyLeadWithinBound: a peer that stays within maxRekeyLead
// generations ahead (volume rekeys while our writer is blocked) is served
// normally and every answer arrives once our direction drains.
func TestRekeyLeadWithinBound(t *testing.T) {
	checkLeaks(t)
	p := newRecordedPair(t, pipeStreams, &Config{})
	big := make([]byte, 3*frame.MaxCLen)
	wrote := make(chan error, 1)
	go func() { _, err := p.cb.Write(big); wrote <- err }()
	read := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, p.cb); read <- err }()
	time.Sleep(10 * time.Millisecond)
	for range maxRekeyLead {
		if err := floodRekey(p.ca); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.ReadFull(p.ca, make([]byte, len(big))); err != nil {
		t.Fatalf("A read: %v", err)
	}
	if err := waitErr(t, wrote, "B's Write"); err != nil {
		t.Fatal(err)
	}
	waitRemote(t, p.ca, maxRekeyLead)
	p.ca.CloseWrite()
	if err := waitErr(t, read, "B's Read"); err != nil {
		t.Fatal(err)
	}
}

// TestReadFromClearsBufferWhenManyRekeysOwed: ReadFrom seals a frame in
// place in its pooled buffer, which has room for four empty rekey frames
// before it. When more are owed (the peer ran further ahead), the frames
// are built elsewhere; the plaintext left in the buffer must be erased
// before the buffer goes back to the pool.
func TestReadFromClearsBufferWhenManyRekeysOwed(t *testing.T) {
	for _, owed := range []uint64{1, 4, 5, 6, 40} {
		t.Run(fmt.Sprint(owed), func(t *testing.T) {
			p := newRecordedPair(t, pipeStreams, &Config{})
			go io.Copy(io.Discard, p.recA.Conn)
			c := p.cb
			c.remoteGen.Store(owed) // as if the peer's rekey frames had been read
			off := frame.DataOffset(false)
			slack := off + c.aead.Overhead + 4*(frame.HeaderLen+1+c.aead.Overhead) // as readFrom
			const m = 4096
			buf := make([]byte, m+slack)
			secret := bytes.Repeat([]byte("PLAINTEXT"), m/9+1)[:m]
			copy(buf[off:], secret)
			if n, err := c.sealFromLocked(buf, m, false); n != m || err != nil {
				t.Fatalf("sealFromLocked: %d, %v", n, err)
			}
			if bytes.Contains(buf, []byte("PLAINTEXT")) {
				t.Fatalf("%d rekey frames owed: plaintext left in the buffer", owed)
			}
			if l, _ := c.Generations(); l != owed {
				t.Fatalf("local generation %d, want %d", l, owed)
			}
		})
	}
}

// TestBadFrameAtEveryBoundary: after each whole frame of a recorded
// stream, a hostile frame follows: clen too short for flags and tag,
// reserved control bits, the largest clen (65535) with garbage, the
// largest clen with the stream ending inside it. The reader delivers all
// data before it, then ends with ErrAuth (ErrTruncated for the cut one):
// never EOF, never a panic, never more than one frame buffered.
func TestBadFrameAtEveryBoundary(t *testing.T) {
	wire, plain, _, sess := recordStream(t)
	bounds := frameBounds(t, wire, plain, sess)
	garbage := make([]byte, frame.MaxCLen)
	detRand(9).Read(garbage)
	header := func(control byte, clen int) []byte {
		return []byte{control, byte(clen >> 8), byte(clen)}
	}
	bad := []struct {
		name string
		b    []byte
		want error
	}{
		{"clen-0", header(0, 0), ErrAuth},
		{"clen-1", append(header(0, 1), 0), ErrAuth},
		{"clen-tag-only", append(header(0, 16), garbage[:16]...), ErrAuth},
		{"reserved-control", append(header(0xfe, 40), garbage[:40]...), ErrAuth},
		{"rekey-garbage", append(header(frame.ControlRekey, 40), garbage[:40]...), ErrAuth},
		{"max-clen", append(header(0, frame.MaxCLen), garbage...), ErrAuth},
		{"max-clen-rekey", append(header(frame.ControlRekey, frame.MaxCLen), garbage...), ErrAuth},
		{"max-clen-cut", append(header(0, frame.MaxCLen), garbage[:1000]...), ErrTruncated},
		{"header-cut", header(0, frame.MaxCLen)[:2], ErrTruncated},
	}
	for _, bd := range bounds[:len(bounds)-1] { // the last bound is after FINp
		for _, b := range bad {
			in := append(bytes.Clone(wire[:bd[0]]), b.b...)
			got, hsErr, err := replayB(t, in, sess())
			if hsErr != nil {
				t.Fatalf("%s at %d: handshake %v", b.name, bd[0], hsErr)
			}
			if !errors.Is(err, b.want) || errors.Is(err, io.EOF) {
				t.Fatalf("%s at %d: error %v, want %v", b.name, bd[0], err, b.want)
			}
			if len(got) != bd[1] || !bytes.HasPrefix(plain, got) {
				t.Fatalf("%s at %d: delivered %d bytes, want the %d before it", b.name, bd[0], len(got), bd[1])
			}
		}
	}
}

// TestTamperLive: the same corruptions over a live TCP connection whose
// hostile peer keeps it open after the bad bytes: the reader must not
// wait for more, it ends with ErrAuth at once, having delivered every
// frame before the bad one, and resets the connection; no goroutine is
// left. A byte in each frame's body is flipped, and for one frame every
// byte (header included: a longer clen then waits for bytes that never
// come, which only Close ends).
func TestTamperLive(t *testing.T) {
	checkLeaks(t)
	wire, plain, _, sess := recordStream(t)
	bounds := frameBounds(t, wire, plain, sess)
	_, rb := freshResults(kex.X25519, unhex(t, "45032345040123"))
	var positions []int
	for i := range len(bounds) - 1 {
		start, end := bounds[i][0], bounds[i+1][0]
		positions = append(positions, start+frame.HeaderLen+(end-start-frame.HeaderLen)/2)
	}
	third := bounds[2][0]
	for pos := third; pos < bounds[3][0]; pos++ {
		positions = append(positions, pos)
	}
	for _, pos := range positions {
		a, b := tcpStreams(t)
		in := bytes.Clone(wire)
		in[pos] ^= 0x01
		peerEnd := make(chan error, 1)
		go func() {
			a.Write(in)
			_, err := io.Copy(io.Discard, a) // hold the connection open, read our side
			peerEnd <- err
		}()
		c, err := sess().Handshake(t.Context(), b, rb)
		if err != nil {
			t.Fatalf("pos %d: handshake %v", pos, err)
		}
		type res struct {
			got []byte
			err error
		}
		done := make(chan res, 1)
		go func() {
			got, err := io.ReadAll(c)
			done <- res{got, err}
		}()
		lengthByte := isLengthByte(wire, pos)
		wait := hostileWait
		if lengthByte {
			// A longer clen legitimately waits for its bytes; a shorter
			// one fails at once. Either is fine; Close must end it.
			wait = 200 * time.Millisecond
		}
		ended := false
		select {
		case r := <-done:
			ended = true
			if !errors.Is(r.err, ErrAuth) {
				t.Fatalf("pos %d: error %v, want ErrAuth", pos, r.err)
			}
			if want := deliveredBefore(bounds, pos); len(r.got) != want || !bytes.HasPrefix(plain, r.got) {
				t.Fatalf("pos %d: delivered %d bytes, want %d", pos, len(r.got), want)
			}
			select {
			case err := <-peerEnd:
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("pos %d: the peer's read ended with %v, want a reset", pos, err)
				}
			case <-time.After(hostileWait):
				t.Fatalf("pos %d: the connection was not reset", pos)
			}
		case <-time.After(wait):
			if !lengthByte {
				t.Fatalf("pos %d: reader still waiting on a corrupted frame", pos)
			}
		}
		if err := c.Close(); err != nil && !lengthByte {
			t.Fatalf("pos %d: Close: %v", pos, err)
		}
		if !ended {
			select {
			case <-done:
			case <-time.After(hostileWait):
				t.Fatalf("pos %d: Close did not end the waiting Read", pos)
			}
		}
		a.Close()
		b.Close()
	}
}
