package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

const (
	portEcho    = 7100 // kernel echo server on the host that runs tcpcryptd
	portFarEcho = 7101 // kernel echo server on the far host (no tcpcrypt)
)

// everythingConfig is a host that encrypts everything it can.
func everythingConfig(socket string) string {
	return fmt.Sprintf(`[device]
name = "tcpc0"

[outbound]
include = ["0.0.0.0/0", "::/0"]

[control]
socket = %q

[log]
level = "debug"
`, socket)
}

// echoServer accepts on l and echoes lines until the test ends, which
// closes the listener and every connection.
func echoServer(t *testing.T, l net.Listener) {
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// session is a long-lived connection that sends one line every 100 ms and
// checks each echo within 2 s; the first failure ends it.
type session struct {
	name string
	c    net.Conn
	mu   sync.Mutex
	n    int
	err  error
	done chan struct{}
	stop chan struct{}
}

func startSession(t *testing.T, name string, c net.Conn) *session {
	s := &session{name: name, c: c, done: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() { s.end() })
	go func() {
		defer close(s.done)
		r := bufio.NewReader(c)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			line := fmt.Sprintf("%s line %d\n", name, i)
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err := io.WriteString(c, line)
			var got string
			if err == nil {
				got, err = r.ReadString('\n')
			}
			if err == nil && got != line {
				err = fmt.Errorf("echo %q, want %q", got, line)
			}
			s.mu.Lock()
			if err != nil {
				s.err = fmt.Errorf("%s: after %d lines: %w", name, i, err)
			} else {
				s.n++
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return s
}

// check fails t if the session has failed, and returns its line count.
func (s *session) check(t *testing.T, when string) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatalf("%s: session broke: %v", when, s.err)
	}
	return s.n
}

func (s *session) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.c.Close()
}

