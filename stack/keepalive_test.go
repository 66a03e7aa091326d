package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// shortKeepalive declares a silent peer gone after 0.3 s + 3 x 0.1 s.
var shortKeepalive = Keepalive{Idle: 300 * time.Millisecond, Interval: 100 * time.Millisecond, Count: 3}

// dropWhen drops every packet once armed: the peer behind it has vanished
// (powered off, unplugged, its route gone), sending nothing, not even a RST.
func dropWhen(armed *atomic.Bool) wiretest.Hook {
	return func(*wiretest.Packet) wiretest.Verdict { return wiretest.Verdict{Drop: armed.Load()} }
}

// wantReset fails unless err is a reset seen before the read deadline: not
// nil (a clean end), not a timeout (nothing noticed the peer was gone).
func wantReset(t *testing.T, who string, err error) {
	t.Helper()
	switch {
	case err == nil || errors.Is(err, io.EOF):
		t.Fatalf("%s: clean end, want a reset", who)
	case os.IsTimeout(err):
		t.Fatalf("%s: still open at the deadline (%v): the dead peer was never noticed", who, err)
	}
}

// A server that vanishes mid-connection: the forwarder's keepalive on the
// outer leg notices, the relay ends with a peer timeout, and the client's
// inner leg is reset (not closed with a FIN, which would look like a
// complete response). Without keepalive both legs stay open for ever: the
// client's own keepalives are answered by the forwarder's inner leg.
func TestForwarderKeepaliveResetsBothLegs(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name, func(t *testing.T) {
			var armed atomic.Bool
			var dl doneLog
			tr := newTrioWith(t, true, Options{OnConnDone: dl.hook, Relays: RelayOptions{Keepalive: shortKeepalive}},
				ForwarderOptions{}, dropWhen(&armed))
			srvAddr := addrS4
			if fam.v6 {
				srvAddr = addrS6
			}
			l, err := tr.s.Listen(srvAddr, 80, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(t)
			srv := make(chan *Conn, 1)
			go func() {
				if c, err := l.AcceptConn(ctx); err == nil {
					srv <- c
				}
			}()
			c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(srvAddr, 80), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-srv
			defer s.Close()
			pingPong(t, c, s)
			if !s.Encrypted() {
				t.Fatal("outer leg not encrypted")
			}

			armed.Store(true) // S vanishes: nothing it sends reaches F
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(c)
			wantReset(t, "client", err)
			t.Logf("client reset after %v: %v", time.Since(start), err)
			waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "table empty")
			_, errs := dl.wait(t, 1)
			if !IsPeerTimeout(errs[0]) {
				t.Fatalf("relay ended with %v, want a peer timeout", errs[0])
			}
			// The relay counts its end just after OnConnDone reports it.
			waitFor(t, func() bool { return tr.f.Counters().PeerTimeouts.Load() == 1 }, "PeerTimeouts = 1")
			if n, _ := tr.f.Relays(Outbound); n != 0 {
				t.Fatalf("%d relay slots still held", n)
			}
		})
	}
}

// pingPong sends a few bytes each way without closing anything.
func pingPong(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, d := range []struct{ from, to net.Conn }{{a, b}, {b, a}} {
		if _, err := d.from.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		d.to.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(d.to, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("read %q, %v", buf, err)
		}
		d.to.SetReadDeadline(time.Time{})
	}
}

// loopbackBackend listens on 127.0.0.1 and hands every accepted connection
// to conns.
func loopbackBackend(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			bc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { bc.Close() })
			conns <- bc
		}
	}()
	return ln, conns
}

func dialBackend(addr string) BackendDialer {
	return func(ctx context.Context, _ *Conn) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// A client that vanishes from a service: the service's keepalive on the
// client leg notices, and the backend's socket is reset (ECONNRESET), not
// closed with a FIN that would look like a complete request.
func TestServiceKeepaliveResetsBackend(t *testing.T) {
	var armed atomic.Bool
	var dl doneLog
	p := newPair(t, pairOpts{
		b:      func(o *Options) { o.OnConnDone, o.Relays.Keepalive = dl.hook, shortKeepalive },
		hookAB: dropWhen(&armed),
	})
	ln, conns := loopbackBackend(t)
	sv, err := p.b.Serve(addrB4, 443, nil, dialBackend(ln.Addr().String()), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Encrypted() {
		t.Fatal("not encrypted")
	}
	var bc net.Conn
	select {
	case bc = <-conns:
	case <-time.After(10 * time.Second):
		t.Fatal("backend never dialed")
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(bc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("backend read %q, %v", buf, err)
	}

	armed.Store(true) // A vanishes
	start := time.Now()
	bc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(bc)
	wantReset(t, "backend", err)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("backend: %v, want ECONNRESET", err)
	}
	t.Logf("backend reset after %v", time.Since(start))
	waitFor(t, func() bool { return p.b.Table().Len() == 0 }, "table empty")
	if _, errs := dl.wait(t, 1); !IsPeerTimeout(errs[0]) {
		t.Fatalf("relay ended with %v, want a peer timeout", errs[0])
	}
	waitFor(t, func() bool { return p.b.Counters().PeerTimeouts.Load() == 1 }, "PeerTimeouts = 1")
}

// holdAll accepts every connection on l and keeps it open until the
// client closes it (or the test ends).
func holdAll(t *testing.T, l *Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c) // until the client's FIN (or the test's end)
				c.Close()
			}()
			t.Cleanup(func() { c.Close() })
		}
	}()
}

