package stack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// trio is the outbound topology:
//
//	client C (plain, 10.1.0.1) --> forwarder F (promiscuous, egress 10.3.0.1) --> server S (10.2.0.2)
//
// C routes everything to F; S routes everything to F; F routes C's and
// S's prefixes to them. F answers C as the server (spoofing) and dials S
// from its egress address with ENO offered.
type trio struct {
	c, f, s    *Stack
	fwd        *Forwarder
	hub        *wiretest.Hub
	pc, pf, ps *wiretest.Port
	capFS      *wiretest.Capture // F -> S
	capSF      *wiretest.Capture // S -> F
}

var (
	addrC4, addrC6 = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd01::1")
	addrS4, addrS6 = netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("fd02::2")
	addrF4, addrF6 = netip.MustParseAddr("10.3.0.1"), netip.MustParseAddr("fd03::1")
)

func newTrio(t testing.TB, serverENO bool, fo ForwarderOptions, hookSF wiretest.Hook, modF ...func(*Options)) *trio {
	t.Helper()
	var of Options
	for _, m := range modF {
		m(&of)
	}
	return newTrioWith(t, serverENO, of, fo, hookSF)
}

// newTrioWith is newTrio with F's stack options of (Link, Logger,
// Addresses, Promiscuous and Spoofing are set here).
func newTrioWith(t testing.TB, serverENO bool, of Options, fo ForwarderOptions, hookSF wiretest.Hook) *trio {
	t.Helper()
	before := runtime.NumGoroutine()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	mk := func(name string, o Options, addrs ...netip.Prefix) (*Stack, *channel.Endpoint) {
		ep := channel.New(4096, testMTU, "")
		o.Link, o.Logger, o.Addresses = ep, log.With("stack", name), addrs
		st, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return st, ep
	}
	tr := &trio{capFS: wiretest.NewCapture(0), capSF: wiretest.NewCapture(0)}
	var ec, ef, es *channel.Endpoint
	tr.c, ec = mk("c", Options{NoENO: true}, netip.MustParsePrefix("10.1.0.1/24"), netip.MustParsePrefix("fd01::1/64"))
	of.Promiscuous, of.Spoofing = true, true
	tr.f, ef = mk("f", of, netip.MustParsePrefix("10.3.0.1/24"), netip.MustParsePrefix("fd03::1/64"))
	tr.s, es = mk("s", Options{NoENO: !serverENO}, netip.MustParsePrefix("10.2.0.2/24"), netip.MustParsePrefix("fd02::2/64"))
	h := wiretest.New(wiretest.Options{Logf: t.Logf})
	tr.hub = h
	tr.pc, tr.pf, tr.ps = h.Attach("c", ec), h.Attach("f", ef), h.Attach("s", es)
	for _, all := range []string{"0.0.0.0/0", "::/0"} {
		h.Route(tr.pc, netip.MustParsePrefix(all), tr.pf)
		h.Route(tr.ps, netip.MustParsePrefix(all), tr.pf)
	}
	for _, r := range []struct {
		pfx string
		to  *wiretest.Port
	}{{"10.1.0.0/24", tr.pc}, {"fd01::/64", tr.pc}, {"10.2.0.0/24", tr.ps}, {"fd02::/64", tr.ps}} {
		h.Route(tr.pf, netip.MustParsePrefix(r.pfx), r.to)
	}
	h.SetHook(tr.pf, tr.ps, tr.capFS.Hook(nil))
	h.SetHook(tr.ps, tr.pf, tr.capSF.Hook(hookSF))
	h.Start()
	fo.Egress4, fo.Egress6 = addrF4, addrF6
	var err error
	if tr.fwd, err = tr.f.StartForwarder(fo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.c.Close()
		tr.f.Close()
		tr.s.Close()
		h.Close()
		checkGoroutines(t, before)
	})
	return tr
}

// serverHalfClose is S's application: it reads the request to EOF, then
// answers with reply and half-closes. It reports what it read and its
// session info on got.
type served struct {
	req []byte
	neg Negotiation
	err error
}

