// Package nstest gives tests of tun/ a network namespace of their own, so nothing
// they do touches the host's interfaces, routes, rules, sysctls or firewall, plus a
// goroutine leak check. It is imported only by tests.
package nstest

import (
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips t when the process cannot manage network namespaces; under CI=true
// a skip would hide the test, so it fails instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("test needs root (CI=true: not skipping)")
	}
	t.Skip("test needs root")
}

// NS is a fresh, unnamed network namespace. It lives as long as its handle and
// whatever is inside it; New's cleanup closes the handle.
type NS struct {
	h netns.NsHandle
}

// New creates a namespace for t and removes it in t.Cleanup (also on failure). Its
// loopback interface is brought up.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var (
		h   netns.NsHandle
		err error
	)
	topo.OnThread(func() error {
		// netns.NewNamed is avoided: an unnamed namespace leaves no /run/netns entry
		// behind if the test binary dies.
		h, err = netns.New()
		return err
	})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("create network namespace: %v", err)
		}
		t.Skipf("cannot create network namespace: %v", err)
	}
	ns := &NS{h: h}
	t.Cleanup(func() { h.Close() })
	nl := ns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in test namespace: %v", err)
	}
	return ns
}

// Handle is the namespace handle (for netlink.NewHandleAt, nftables.WithNetNSFd).
func (n *NS) Handle() netns.NsHandle { return n.h }

// Netlink returns a netlink handle bound to the namespace, closed in t.Cleanup.
func (n *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	nl, err := netlink.NewHandleAt(n.h)
	if err != nil {
		t.Fatalf("netlink handle in test namespace: %v", err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// Do runs f on a dedicated OS thread that has entered the namespace: sockets, TUN
// devices and netlink sockets created by f belong to it, and keep working from any
// thread afterwards. Goroutines f starts do not inherit the namespace.
func (n *NS) Do(f func() error) error {
	return topo.InNamespace(n.h, f)
}

// CheckLeaks fails t if, after its cleanups, goroutines whose stacks mention any of
// frames are still running (they get a few seconds to finish).
func CheckLeaks(t testing.TB, frames ...string) {
	t.Helper()
	// Registered first, so it runs after every later cleanup.
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := matching(frames)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func matching(frames []string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// Skip ourselves and test goroutines (their frames name the test package).
		if strings.Contains(g, "nstest.matching") || strings.Contains(g, "testing.tRunner") {
			continue
		}
		for _, f := range frames {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
