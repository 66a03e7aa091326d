package tcpcrypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
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