func serveOnce(t *testing.T, l *Listener, reply []byte) <-chan served {
	got := make(chan served, 1)
	go func() {
		c, err := l.AcceptConn(ctxT(t))
		if err != nil {
			got <- served{err: err}
			return
		}
		defer c.Close()
		req, err := io.ReadAll(c)
		if err != nil {
			got <- served{err: err}
			return
		}
		if _, err := c.Write(reply); err != nil {
			got <- served{err: err}
			return
		}
		got <- served{req: req, neg: c.Negotiation(), err: c.CloseWrite()}
	}()
	return got
}

// Outbound: a plain client's connection is upgraded by the forwarder to an
// encrypted one, half-closes cross both ways, the table describes it while
// it runs, and no plaintext crosses the outer leg.
func TestForwarderUpgrades(t *testing.T) {
	for _, fam := range families() {
		t.Run(fam.name, func(t *testing.T) {
			tr := newTrio(t, true, ForwarderOptions{}, nil)
			dst := addrS4
			if fam.v6 {
				dst = addrS6
			}
			l, err := tr.s.Listen(dst, 80, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			req := pattern(300<<10, "FWD-PLAINTEXT-REQ|")
			reply := pattern(200<<10, "FWD-PLAINTEXT-REPLY|")
			got := serveOnce(t, l, reply)

			ctx := ctxT(t)
			c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 80), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The table lists the connection while it relays.
			var info ConnInfo
			for {
				if l := tr.f.Table().List(); len(l) == 1 && l[0].Encrypted {
					info = l[0]
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("table: %+v", tr.f.Table().List())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if info.Direction != Outbound || info.Inner.Local != netip.AddrPortFrom(dst, 80) ||
				info.Inner.Remote.Addr() != c.stream.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap() ||
				info.Outer.Remote != netip.AddrPortFrom(dst, 80) || info.Outer.Local.Addr() != map[bool]netip.Addr{false: addrF4, true: addrF6}[fam.v6] {
				t.Fatalf("table entry %+v", info)
			}
			// Found from the application's socket (its local, remote) and
			// from the server's view of the outer leg.
			appLocal := c.stream.LocalAddr().(*net.TCPAddr).AddrPort()
			appLocal = netip.AddrPortFrom(appLocal.Addr().Unmap(), appLocal.Port())
			for _, q := range [][2]netip.AddrPort{{appLocal, netip.AddrPortFrom(dst, 80)}, {info.Outer.Remote, info.Outer.Local}} {
				if got, ok := tr.f.Table().Lookup(q[0], q[1]); !ok || got.ID != info.ID {
					t.Fatalf("Lookup(%v, %v) = %+v, %v", q[0], q[1], got, ok)
				}
			}
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			sv := <-got
			if sv.err != nil {
				t.Fatal(sv.err)
			}
			if !bytes.Equal(sv.req, req) || !bytes.Equal(resp, reply) {
				t.Fatalf("data: server got %d/%d bytes, client %d/%d", len(sv.req), len(req), len(resp), len(reply))
			}
			if !sv.neg.Encrypted || !bytes.Equal(sv.neg.SessionID, info.SessionID) {
				t.Fatalf("server negotiation %+v, table session %x", sv.neg, info.SessionID)
			}
			if c.Encrypted() {
				t.Fatal("the inner (client) leg must be plain")
			}
			for _, capt := range []*wiretest.Capture{tr.capFS, tr.capSF} {
				var wire []byte
				for _, s := range capt.Segments() {
					wire = append(wire, s.Payload...)
				}
				if bytes.Contains(wire, []byte("FWD-PLAINTEXT")) {
					t.Fatal("plaintext on the outer leg")
				}
			}
			c.Close()
			waitFor(t, func() bool { return tr.f.Table().Len() == 0 && tr.f.Flows() == 0 }, "table and flows empty")
		})
	}
}

// A server without ENO: the outer leg falls back to plain TCP and the
// table records why.
func TestForwarderFallback(t *testing.T) {
	tr := newTrio(t, false, ForwarderOptions{}, nil)
	l, err := tr.s.Listen(addrS4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := serveOnce(t, l, []byte("plain reply"))
	c, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var info ConnInfo
	waitFor(t, func() bool {
		l := tr.f.Table().List()
		if len(l) == 1 && l[0].State == StateRelaying {
			info = l[0]
			return true
		}
		return false
	}, "relaying entry")
	if info.Encrypted || info.Reason != eno.ReasonNoENO || info.Direction != Outbound || info.Start.IsZero() {
		t.Fatalf("entry %+v", info)
	}
	c.Write([]byte("plain request"))
	waitFor(t, func() bool {
		l := tr.f.Table().List()
		return len(l) == 1 && l[0].BytesInnerToOuter == uint64(len("plain request")) && l[0].BytesOuterToInner == 0
	}, "bytes counted")
	c.CloseWrite()
	resp, err := io.ReadAll(c)
	if err != nil || string(resp) != "plain reply" {
		t.Fatalf("reply %q %v", resp, err)
	}
	if sv := <-got; string(sv.req) != "plain request" {
		t.Fatalf("request %q", sv.req)
	}
}

// The inner handshake completes only once the outer one succeeded: a
// refused or unreachable destination reaches the client as a reset, and a
// required policy refuses a server without ENO.
func TestForwarderNeverLies(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		tr := newTrio(t, true, ForwarderOptions{}, nil)
		_, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 9), nil)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("dial: %v, want refused", err)
		}
		if tr.f.Table().Len() != 0 {
			t.Fatal("table entry left")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		drop := func(*wiretest.Packet) wiretest.Verdict { return wiretest.Verdict{Drop: true} }
		tr := newTrio(t, true, ForwarderOptions{DialTimeout: 300 * time.Millisecond}, drop)
		start := time.Now()
		_, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
		if err == nil {
			t.Fatal("dial through a black hole succeeded")
		}
		t.Logf("after %v: %v", time.Since(start), err)
	})
	t.Run("required", func(t *testing.T) {
		tr := newTrio(t, false, ForwarderOptions{Policy: &Policy{Default: eno.ModeRequired}}, nil)
		l, err := tr.s.Listen(addrS4, 80, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil); err == nil {
			t.Fatal("dial succeeded although encryption is required")
		}
		if tr.f.Counters().RequiredRefusals.Load() != 1 {
			t.Fatal("refusal not counted")
		}
	})
}