// The forwarder refuses (RST to the application's SYN) a connection over
// the per-source or total relay limit, counts it, and takes connections
// again once relays end.
func TestForwarderRelayLimits(t *testing.T) {
	tr := newTrioWith(t, true, Options{Relays: RelayOptions{MaxPerSource: 2, MaxOutbound: 3}}, ForwarderOptions{}, nil)
	for _, a := range []netip.Addr{addrS4, addrS6} {
		l, err := tr.s.Listen(a, 80, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		holdAll(t, l)
	}
	ctx := ctxT(t)
	dial := func(a netip.Addr) (*Conn, error) {
		c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(a, 80), nil)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	c1, err := dial(addrS4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addrS4); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addrS4); err == nil {
		t.Fatal("third connection from one source relayed, want refused")
	}
	if n := tr.f.Counters().RelayLimitSource.Load(); n != 1 {
		t.Fatalf("RelayLimitSource = %d, want 1", n)
	}
	// C's IPv6 address is another source; the total (3) still has room
	// for one.
	if _, err := dial(addrS6); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addrS6); err == nil {
		t.Fatal("fourth connection relayed, want refused by the total")
	}
	if n := tr.f.Counters().RelayLimitTotal.Load(); n != 1 {
		t.Fatalf("RelayLimitTotal = %d, want 1", n)
	}
	c1.Close()
	waitFor(t, func() bool { n, _ := tr.f.Relays(Outbound); return n == 2 }, "a slot given back")
	if _, err := dial(addrS4); err != nil {
		t.Fatalf("after a relay ended: %v", err)
	}
	if n, src := tr.f.Relays(Outbound); n != 3 || src != 2 {
		t.Fatalf("Relays = %d from %d sources, want 3 from 2", n, src)
	}
}

// A service resets a client over the per-source limit before dialing its
// backend.
func TestServiceRelayLimits(t *testing.T) {
	p := newPair(t, pairOpts{b: func(o *Options) { o.Relays.MaxPerSource = 1 }})
	ln, conns := loopbackBackend(t)
	sv, err := p.b.Serve(addrB4, 443, nil, dialBackend(ln.Addr().String()), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	ctx := ctxT(t)
	c1, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	bc1 := <-conns
	c2, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err) // the handshake completes; the relay is refused after it
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c2)
	wantReset(t, "second client", err)
	if n := p.b.Counters().RelayLimitSource.Load(); n != 1 {
		t.Fatalf("RelayLimitSource = %d, want 1", n)
	}
	select {
	case <-conns:
		t.Fatal("backend dialed for a refused connection")
	default:
	}
	if n, _ := p.b.Relays(Inbound); n != 1 {
		t.Fatalf("%d inbound relays, want 1", n)
	}
	c1.Close()
	io.ReadAll(bc1) // the client's FIN, carried across
	bc1.Close()
	waitFor(t, func() bool { n, _ := p.b.Relays(Inbound); return n == 0 }, "slot given back")
}

// IPv6 sources count per /64; IPv4-mapped addresses as IPv4.
func TestRelaySourcePrefix(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
	} {
		if pa, pb := sourcePrefix(netip.MustParseAddr(c.a)), sourcePrefix(netip.MustParseAddr(c.b)); pa != pb {
			t.Errorf("%s -> %v, %s -> %v: want one source", c.a, pa, c.b, pb)
		}
	}
	if sourcePrefix(netip.MustParseAddr("192.0.2.1")) == sourcePrefix(netip.MustParseAddr("192.0.2.2")) {
		t.Error("two IPv4 addresses share a source")
	}
}

// CheckBackend refuses the stack's own addresses (any port) and what
// RelayOptions.RoutedIn names, counts and says why.
func TestCheckBackend(t *testing.T) {
	routed := netip.MustParsePrefix("192.0.2.0/24")
	p := newPair(t, pairOpts{b: func(o *Options) {
		o.Promiscuous, o.Spoofing = true, true // as with the forwarder on
		o.Relays.RoutedIn = func(a netip.Addr) string {
			if routed.Contains(a) {
				return "outbound.include[0]"
			}
			return ""
		}
	}})
	for _, c := range []struct {
		ap   string
		loop bool
	}{
		{"10.0.0.2:8080", true},   // b's own address, another port
		{"[fd00::2]:443", true},   // b's own IPv6 address
		{"192.0.2.7:80", true},    // routed in by RoutedIn
		{"127.0.0.1:8080", false}, // a real backend
		{"10.0.0.1:8080", false},  // another host on b's prefix
	} {
		err := p.b.CheckBackend(netip.MustParseAddrPort(c.ap))
		var le *BackendLoopError
		if got := errors.As(err, &le); got != c.loop {
			t.Errorf("CheckBackend(%s) = %v, want loop %v", c.ap, err, c.loop)
		}
	}
	if n := p.b.Counters().BackendLoops.Load(); n != 3 {
		t.Errorf("BackendLoops = %d, want 3", n)
	}
}

// IsPeerTimeout names only a leg's timeout (keepalive or retransmissions),
// not a reset, a clean end or a read deadline.
func TestIsPeerTimeout(t *testing.T) {
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: &NetError{Text: "operation timed out", Errno: syscall.ETIMEDOUT}}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&RelayError{Dir: "outer->inner", Err: timedOut}, true},
		{&RelayError{Dir: "outer->inner", Err: fmt.Errorf("copy: %w", timedOut)}, true},
		{timedOut, false}, // not a relay's end
		{&RelayError{Dir: "outer->inner", Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}, false},
		{&RelayError{Dir: "outer->inner", Err: os.ErrDeadlineExceeded}, false},
		{&RelayError{Dir: "outer->inner", Err: &net.OpError{Op: "read", Err: &NetError{Text: "connection reset by peer", Errno: syscall.ECONNRESET}}}, false},
		{nil, false},
	} {
		if got := IsPeerTimeout(c.err); got != c.want {
			t.Errorf("IsPeerTimeout(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
