package stack

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

var (
	addrA4 = netip.MustParseAddr("10.0.0.1")
	addrB4 = netip.MustParseAddr("10.0.0.2")
	addrA6 = netip.MustParseAddr("fd00::1")
	addrB6 = netip.MustParseAddr("fd00::2")
)

const testMTU = 1500

// pair is two stacks joined by a wire. Link "a" carries a's packets to b.
type pair struct {
	a, b   *Stack
	hub    *wiretest.Hub
	pa, pb *wiretest.Port
	capAB  *wiretest.Capture // what a sent
	capBA  *wiretest.Capture // what b sent
}

type pairOpts struct {
	a, b   func(*Options)
	hookAB wiretest.Hook // after capture
	hookBA wiretest.Hook
	// noCapture: no capture (benchmarks, big transfers), hooks only.
	noCapture bool
	// gso: both links take GSO super-packets with partial checksums, as
	// the TUN device does; the wire segments them (wiretest.Offload).
	gso bool
}

// newPair builds stacks a (10.0.0.1, fd00::1) and b (10.0.0.2, fd00::2)
// joined by a wire that captures every packet. Everything is closed, and
// goroutine leaks checked, at the end of the test.
func newPair(t testing.TB, po pairOpts) *pair {
	t.Helper()
	before := runtime.NumGoroutine()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mk := func(name string, addrs []netip.Addr, mod func(*Options)) (*Stack, *channel.Endpoint) {
		ep := channel.New(4096, testMTU, "")
		if po.gso {
			ep.SupportedGSOKind = gvstack.HostGSOSupported
		}
		o := Options{Link: ep, Logger: log.With("stack", name)}
		for _, a := range addrs {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			o.Addresses = append(o.Addresses, netip.PrefixFrom(a, bits))
		}
		if mod != nil {
			mod(&o)
		}
		s, err := New(o)
		if err != nil {
			t.Fatalf("New(%s): %v", name, err)
		}
		return s, ep
	}
	p := &pair{capAB: wiretest.NewCapture(0), capBA: wiretest.NewCapture(0)}
	var epA, epB *channel.Endpoint
	p.a, epA = mk("a", []netip.Addr{addrA4, addrA6}, po.a)
	p.b, epB = mk("b", []netip.Addr{addrB4, addrB6}, po.b)
	p.hub, p.pa, p.pb = wiretest.Pair(epA, epB)
	if po.noCapture {
		p.hub.SetHook(p.pa, p.pb, po.hookAB)
		p.hub.SetHook(p.pb, p.pa, po.hookBA)
	} else {
		p.hub.SetHook(p.pa, p.pb, p.capAB.Hook(po.hookAB))
		p.hub.SetHook(p.pb, p.pa, p.capBA.Hook(po.hookBA))
	}
	t.Cleanup(func() {
		p.a.Close()
		p.b.Close()
		p.hub.Close()
		checkGoroutines(t, before)
	})
	return p
}

// checkGoroutines fails the test if more goroutines run than before, after
// giving stopping ones a few seconds.
func checkGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d running, %d before\n%s", n, before, leakReport(string(buf)))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leakReport keeps the stacks that mention this module or gVisor.
func leakReport(all string) string {
	var keep []string
	for _, g := range strings.Split(all, "\n\n") {
		if strings.Contains(g, "tcpcryptd") || strings.Contains(g, "gvisor") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dialAccept connects a (client) to b's listener on port and returns both
// ends, failing the test on error.
func dialAccept(t testing.TB, p *pair, v6 bool, port uint16, dialPol, listenPol *Policy) (client, server *Conn) {
	t.Helper()
	src, dst := addrA4, addrB4
	if v6 {
		src, dst = addrA6, addrB6
	}
	l, err := p.b.Listen(dst, port, listenPol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := ctxT(t)
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		ch <- res{c, err}
	}()
	client, err = p.a.Dial(ctx, netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, port), dialPol)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// exchange sends msgAB from client to server and msgBA back, half-closing
// each direction, and checks both arrive intact.
func exchange(t testing.TB, client, server *Conn, msgAB, msgBA []byte) {
	t.Helper()
	errc := make(chan error, 2)
	go func() {
		if _, err := client.Write(msgAB); err != nil {
			errc <- err
			return
		}
		errc <- client.CloseWrite()
	}()
	go func() {
		if _, err := server.Write(msgBA); err != nil {
			errc <- err
			return
		}
		errc <- server.CloseWrite()
	}()
	gotAB, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("server read: %v", err)
	}
	gotBA, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if string(gotAB) != string(msgAB) {
		t.Fatalf("server got %d bytes, want %d (intact: %v)", len(gotAB), len(msgAB), strings.HasPrefix(string(msgAB), string(gotAB)))
	}
	if string(gotBA) != string(msgBA) {
		t.Fatalf("client got %d bytes, want %d", len(gotBA), len(msgBA))
	}
}

// pattern returns n bytes of a recognisable plaintext.
func pattern(n int, marker string) []byte {
	b := make([]byte, 0, n+len(marker))
	for len(b) < n {
		b = append(b, marker...)
	}
	return b[:n]
}