// An authentication failure on the outer leg aborts both legs: the client
// sees a reset, never corrupted data or a clean EOF.
func TestForwarderAuthFailureAbortsBoth(t *testing.T) {
	var armed atomic.Bool
	tr := newTrio(t, true, ForwarderOptions{}, wiretest.FlipPayloadBit(func(wiretest.Segment) bool { return armed.Load() }, 20, 1))
	l, err := tr.s.Listen(addrS4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := ctxT(t)
	srv := make(chan *Conn, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		if err == nil {
			srv <- c
		}
	}()
	c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-srv
	defer s.Close()
	armed.Store(true)
	s.Write(pattern(3000, "tamper"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.ReadAll(c)
	if err == nil || len(n) != 0 {
		t.Fatalf("client read %d bytes, err %v; want a reset and no data", len(n), err)
	}
	waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "table empty")
}

// Inbound: a service terminates tcpcrypt and relays the plaintext to a
// backend on a kernel socket, with half-closes carried across.
func TestServiceRelaysToBackend(t *testing.T) {
	p := newPair(t, pairOpts{})
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer backend.Close()
	type seen struct {
		preamble string
		body     []byte
	}
	seenc := make(chan seen, 1)
	go func() {
		bc, err := backend.Accept()
		if err != nil {
			return
		}
		defer bc.Close()
		r := bufio.NewReader(bc)
		line, _ := r.ReadString('\n')
		body, _ := io.ReadAll(r)
		bc.Write(bytes.ToUpper(body))
		bc.(*net.TCPConn).CloseWrite()
		seenc <- seen{line, body}
	}()
	dial := func(ctx context.Context, c *Conn) (net.Conn, error) {
		var d net.Dialer
		bc, err := d.DialContext(ctx, "tcp", backend.Addr().String())
		if err != nil {
			return nil, err
		}
		sid, _ := c.SessionID()
		if _, err := bc.Write([]byte("SID " + hex.EncodeToString(sid) + "\n")); err != nil {
			bc.Close()
			return nil, err
		}
		return bc, nil
	}
	sv, err := p.b.Serve(addrB6, 443, nil, dial, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB6, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sid, err := c.SessionID()
	if err != nil {
		t.Fatal(err)
	}
	msg := pattern(100<<10, "inbound body ")
	c.Write(msg)
	c.CloseWrite()
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	s := <-seenc
	if s.preamble != "SID "+hex.EncodeToString(sid)+"\n" || !bytes.Equal(s.body, msg) || !bytes.Equal(resp, bytes.ToUpper(msg)) {
		t.Fatalf("preamble %q, body %d bytes, resp %d bytes", s.preamble, len(s.body), len(resp))
	}
	waitFor(t, func() bool { return p.b.Table().Len() == 0 }, "table empty")
}

// A failing backend dial resets the inbound connection.
func TestServiceBackendFailure(t *testing.T) {
	p := newPair(t, pairOpts{})
	sv, err := p.b.Serve(addrB4, 443, nil, func(context.Context, *Conn) (net.Conn, error) {
		return nil, errors.New("backend down")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err == nil {
		t.Fatal("clean EOF, want a reset")
	}
}

// Close while backend dials hang: the dials see their context end, the
// clients are reset, and Close returns. The dial runs on the goroutine
// that settled the connection (Listener.handle), which Close waits for.
func TestServiceCloseDuringBackendDial(t *testing.T) {
	p := newPair(t, pairOpts{})
	const n = 3
	entered := make(chan struct{}, n)
	sv, err := p.b.Serve(addrB4, 443, nil, func(ctx context.Context, _ *Conn) (net.Conn, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var clients []*Conn
	for range n {
		c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	for range n {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("backend dial not started")
		}
	}
	closed := make(chan struct{})
	go func() { sv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs behind backend dials")
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err == nil {
			t.Fatalf("client %d: clean EOF, want a reset", i)
		}
	}
	waitFor(t, func() bool { return p.b.Table().Len() == 0 }, "table empty")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An idle relayed connection holds no copy buffer and no goroutine, plain or
// encrypted; it carries data again when it wakes.
func TestRelayIdleHoldsNoBuffers(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tcpcrypt"}[enc], func(t *testing.T) {
			tr := newTrio(t, enc, ForwarderOptions{}, nil)
			l, err := tr.s.Listen(addrS4, 80, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			ctx := ctxT(t)
			c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := <-accepted
			defer sc.Close()
			exchange := func(size int) {
				t.Helper()
				msg := pattern(size, "IDLE|")
				go c.Write(msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("client to server: %v", err)
				}
				go sc.Write(msg)
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("server to client: %v", err)
				}
			}
			exchange(200 << 10)
			if l := tr.f.Table().List(); len(l) != 1 || l[0].Encrypted != enc {
				t.Fatalf("table: %+v", l)
			}
			idle := func() bool { return relayBufsOut.Load() == 0 && relayGoroutines() == 0 }
			waitFor(t, idle, "no relay buffer or goroutine while idle")
			exchange(100)
			waitFor(t, idle, "no relay buffer or goroutine while idle again")
			// Half-close and close still travel while suspended.
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := sc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("server read after client CloseWrite: %d, %v", n, err)
			}
			c.Close()
			sc.Close()
			waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "table empty")
		})
	}
}

// relayGoroutines counts goroutines running a relay direction.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "stack.copyHalf") {
			n++
		}
	}
	return n
}

