package topo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if err := RequireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: not skipping)", err)
		}
		t.Skip(err)
	}
}

func newTopo(t *testing.T, o Options) *Topology {
	t.Helper()
	requireRoot(t)
	o.Logf = t.Logf
	tp, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
		for _, n := range []*NS{tp.Laptop, tp.Router, tp.Server} {
			if _, err := os.Stat(netnsDir + "/" + n.Name); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("namespace %s still exists after Close (%v)", n.Name, err)
			}
		}
	})
	return tp
}

// transfer sends n bytes from the laptop to a server listener at addr and
// checks they arrive intact.
func transfer(t *testing.T, tp *Topology, listen string, dst netip.AddrPort, n int64) {
	t.Helper()
	ln, err := tp.Server.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		n, sum, err := BulkReceive(c)
		got <- result{n, sum, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tp.Laptop.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatalf("dial %s from laptop: %v", dst, err)
	}
	sum, err := BulkSend(c, n, 42)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.n != n || r.sum != sum {
		t.Fatalf("to %s: received %d bytes (err %v), sha %x, sent %d sha %x", dst, r.n, r.err, r.sum, n, sum)
	}
}

func TestKernelForwardingTopology(t *testing.T) {
	hostFwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	tp := newTopo(t, Options{})
	if v, err := tp.Router.ReadSysctl("net/ipv4/ip_forward"); err != nil || v != "1" {
		t.Fatalf("router ip_forward = %q, %v", v, err)
	}
	if v, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(v) != string(hostFwd) {
		t.Fatalf("host ip_forward changed: %q -> %q", hostFwd, v)
	}
	transfer(t, tp, "0.0.0.0:5001", netip.AddrPortFrom(ServerIPv4, 5001), 4<<20)
	transfer(t, tp, "[::]:5002", netip.AddrPortFrom(ServerIPv6, 5002), 4<<20)
}

func TestCommandRunsInNamespace(t *testing.T) {
	tp := newTopo(t, Options{})
	out, err := tp.Laptop.Command("cat", "/proc/self/net/dev").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The laptop has lo and eth0 and nothing else.
	var ifaces []string
	for _, line := range strings.Split(string(out), "\n")[2:] {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			ifaces = append(ifaces, name)
		}
	}
	if strings.Join(ifaces, ",") != "lo,eth0" {
		t.Fatalf("interfaces seen by a command in the laptop: %v", ifaces)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(netnsDir+"/"+tp.Server.Name, &st); err != nil {
		t.Fatal(err)
	}
	link, err := tp.Server.Command("readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); strings.TrimSpace(string(link)) != want {
		t.Fatalf("command's namespace %s, want %s", link, want)
	}
	if err := tp.Laptop.Command("false").Run(); err == nil {
		t.Fatal("a failing command reported success")
	}
}

func TestSnapshot(t *testing.T) {
	tp := newTopo(t, Options{})
	a, err := tp.Laptop.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"addr eth0 10.77.1.2/24", "addr eth0 fd77:1::2/64", "link eth0 type=veth up", "sysctl net/ipv4/ip_forward="} {
		if !strings.Contains(a, want) {
			t.Fatalf("snapshot lacks %q:\n%s", want, a)
		}
	}
	b, _ := tp.Laptop.Snapshot()
	if a != b {
		t.Fatalf("snapshot not stable:\n%s\n---\n%s", a, b)
	}
	if err := tp.Laptop.AddAddrs(HostIface, netip.MustParsePrefix("10.77.9.9/32")); err != nil {
		t.Fatal(err)
	}
	c, _ := tp.Laptop.Snapshot()
	if !strings.Contains(c, "10.77.9.9/32") || a == c {
		t.Fatal("snapshot did not see a new address")
	}
}

func TestRemoveLeftovers(t *testing.T) {
	requireRoot(t)
	// A pid that does not run: the namespace is a leftover of a dead run.
	dead := 0
	for pid := 4194000; pid > 4000000; pid-- {
		if !processAlive(pid) {
			dead = pid
			break
		}
	}
	prefix := fmt.Sprintf("tcpcitlo%d", os.Getpid())
	stale, err := createNamed(fmt.Sprintf("%s-%d-abcdef-laptop", prefix, dead), "laptop")
	if err != nil {
		t.Fatal(err)
	}
	live, err := NewNamespace(prefix, "server")
	if err != nil {
		stale.Remove()
		t.Fatal(err)
	}
	defer live.Remove()
	defer stale.Remove()
	removed, err := RemoveLeftovers(prefix, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != stale.Name {
		t.Fatalf("removed %v, want only %s", removed, stale.Name)
	}
	if _, err := os.Stat(netnsDir + "/" + live.Name); err != nil {
		t.Fatalf("live namespace removed: %v", err)
	}
}

func TestDialFailsCleanly(t *testing.T) {
	tp := newTopo(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tp.Laptop.DialContext(ctx, "tcp", netip.AddrPortFrom(ServerIPv4, 9).String())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want connection refused", err)
	}
}
