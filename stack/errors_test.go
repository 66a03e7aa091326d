package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// TestDialRefusedIsECONNREFUSED: a dial to a port nobody listens on fails
// with an error that errors.Is syscall.ECONNREFUSED, inside a *net.OpError.
func TestDialRefusedIsECONNREFUSED(t *testing.T) {
	p := newPair(t, pairOpts{})
	_, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 9), nil)
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &oe) || oe.Op != "dial" {
		t.Fatalf("dial to a closed port: %v (%T), want a dial *net.OpError wrapping ECONNREFUSED", err, err)
	}
	if errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("%v is a timeout too", err)
	}
}

// TestTimeoutsTestable: a connection whose peer stops answering fails
// with syscall.ETIMEDOUT (gVisor's retransmission timeout, as the kernel's),
// a net.Error with Timeout; a dial cut short by its context's deadline
// returns an error that is both context.DeadlineExceeded and, as from
// net.Dialer, os.ErrDeadlineExceeded. (A dial whose SYNs go unanswered
// ends the same way as the first, after gVisor's SYN back-off of minutes,
// too long for a test.)
func TestTimeoutsTestable(t *testing.T) {
	var drop atomic.Bool
	p := newPair(t, pairOpts{hookAB: func(*wiretest.Packet) wiretest.Verdict { return wiretest.Verdict{Drop: drop.Load()} }})
	client, _ := dialAccept(t, p, false, 80, &Policy{Default: eno.ModeOff}, &Policy{Default: eno.ModeOff})
	uto := tcpip.TCPUserTimeoutOption(300 * time.Millisecond)
	if terr := client.stream.ep.SetSockOpt(&uto); terr != nil {
		t.Fatal(terr)
	}
	drop.Store(true)
	if _, err := client.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := client.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, syscall.ETIMEDOUT) || !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with the peer gone: %v (%T), want ETIMEDOUT", err, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 81), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) ||
		!errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial past its context's deadline: %v, want context.DeadlineExceeded and os.ErrDeadlineExceeded", err)
	}
}

// TestStreamErrorsTestable: on an established connection, a read past its
// deadline is os.ErrDeadlineExceeded (as with net.Conn) and a reset by the
// peer is syscall.ECONNRESET, plain or encrypted.
func TestStreamErrorsTestable(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  *Policy
	}{{"plain", &Policy{Default: eno.ModeOff}}, {"tcpcrypt", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, pairOpts{})
			client, server := dialAccept(t, p, false, 80, tc.pol, tc.pol)
			client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := client.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
			}
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			server.Abort()
			_, err := io.ReadAll(client)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read after the peer's reset: %v, want ECONNRESET", err)
			}
		})
	}
}

// TestNetErrorMapping: the mapping itself, and the text gonet flattens.
func TestNetErrorMapping(t *testing.T) {
	for _, c := range []struct {
		terr tcpip.Error
		want syscall.Errno
	}{
		{&tcpip.ErrConnectionRefused{}, syscall.ECONNREFUSED},
		{&tcpip.ErrTimeout{}, syscall.ETIMEDOUT},
		{&tcpip.ErrConnectionReset{}, syscall.ECONNRESET},
		{&tcpip.ErrConnectionAborted{}, syscall.ECONNABORTED},
		{&tcpip.ErrHostUnreachable{}, syscall.EHOSTUNREACH},
		{&tcpip.ErrNetworkUnreachable{}, syscall.ENETUNREACH},
		{&tcpip.ErrPortInUse{}, syscall.EADDRINUSE},
	} {
		err := netErr(c.terr)
		if !errors.Is(err, c.want) || err.Error() != c.terr.String() {
			t.Errorf("netErr(%T) = %v, want %v with gVisor's text", c.terr, err, c.want)
		}
		flat := &net.OpError{Op: "read", Err: errors.New(c.terr.String())}
		if c.want != syscall.EADDRINUSE && !errors.Is(streamErr(flat), c.want) {
			t.Errorf("streamErr(%q) not %v", c.terr.String(), c.want)
		}
	}
	if netErr(nil) != nil {
		t.Error("netErr(nil) != nil")
	}
	other := &net.OpError{Op: "read", Err: errors.New("something else")}
	if err := streamErr(other); err != other || errors.Unwrap(err).Error() != "something else" {
		t.Errorf("streamErr changed an unknown error: %v", err)
	}
}