// An application that reuses its port at once (a kernel that was the
// passive closer does) gets its next connection through: the forwarder's
// inner endpoint does not sit in TIME-WAIT, where gVisor would ignore the
// new SYN for a minute (there is no listener to hand it to).
func TestForwarderPortReuseAfterClose(t *testing.T) {
	tr := newTrio(t, true, ForwarderOptions{}, nil)
	l, err := tr.s.Listen(addrS4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x")) // the server closes first
			c.Close()
		}
	}()
	local := netip.AddrPortFrom(addrC4, 40001)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := tr.c.Dial(ctx, local, netip.AddrPortFrom(addrS4, 80), nil)
		cancel()
		if err != nil {
			t.Fatalf("connection %d from %v: %v", i+1, local, err)
		}
		if b, err := io.ReadAll(c); err != nil || string(b) != "x" {
			t.Fatalf("connection %d: %q, %v", i+1, b, err)
		}
		c.Close()
		waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "relay finished")
		// The client stack (the kernel's stand-in) frees the port once
		// its own close completes, which may come just after the relay's.
		waitFor(t, func() bool { return tr.c.gv.Stats().TCP.CurrentConnected.Value() == 0 }, "client close done")
	}
}

// stallInnerHandshake has the client dial S's listener on port through the
// forwarder and drops every non-SYN segment from the client on the wire, so
// the outer leg stands while the inner handshake waits for an ACK that
// never comes. It returns the listener (closed at the end of the test).
func stallInnerHandshake(t *testing.T, tr *trio, port uint16) *Listener {
	t.Helper()
	l, err := tr.s.Listen(addrS4, port, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tr.hub.SetHook(tr.pc, tr.pf, func(p *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(p.Data)
		return wiretest.Verdict{Drop: ok && !s.SYN()}
	})
	ctx, cancel := context.WithCancel(ctxT(t))
	t.Cleanup(cancel)
	go func() {
		if c, err := tr.c.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrS4, port), nil); err == nil {
			c.Abort()
		}
	}()
	return l
}

