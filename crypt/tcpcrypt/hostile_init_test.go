package tcpcrypt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// hostileDeadline bounds how long a handshake may take to give up on a bad
// message. The handshake itself has no deadline here (context.Background):
// a hang is the failure this catches, not slowness.
const hostileDeadline = 10 * time.Second

// feedInit runs our side of a handshake (B when init1 is true, else A)
// against a peer that writes msg and then closes its end, and returns the
// handshake's result. It fails the test if the handshake neither succeeds
// nor fails within hostileDeadline.
func feedInit(t *testing.T, tep kex.ID, init1 bool, msg []byte) hsResult {
	t.Helper()
	a, b := pipeStreams(t)
	peer, ours := a, b
	var ch chan hsResult
	if init1 {
		ch = startB(t, &Config{}, tep, ours)
	} else {
		peer, ours = b, a
		ch = startA(t, &Config{}, tep, ours)
		// A speaks first: take its Init1 off the pipe.
		readMessage(peer, "init1", Init1Magic, 0)
	}
	go func() {
		peer.Write(msg) // fails once our side stops reading and closes
		peer.Close()
	}()
	select {
	case r := <-ch:
		ours.Close()
		if r.c != nil {
			r.c.Close()
		}
		return r
	case <-time.After(hostileDeadline):
		ours.Close()
		t.Fatalf("handshake still running %v after a hostile message of %d bytes", hostileDeadline, len(msg))
		return hsResult{}
	}
}

// validInit returns a well-formed Init1 (or Init2) with a real public key
// of tep.
func validInit(t *testing.T, tep kex.ID, init1 bool) []byte {
	t.Helper()
	p := newManualPeer(t, tep, nil)
	pub := p.priv.AppendPublic(nil)
	var raw []byte
	var err error
	if init1 {
		raw, err = (&Init1{Ciphers: []schedule.AEADID{schedule.AES128GCM, schedule.ChaCha20Poly1305}, Pub: pub}).Marshal()
	} else {
		raw, err = (&Init2{Cipher: schedule.AES128GCM, Pub: pub}).Marshal()
	}
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestHostileInitEveryOffset is part of the hostile-peer suite: a peer
// sends our host B an Init1 (or our host A an Init2) that is cut short, or
// has one byte corrupted, at every offset, or claims a length far beyond
// what it sends. Each handshake must end, with a handshake error wherever
// the message cannot be valid; none may hang, panic or leak a goroutine.
// A corrupted byte inside the public key or nonce may still leave a valid
// message (the peer simply holds other keys): that handshake may succeed,
// and the keys then differ from the honest peer's, which the frame tests
// cover.
func TestHostileInitEveryOffset(t *testing.T) {
	checkLeaks(t)
	for _, tep := range []kex.ID{kex.X25519, kex.P256} {
		for _, init1 := range []bool{true, false} {
			name := fmt.Sprintf("%v/init2", tep)
			if init1 {
				name = fmt.Sprintf("%v/init1", tep)
			}
			t.Run(name, func(t *testing.T) {
				raw := validInit(t, tep, init1)
				// The unmodified message completes: the harness itself works.
				if r := feedInit(t, tep, init1, raw); init1 && r.err != nil {
					// B answers with Init2 into a closed pipe, so only
					// host B's success is checkable here; host A's
					// handshake needs nothing more than Init2.
					t.Logf("honest Init1: %v (write of Init2 into the closed pipe)", r.err)
				} else if !init1 && r.err != nil {
					t.Fatalf("honest Init2 refused: %v", r.err)
				}
				for i := 0; i < len(raw); i++ {
					r := feedInit(t, tep, init1, raw[:i])
					if r.err == nil {
						t.Fatalf("message cut to %d of %d bytes accepted", i, len(raw))
					}
					if !errors.Is(r.err, ErrHandshake) {
						t.Fatalf("cut to %d bytes: %v is not a handshake error", i, r.err)
					}
					bad := append([]byte(nil), raw...)
					bad[i] ^= 0xff
					r = feedInit(t, tep, init1, bad)
					if i < initHeaderLen && r.err == nil {
						t.Fatalf("corrupted header byte %d accepted", i)
					}
					if r.err != nil && !errors.Is(r.err, ErrHandshake) {
						t.Fatalf("corrupted byte %d: %v is not a handshake error", i, r.err)
					}
				}
			})
		}
	}
}

// TestHostileInitOversized: a message_len above MaxMessageLen, or one that
// promises more than ever arrives, ends the handshake with an error at
// once, whatever the peer claims.
func TestHostileInitOversized(t *testing.T) {
	checkLeaks(t)
	for _, init1 := range []bool{true, false} {
		raw := validInit(t, kex.X25519, init1)
		for _, claim := range []uint32{MaxMessageLen + 1, 1 << 20, 0xffffffff} {
			bad := append([]byte(nil), raw...)
			binary.BigEndian.PutUint32(bad[4:8], claim)
			r := feedInit(t, kex.X25519, init1, bad)
			if r.err == nil {
				t.Fatalf("init1=%v message_len %d accepted", init1, claim)
			}
			wantHandshakeError(t, r, "bad-message")
		}
		// A message padded past the limit with an "ignored" trailer.
		big := append([]byte(nil), raw...)
		big = append(big, make([]byte, MaxMessageLen)...)
		binary.BigEndian.PutUint32(big[4:8], uint32(len(big)))
		if r := feedInit(t, kex.X25519, init1, big); r.err == nil {
			t.Fatalf("init1=%v message of %d bytes accepted", init1, len(big))
		}
	}
}
