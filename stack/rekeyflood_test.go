package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// A tcpcrypt peer that floods rekey frames behind a zero window (it never
// reads while the backend sends) is misbehaving (RFC 8548 §3.8): the
// service resets both legs, the backend's and the peer's, counts the event,
// and its Close does not block. Before the fix the relay never ended (its
// writer owed more answers than the sealer would hold, and spun once the
// window opened), so the table entry, the goroutines and Close all hung.
func TestServiceRekeyFloodResetsBothLegs(t *testing.T) {
	// The attacker is a tcpcrypt peer built from crypt/ that rekeys by
	// volume after every byte: each 1-byte Write is a frame with
	// rekey = 1, a new generation we must answer.
	p := newPair(t, pairOpts{
		a:         func(o *Options) { o.TCPCrypt = &tcpcrypt.Config{RekeyAfter: 1} },
		noCapture: true,
	})
	backendDone := make(chan error, 2)
	dial := func(context.Context, *Conn) (net.Conn, error) {
		relaySide, backend := net.Pipe()
		go func() { // the backend talks a lot, filling the peer's window
			chunk := make([]byte, 32<<10)
			for {
				if _, err := backend.Write(chunk); err != nil {
					backendDone <- err
					return
				}
			}
		}()
		go func() {
			_, err := io.Copy(io.Discard, backend)
			backend.Close()
			backendDone <- err
		}()
		return relaySide, nil
	}
	sv, err := p.b.Serve(addrB4, 443, nil, dial, 0)
	if err != nil {
		t.Fatal(err)
	}
	svClosed := false
	defer func() {
		if !svClosed {
			sv.Close()
		}
	}()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if neg := c.Negotiation(); !neg.Encrypted {
		t.Fatalf("not encrypted: %+v", neg)
	}
	// Let the backend fill the peer's receive window and our send buffer.
	waitFor(t, func() bool {
		infos := p.b.Table().List()
		return len(infos) == 1 && infos[0].BytesInnerToOuter > 512<<10
	}, "the backend's data to back up")
	time.Sleep(50 * time.Millisecond)

	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sent := 0
	for ; sent < 3000; sent++ {
		if _, err := c.Write([]byte{'r'}); err != nil {
			break // reset by the service
		}
	}
	waitFor(t, func() bool { return p.b.Counters().RekeyFloods.Load() == 1 }, "the rekey flood to be counted")
	waitFor(t, func() bool { return p.b.Table().Len() == 0 }, "the relay to end")
	for range 2 {
		select {
		case <-backendDone: // the backend leg was closed (a pipe has no RST)
		case <-time.After(10 * time.Second):
			t.Fatal("the backend leg stayed open")
		}
	}
	// The peer's leg was reset: it never sees a clean end.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("the peer read to %v, want a reset", err)
	}
	closed := make(chan struct{})
	go func() { sv.Close(); close(closed) }()
	svClosed = true
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Service.Close blocked")
	}
	if n := p.b.Counters().Snapshot()["rekey-floods"]; n != 1 {
		t.Fatalf("rekey-floods %d, want 1", n)
	}
}