// TestForwarderCloseAbortsInnerHandshake: Close returns promptly although a
// client's inner handshake is still waiting for its ACK (dropped on the
// wire here; at shutdown, the host's routes are already gone). gVisor's
// CreateEndpoint would wait for the whole SYN-ACK retransmission schedule,
// a minute and more, and Close with it.
func TestForwarderCloseAbortsInnerHandshake(t *testing.T) {
	tr := newTrio(t, false, ForwarderOptions{}, nil)
	stallInnerHandshake(t, tr, 82)
	waitFor(t, func() bool {
		tr.fwd.mu.Lock()
		defer tr.fwd.mu.Unlock()
		return len(tr.fwd.accepting) > 0
	}, "the inner handshake to start")
	done := make(chan struct{})
	start := time.Now()
	go func() {
		tr.fwd.Close()
		close(done)
	}()
	select {
	case <-done:
		t.Logf("Close returned in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Forwarder.Close still waiting for an inner handshake after 5s")
	}
	if n := tr.f.Table().Len(); n != 0 {
		t.Errorf("%d connections still in the table", n)
	}
}

// TestForwarderAcceptTimeout: a client that never acknowledges the inner
// SYN-ACK loses both legs after ForwarderOptions.AcceptTimeout, not after
// gVisor's SYN-ACK retransmissions (minutes): the server sees the outer
// connection reset and the connection table empties.
func TestForwarderAcceptTimeout(t *testing.T) {
	tr := newTrio(t, false, ForwarderOptions{AcceptTimeout: 300 * time.Millisecond}, nil)
	l := stallInnerHandshake(t, tr, 83)
	outer, err := l.AcceptConn(ctxT(t)) // the outer leg stands before the inner handshake
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	start := time.Now()
	outer.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = outer.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
		t.Fatalf("outer leg read: %v; want it reset once the inner handshake gives up", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("outer leg ended after %v; AcceptTimeout is 300ms", d)
	}
	waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "the connection table to empty")
}

// PeekEOF (eofPeeker) on both kinds of relay source, a connection
// of our stack and a kernel socket: false while nothing has come or data
// waits, true once the peer's FIN is all that is left; it consumes nothing.
// The relay uses it to put FINp on the frame with a response's last bytes.
func TestPeekEOF(t *testing.T) {
	check := func(t *testing.T, src interface {
		io.Reader
		eofPeeker
	}, write func([]byte), closeWrite func()) {
		t.Helper()
		if src.PeekEOF() {
			t.Fatal("EOF before anything came")
		}
		write([]byte("ab"))
		closeWrite()
		// The FIN follows the data: until it is in, data waits.
		time.Sleep(20 * time.Millisecond)
		if src.PeekEOF() {
			t.Fatal("EOF with data waiting")
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(src, buf); err != nil || string(buf) != "ab" {
			t.Fatalf("read %q, %v: the peek consumed data", buf, err)
		}
		waitFor(t, src.PeekEOF, "PeekEOF after the FIN")
		if n, err := src.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after PeekEOF = %d, %v; want io.EOF", n, err)
		}
	}
	t.Run("stack", func(t *testing.T) {
		p := newPair(t, pairOpts{})
		plain := &Policy{Default: eno.ModeOff}
		client, server := dialAccept(t, p, false, 99, plain, plain)
		check(t, server, func(b []byte) { client.Write(b) }, func() { client.CloseWrite() })
	})
	t.Run("kernel", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Skipf("no loopback TCP: %v", err)
		}
		defer ln.Close()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		check(t, &netLeg{Conn: server}, func(b []byte) { client.Write(b) }, func() { client.(*net.TCPConn).CloseWrite() })
	})
}

