package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/stack"
)

// A backend name that resolves into the device is refused before the
// socket connects (the dial would come back to the service and chain
// connections until descriptors run out), and counted. Here "localhost"
// stands for such a name: the stack's RoutedIn names 127.0.0.1 and ::1.
func TestBackendDialerRefusesLoop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	ep := channel.New(16, 1500, "")
	st, err := stack.New(stack.Options{Link: ep, Addresses: []netip.Prefix{netip.MustParsePrefix("10.254.78.1/32")},
		Relays: stack.RelayOptions{RoutedIn: func(a netip.Addr) string {
			if a.IsLoopback() {
				return "outbound.include[0]"
			}
			return ""
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, backend := range []string{"localhost:" + port, "127.0.0.1:" + port} {
		dial := backendDialer(config.Service{Backend: backend}, st.CheckBackend)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := dial(ctx, nil)
		cancel()
		var le *stack.BackendLoopError
		if !errors.As(err, &le) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("%s: dial = %v, want a *stack.BackendLoopError", backend, err)
		}
	}
	time.Sleep(50 * time.Millisecond) // an accept that should not happen has time to
	if n := accepted.Load(); n != 0 {
		t.Fatalf("backend accepted %d connections, want 0", n)
	}
	if n := st.Counters().BackendLoops.Load(); n < 2 {
		t.Fatalf("BackendLoops = %d, want at least 2", n)
	}
	// The stack's own (service) address is refused without RoutedIn.
	if err := st.CheckBackend(netip.MustParseAddrPort("10.254.78.1:443")); err == nil {
		t.Fatal("the stack's own address accepted as a backend")
	}
}

// check-config refuses a service whose backend is its own listen address.
func TestCheckConfigRefusesBackendLoop(t *testing.T) {
	path := writeConfig(t, "[[service]]\nname = \"web\"\nlisten = \"10.254.78.1:443\"\nbackend = \"10.254.78.1:443\"\n")
	code, stdout, stderr := runCLI(t, "check-config", "--config", path)
	if code != exitConfig || stdout != "" {
		t.Fatalf("exit %d, stdout %q, want %d", code, stdout, exitConfig)
	}
	for _, want := range []string{`service "web".backend`, "routed into the device", `service "web".listen`, "127.0.0.1:8080"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

func TestRelayOptions(t *testing.T) {
	cfg, err := config.Parse("t", []byte("[tcp]\nkeepalive = false\nkeepalive_idle = \"5m\"\n[limits]\nrelays_per_source = 7\n[[service]]\nlisten = \"10.254.78.1:443\"\nbackend = \"127.0.0.1:1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := relayOptions(cfg)
	if !o.Keepalive.Off || o.Keepalive.Idle != 5*time.Minute || o.Keepalive.Interval != 30*time.Second || o.Keepalive.Count != 4 {
		t.Errorf("keepalive = %+v", o.Keepalive)
	}
	if o.MaxPerSource != 7 || o.MaxInbound != 16384 || o.MaxOutbound != 16384 {
		t.Errorf("limits = %+v", o)
	}
	if o.RoutedIn(netip.MustParseAddr("10.254.78.1")) == "" || o.RoutedIn(netip.MustParseAddr("127.0.0.1")) != "" {
		t.Error("RoutedIn does not follow the configuration")
	}
}

func TestRelayMetrics(t *testing.T) {
	obs := newConnObserver(slog.New(slog.DiscardHandler))
	var ready atomic.Bool
	col := newCollector(obs, &ready)
	var counters stack.Counters
	counters.RelayLimitTotal.Add(1)
	counters.RelayLimitSource.Add(2)
	counters.PeerTimeouts.Add(3)
	counters.BackendLoops.Add(4)
	col.setSources(&metricSources{counters: &counters, table: fakeTable{}})
	text := scrape(t, col)
	for _, want := range []string{
		`tcpcryptd_relay_refusals_total{limit="total"} 1`,
		`tcpcryptd_relay_refusals_total{limit="per_source"} 2`,
		"tcpcryptd_peer_timeouts_total 3",
		"tcpcryptd_backend_loops_total 4",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
