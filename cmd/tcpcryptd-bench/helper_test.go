package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// benchHelperEnv makes the test binary act as a helper process of a setup
// instead of running tests: TCPCRYPTD_BENCH_HELPER=tlsrelay runs
// runTLSRelay (the test binary stands in for Env.Self).
const benchHelperEnv = "TCPCRYPTD_BENCH_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(benchHelperEnv) {
	case "":
	case "tlsrelay":
		if err := runTLSRelay(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "tlsrelay helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown helper\n", benchHelperEnv, os.Getenv(benchHelperEnv))
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// benchRequireRoot skips a test that needs network namespaces when not root,
// except under CI=true, where that is a failure.
func benchRequireRoot(t *testing.T) {
	t.Helper()
	if err := topo.RequireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: not skipping)", err)
		}
		t.Skip(err)
	}
}

// newSetupTestEnv builds a topology with an echo backend in the server
// namespace on [::]:port; both are removed when the test ends.
func newSetupTestEnv(t *testing.T) *Env {
	t.Helper()
	benchRequireRoot(t)
	tp, err := topo.New(topo.Options{Prefix: "tcpbw", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
	})
	ln, err := tp.Server.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				// Wait for the other side to close, so the test sees EOF
				// rather than a reset.
				io.Copy(io.Discard, c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	// Registered after the topology's cleanup, so it runs before it.
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &Env{
		Topo:        tp,
		Dir:         t.TempDir(),
		BackendPort: uint16(ln.Addr().(*net.TCPAddr).Port),
		Logf:        t.Logf,
	}
}

// checkEcho sends n random bytes through the setup from the laptop namespace,
// half-closes, and checks the echo comes back intact followed by EOF.
func checkEcho(t *testing.T, env *Env, target netip.AddrPort, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := env.Topo.Laptop.DialContext(ctx, "tcp", target.String())
	if err != nil {
		t.Fatalf("dial %v: %v", target, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v (%d bytes)", err, len(got))
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && i < len(data) && got[i] == data[i] {
			i++
		}
		t.Fatalf("echo of %d bytes came back as %d bytes, first difference at %d", len(data), len(got), i)
	}
}

// checkProcsGone checks the setup's processes are gone.
func checkProcsGone(t *testing.T, procs []Proc) {
	t.Helper()
	for _, p := range procs {
		if _, err := readProcStat(p.PID); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s process %d still there after Close (%v)", p.Role, p.PID, err)
		}
	}
}

// Every setup's target, and the addresses between the sides, follow
// Env.IPv6.
func TestTargetsFollowFamily(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		env := &Env{IPv6: v6, BackendPort: 15001}
		for _, s := range []Setup{&kernelSetup{env: env}, &daemonSetup{env: env}} {
			if got := s.Target().Addr().Is6(); got != v6 {
				t.Errorf("IPv6=%v: %s target %v", v6, s.Name(), s.Target())
			}
		}
		if a := byFamily(env, wgLaptopAddr, wgLaptopAddr6); a.Addr().Is6() != v6 {
			t.Errorf("IPv6=%v: wireguard tunnel address %v", v6, a)
		}
	}
}