// isInit2 reports a segment whose payload starts with an Init2 message
// (RFC 8548 §4.1 magic).
func isInit2(s wiretest.Segment) bool {
	return bytes.HasPrefix(s.Payload, []byte{0x09, 0x71, 0x05, 0xe0})
}

// The forwarder completes the application's (inner) handshake while the
// outer leg's fresh key exchange is still in flight: with the server's
// Init2 held on the wire, the application's connect returns and its request
// waits in the inner connection; it crosses encrypted once Init2 arrives.
// Before, the inner SYN waited for the whole tcpcrypt handshake, a round
// trip more before the application could even send.
func TestForwarderInnerHandshakeDuringKeyExchange(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	hold := func(p *wiretest.Packet) wiretest.Verdict {
		if s, ok := wiretest.ParseTCP(p.Data); ok && isInit2(s) {
			<-release // the S -> F pump waits: everything behind Init2 waits too
		}
		return wiretest.Verdict{}
	}
	tr := newTrio(t, true, ForwarderOptions{}, hold)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	l, err := tr.s.Listen(addrS4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := serveOnce(t, l, []byte("reply"))

	c, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
	if err != nil {
		t.Fatalf("connect did not complete while Init2 was held: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if l := tr.f.Table().List(); len(l) != 1 || l[0].Encrypted {
		t.Fatalf("table while the key exchange runs: %+v", l)
	}
	releaseOnce.Do(func() { close(release) })
	resp, err := io.ReadAll(c)
	if err != nil || string(resp) != "reply" {
		t.Fatalf("response %q, %v", resp, err)
	}
	if sv := <-got; sv.err != nil || string(sv.req) != "request" || !sv.neg.Encrypted {
		t.Fatalf("server: %+v", sv)
	}
}

// A tcpcrypt handshake that fails after the inner handshake (here a
// corrupted Init2) resets the application's connection: it never sees
// plaintext go out, and the forwarder keeps nothing.
func TestForwarderHandshakeFailureResetsInner(t *testing.T) {
	tr := newTrio(t, true, ForwarderOptions{}, wiretest.FlipPayloadBit(isInit2, 0, 0))
	l, err := tr.s.Listen(addrS4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.AcceptConn(ctxT(t)); err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	// The reset follows the inner handshake closely, so the application
	// may meet it in its connect, its write or its read (gVisor reports
	// a reset once: a write that took it leaves the read a plain EOF).
	// A refusal would mean the forwarder answered the SYN as if the
	// outer leg had failed before ENO enabled tcpcrypt.
	c, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
	if err != nil {
		if !strings.Contains(err.Error(), "reset") {
			t.Fatalf("connect: %v; want the inner handshake, then a reset", err)
		}
	} else {
		defer c.Close()
		_, werr := c.Write([]byte("SECRET-REQUEST"))
		if _, rerr := io.ReadAll(c); werr == nil && rerr == nil {
			t.Fatal("the application's connection ended cleanly after a failed handshake")
		}
	}
	for _, s := range tr.capFS.Segments() {
		if bytes.Contains(s.Payload, []byte("SECRET-REQUEST")) {
			t.Fatal("plaintext on the outer leg")
		}
	}
	waitFor(t, func() bool { return tr.f.Table().Len() == 0 && tr.f.Flows() == 0 }, "table and flows empty")
}