// waitLines waits until the session has echoed n more lines than now.
func (s *session) waitLines(t *testing.T, when string, more int) {
	t.Helper()
	start := s.check(t, when)
	deadline := time.Now().Add(10 * time.Second)
	for s.check(t, when) < start+more {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s echoed no more lines", when, s.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// echoOnce opens a connection from ns to addr, exchanges one line and
// returns the connection's local address.
func echoOnce(ctx context.Context, ns *topo.NS, addr string) (netip.AddrPort, error) {
	c, err := echoOpen(ctx, ns, addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	return netip.MustParseAddrPort(c.LocalAddr().String()), nil
}

// echoOpen is echoOnce that leaves the connection open, so the daemon's
// table still lists it if it relays it.
func echoOpen(ctx context.Context, ns *topo.NS, addr string) (net.Conn, error) {
	c, err := ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		c.Close()
		return nil, err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "ping\n" {
		c.Close()
		return nil, fmt.Errorf("echo %q: %v", got, err)
	}
	return c, nil
}

// captured reports whether the daemon relayed a connection from local.
func captured(t *testing.T, d *daemon, local netip.AddrPort) bool {
	t.Helper()
	conns, err := d.api.Connections()
	if err != nil {
		t.Fatalf("/v1/connections: %v", err)
	}
	for _, c := range conns {
		if c.App.Local == local {
			return true
		}
	}
	return false
}

// A host that encrypts everything (the server of the topology runs
// tcpcryptd with include = everything): inbound sessions opened before
// `up` survive `up` and `down`, new inbound connections work, the host's
// own connections to a plain far host go through the daemon and work
// (plain), and loopback and link-local connections are not touched.
func TestEncryptEverythingKeepsInbound(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	srv, lap := tp.Server, tp.Laptop

	for _, ns := range []*topo.NS{srv, lap, tp.Router} {
		port := portEcho
		if ns != srv {
			port = portFarEcho
		}
		l, err := ns.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		echoServer(t, l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Sessions from the laptop (in the include list: everything) to the
	// host's own server, opened before up.
	var sessions []*session
	for _, a := range []netip.Addr{topo.ServerIPv4, topo.ServerIPv6} {
		c, err := lap.DialContext(ctx, "tcp", netip.AddrPortFrom(a, portEcho).String())
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, startSession(t, "inbound "+a.String(), c))
	}
	for _, s := range sessions {
		s.waitLines(t, "before up", 3)
	}

	// Strict reverse-path filtering, as some distributions set it: the
	// stack's replies to the host's own captured connections arrive on the
	// device from addresses the main table routes elsewhere.
	for _, k := range []string{"net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter"} {
		if err := srv.WriteSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, srv, "server", everythingConfig)
	for _, s := range sessions {
		s.waitLines(t, "after up", 10) // a second of lines through up
	}

	// New inbound connections work and are not relayed.
	for _, a := range []netip.Addr{topo.ServerIPv4, topo.ServerIPv6} {
		if _, err := echoOnce(ctx, lap, netip.AddrPortFrom(a, portEcho).String()); err != nil {
			t.Fatalf("new inbound connection to %v after up: %v", a, err)
		}
	}

	// The host's own connections to a far plain host: captured (the
	// daemon relays them) and plain, and they work.
	for _, a := range []netip.Addr{topo.LaptopIPv4, topo.LaptopIPv6} {
		conn, err := echoOpen(ctx, srv, netip.AddrPortFrom(a, portFarEcho).String())
		if err != nil {
			t.Fatalf("host's own connection to plain %v: %v", a, err)
		}
		c := d.connection(netip.MustParseAddrPort(conn.LocalAddr().String()), netip.AddrPortFrom(a, portFarEcho))
		conn.Close()
		if c.Encrypted || c.Fallback != "no-eno" {
			t.Errorf("own connection to %v: %+v, want relayed plain (no-eno)", a, c)
		}
	}

	// Loopback and link-local (the router's side of the server's link):
	// direct, never through the daemon.
	ll := linkLocal(t, tp.Router, topo.RouterSrvIface)
	for _, addr := range []string{
		fmt.Sprintf("127.0.0.1:%d", portEcho),
		fmt.Sprintf("[::1]:%d", portEcho),
		netip.AddrPortFrom(ll.WithZone(topo.HostIface), portFarEcho).String(),
	} {
		conn, err := echoOpen(ctx, srv, addr)
		if err != nil {
			t.Fatalf("connection to %s: %v", addr, err)
		}
		if captured(t, d, netip.MustParseAddrPort(conn.LocalAddr().String())) {
			t.Errorf("connection to %s went through the daemon", addr)
		}
		conn.Close()
	}

	// down (SIGTERM): the sessions go on.
	d.stop()
	for _, s := range sessions {
		s.waitLines(t, "after down", 10)
	}
	if _, err := echoOnce(ctx, srv, netip.AddrPortFrom(topo.LaptopIPv4, portFarEcho).String()); err != nil {
		t.Fatalf("own connection after down: %v", err)
	}
}

// linkLocal returns the fe80:: address of the namespace's uplink, waiting
// for it to finish duplicate address detection.
func linkLocal(t *testing.T, ns *topo.NS, iface string) netip.Addr {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := ns.Netlink().LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		as, err := ns.Netlink().AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() && a.Flags&0x40 == 0 { // not IFA_F_TENTATIVE
				return ip
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usable link-local address on %s in %s: %v", iface, ns, as)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reach reports whether a TCP connection from ns to addr exchanges a line
// within 2 s.
func reach(ns *topo.NS, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := echoOnce(ctx, ns, addr.String())
	return err
}

// No open relay: a neighbour that uses a host running tcpcryptd as its
// gateway reaches through it only what it reached before `up`. The router
// of the topology is that host: with forwarding off, the laptop cannot
// reach the server before up, nor while tcpcryptd runs (which turns
// forwarding on for its device); the router's own connections to the
// server, relayed by the daemon, work. A router that forwarded already
// keeps forwarding.
func TestNoOpenRelay(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	rtr, lap, srv := tp.Router, tp.Laptop, tp.Server
	l, err := srv.Listen("tcp", fmt.Sprintf(":%d", portFarEcho))
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l)
	far := []netip.AddrPort{netip.AddrPortFrom(topo.ServerIPv4, portFarEcho), netip.AddrPortFrom(topo.ServerIPv6, portFarEcho)}

	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := rtr.WriteSysctl(k, "0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range far {
		if err := reach(lap, a); err == nil {
			t.Fatalf("laptop reaches %v through a router that does not forward", a)
		}
	}

	d := startDaemon(t, rtr, "router", everythingConfig)
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if v, _ := rtr.ReadSysctl(k); strings.TrimSpace(v) != "1" {
			t.Fatalf("%s = %q while tcpcryptd runs", k, v)
		}
	}
	for _, a := range far {
		if err := reach(lap, a); err == nil {
			t.Errorf("laptop reaches %v through the host while tcpcryptd runs: an open relay", a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := echoOpen(ctx, rtr, a.String())
		cancel()
		if err != nil {
			t.Fatalf("the host's own connection to %v: %v", a, err)
		}
		d.connection(netip.MustParseAddrPort(conn.LocalAddr().String()), a) // relayed by the daemon
		conn.Close()
	}
	d.stop()
	for _, a := range far {
		if err := reach(lap, a); err == nil {
			t.Errorf("laptop reaches %v after down: forwarding not restored", a)
		}
	}

	// A router already: its forwarding stays as it was.
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := rtr.WriteSysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	d2 := startDaemon(t, rtr, "router2", everythingConfig)
	for _, a := range far {
		if err := reach(lap, a); err != nil {
			t.Errorf("a router's own forwarding broke while tcpcryptd runs: laptop to %v: %v", a, err)
		}
	}
	d2.stop()
	var errs []error
	for _, a := range far {
		errs = append(errs, reach(lap, a))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("after down: %v", err)
	}
}
