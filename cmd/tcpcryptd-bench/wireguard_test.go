package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildWireGuardGo builds wireguard-go (the go.mod's tool) into a temporary
// directory.
func buildWireGuardGo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wireguard-go")
	cmd := exec.Command("go", "build", "-o", bin, "golang.zx2c4.com/wireguard")
	cmd.Dir = filepath.Join("..", "..") // module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build wireguard-go: %v\n%s", err, out)
	}
	return bin
}

// closeSetupOnce returns a Close that runs once, also registered as a cleanup
// (for tests that fail before they close it themselves).
func closeSetupOnce(t *testing.T, s Setup) func() error {
	var once sync.Once
	var err error
	f := func() error {
		once.Do(func() { err = s.Close() })
		return err
	}
	t.Cleanup(func() { f() })
	return f
}

func TestWireGuard(t *testing.T) {
	benchRequireRoot(t)
	bin := buildWireGuardGo(t)
	env := newSetupTestEnv(t)
	env.WireGuardGo = bin
	start := time.Now()
	s, err := startWireGuard(env)
	if err != nil {
		t.Fatal(err)
	}
	closeSetup := closeSetupOnce(t, s)
	t.Logf("wireguard-go up in %v", time.Since(start).Round(time.Millisecond))
	if s.Name() != "wireguard-go" {
		t.Errorf("Name() = %q", s.Name())
	}
	if got, want := s.Target().String(), "10.99.0.2:"+strconv.Itoa(int(env.BackendPort)); got != want {
		t.Errorf("Target() = %s, want %s", got, want)
	}
	procs := s.Procs()
	if len(procs) != 2 || procs[0].Role != "laptop" || procs[1].Role != "server" {
		t.Fatalf("Procs() = %+v", procs)
	}
	for _, p := range procs {
		st, err := readProcStat(p.PID)
		if err != nil || st.RSSBytes == 0 {
			t.Errorf("%s: readProcStat(%d) = %+v, %v", p.Role, p.PID, st, err)
		}
	}
	ws := s.(*wgSetup)
	var socks []string
	var links []*wgSide
	for _, side := range ws.sides {
		socks = append(socks, side.socket())
		links = append(links, side)
		if _, err := os.Stat(side.socket()); err != nil {
			t.Errorf("UAPI socket: %v", err)
		}
		l, err := side.ns.Netlink().LinkByName(side.ifname)
		if err != nil {
			t.Fatalf("%s: %v", side.ifname, err)
		}
		if l.Attrs().MTU != wgMTU {
			t.Errorf("%s: MTU %d, want %d", side.ifname, l.Attrs().MTU, wgMTU)
		}
	}

	checkEcho(t, env, s.Target(), 1<<20)
	checkEcho(t, env, s.Target(), 1) // a second connection, tiny

	if err := closeSetup(); err != nil {
		t.Errorf("Close: %v", err)
	}
	checkProcsGone(t, procs)
	for _, sock := range socks {
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Close (%v)", sock, err)
		}
	}
	for _, side := range links {
		if _, err := side.ns.Netlink().LinkByName(side.ifname); err == nil {
			t.Errorf("%s still in %s after Close", side.ifname, side.ns)
		}
	}
}

// TestWireGuardStartFailure: a wireguard-go that cannot start gives an error
// carrying its output, and leaves nothing behind.
func TestWireGuardStartFailure(t *testing.T) {
	benchRequireRoot(t)
	env := newSetupTestEnv(t)
	fake := filepath.Join(t.TempDir(), "wireguard-go")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'cannot create TUN: simulated' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env.WireGuardGo = fake
	s, err := startWireGuard(env)
	if err == nil {
		s.Close()
		t.Fatal("startWireGuard succeeded with a failing wireguard-go")
	}
	t.Logf("error (expected): %v", err)
	if !strings.Contains(err.Error(), "simulated") {
		t.Errorf("error does not carry the process's stderr: %v", err)
	}
}
