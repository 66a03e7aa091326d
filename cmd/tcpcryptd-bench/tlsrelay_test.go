package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTLSRelay(t *testing.T) {
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		t.Run(name, func(t *testing.T) {
			benchRequireRoot(t)
			self, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			// The test binary is the relay: TestMain dispatches on this.
			t.Setenv(benchHelperEnv, "tlsrelay")
			env := newSetupTestEnv(t)
			env.Self = self
			start := time.Now()
			s, err := startTLSRelay(env, resume)
			if err != nil {
				t.Fatal(err)
			}
			closeSetup := closeSetupOnce(t, s)
			t.Logf("%s up in %v", s.Name(), time.Since(start).Round(time.Millisecond))
			wantName := map[bool]string{false: "tls13-relay", true: "tls13-relay-resumed"}[resume]
			if s.Name() != wantName {
				t.Errorf("Name() = %q, want %q", s.Name(), wantName)
			}
			if s.Target().String() != "127.0.0.1:6001" {
				t.Errorf("Target() = %v", s.Target())
			}
			procs := s.Procs()
			if len(procs) != 2 || procs[0].Role != "server" || procs[1].Role != "laptop" {
				t.Fatalf("Procs() = %+v", procs)
			}
			for _, p := range procs {
				if _, err := readProcStat(p.PID); err != nil {
					t.Errorf("%s: readProcStat(%d): %v", p.Role, p.PID, err)
				}
			}

			checkEcho(t, env, s.Target(), 1<<20)
			for range 3 {
				checkEcho(t, env, s.Target(), 100)
			}

			sides := append([]*sideProc(nil), s.(*tlsRelaySetup).procs...)
			if err := closeSetup(); err != nil {
				t.Errorf("Close: %v", err)
			}
			checkProcsGone(t, procs)
			// Each relay reports its connections on exit: the readiness
			// probe and the 4 above get through (the probe may have been
			// tried before the server relay listened: the client relay then
			// counts a failure); with resumption all but the first resume.
			for _, p := range sides {
				out := strings.TrimSpace(p.out.String())
				t.Logf("%s relay: %s", p.role, out)
				var conns, resumed, failed int
				if _, err := fmt.Sscanf(out[strings.LastIndex(out, ": ")+2:], "%d connections, %d resumed, %d failed", &conns, &resumed, &failed); err != nil {
					t.Errorf("%s relay: no statistics in its output (%v):\n%s", p.role, err, out)
					continue
				}
				ok := conns-failed == 5
				if resume {
					ok = ok && resumed == 4
				} else {
					ok = ok && resumed == 0
				}
				if !ok {
					t.Errorf("%s relay: %d connections, %d resumed, %d failed; want 5 successful, %d resumed", p.role, conns, resumed, failed, map[bool]int{false: 0, true: 4}[resume])
				}
			}
		})
	}
}

// TestTLSRelayDialFailure: when the relay cannot reach its other side, it
// closes the connection it accepted (in process, in the laptop namespace).
func TestTLSRelayDialFailure(t *testing.T) {
	env := newSetupTestEnv(t)
	ns := env.Topo.Laptop
	// A port nobody listens on.
	gone, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	connect := gone.Addr().String()
	gone.Close()
	ln, err := ns.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tlsRelay{mode: "client", connect: connect, conf: &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1"}, dial: ns.DialContext}
	served := make(chan error, 1)
	go func() { served <- r.serve(ln) }()
	defer func() {
		ln.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	c, err := ns.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a relayed connection whose dial failed: %d, %v; want EOF or reset", n, err)
	}
	if got := r.stats(); got != "1 connections, 0 resumed, 1 failed" {
		t.Errorf("stats %q", got)
	}
}
