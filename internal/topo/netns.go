package topo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where named network namespaces live (as `ip netns` keeps them).
const netnsDir = "/run/netns"

// NS is a named network namespace created by this package. Its name is
// <prefix>-<creator pid>-<random>-<role>, so parallel runs never collide and a
// later run can tell a leftover (its creator is gone) from a live one.
type NS struct {
	Name string // full name under /run/netns
	Role string // "laptop", "router", "server", ...

	h  netns.NsHandle
	nl *netlink.Handle
}

// RequireRoot returns a clear error when the process cannot manage network
// namespaces.
func RequireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (run as root, e.g. with sudo)")
	}
	return nil
}

// NewNamespace creates the named namespace prefix-pid-rand-role and brings up its
// loopback interface. The calling thread's namespace is never changed: the new
// namespace is made on a dedicated locked thread that is restored afterwards
// (or discarded by the runtime if restoring fails).
func NewNamespace(prefix, role string) (*NS, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	return createNamed(fmt.Sprintf("%s-%d-%s-%s", prefix, os.Getpid(), hex.EncodeToString(rnd[:]), role), role)
}

// createNamed creates the namespace /run/netns/name.
func createNamed(name, role string) (*NS, error) {
	var h netns.NsHandle
	err := OnThread(func() error {
		var err error
		// NewNamed unshares this (locked) thread into the new namespace and
		// bind-mounts it at /run/netns/name; OnThread then puts the thread back.
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", name, err)
	}
	n := &NS{Name: name, Role: role, h: h}
	n.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		n.Remove()
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	lo, err := n.nl.LinkByName("lo")
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		n.Remove()
		return nil, fmt.Errorf("bring up lo in %s: %w", name, err)
	}
	return n, nil
}

// Remove deletes the namespace's name and closes our handles. Devices inside
// (veths) disappear with the namespace once no process holds it; stop the
// processes started in it first.
func (n *NS) Remove() error {
	if n.nl != nil {
		n.nl.Close()
		n.nl = nil
	}
	if n.h.IsOpen() {
		n.h.Close()
	}
	if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", n.Name, err)
	}
	return nil
}

// Handle is the namespace's handle (for nftables.WithNetNSFd and the like).
func (n *NS) Handle() netns.NsHandle { return n.h }

// Netlink is a netlink handle bound to the namespace; it is closed with the
// namespace.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// String returns the namespace's name.
func (n *NS) String() string { return n.Name }

// Do runs f on an OS thread that has entered the namespace. Sockets (and any
// other namespace-bound objects) that f creates belong to the namespace and keep
// working from any goroutine afterwards. Goroutines started by f do NOT run in
// the namespace.
func (n *NS) Do(f func() error) error {
	if err := InNamespace(n.h, f); err != nil {
		return fmt.Errorf("namespace %s: %w", n.Name, err)
	}
	return nil
}

// InNamespace runs f on a dedicated OS thread that has entered the network
// namespace h (see NS.Do for what that means for sockets and goroutines).
func InNamespace(h netns.NsHandle, f func() error) error {
	return OnThread(func() error {
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
		return f()
	})
}

// OnThread runs f on a fresh goroutine locked to its OS thread and puts the
// thread back into its original namespace afterwards. If that fails, the
// goroutine exits still locked and the runtime destroys the thread instead of
// reusing it, so no other goroutine ever runs in a namespace by accident.
func OnThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return // still locked: the thread is discarded
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore network namespace: %w (thread discarded)", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a kernel listening socket in the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// DialContext opens a kernel TCP (or other) connection from the namespace. The
// whole dial runs on the namespace's thread; addr must be a literal address.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ReadSysctl reads /proc/sys/<key> as the namespace sees it (key like
// "net/ipv4/ip_forward").
func (n *NS) ReadSysctl(key string) (string, error) {
	if !validSysctl(key) {
		return "", fmt.Errorf("sysctl %q: not a net/ key", key)
	}
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// WriteSysctl writes /proc/sys/<key> inside the namespace. Only keys below
// net/ are accepted: those are per namespace, so the host is never touched.
func (n *NS) WriteSysctl(key, value string) error {
	if !validSysctl(key) {
		return fmt.Errorf("sysctl %q: not a net/ key", key)
	}
	return n.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0)
	})
}

func validSysctl(key string) bool {
	return strings.HasPrefix(key, "net/") && !strings.Contains(key, "..")
}

// RemoveLeftovers deletes namespaces named <prefix>-<pid>-... whose creating
// process no longer runs (a run that was killed), or that are older than
// maxAge. Namespaces of live runs are left alone, so parallel runs coexist.
// It returns the names it removed.
func RemoveLeftovers(prefix string, maxAge time.Duration) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, ok := leftoverPID(prefix, e.Name())
		if !ok {
			continue
		}
		stale := !processAlive(pid)
		if info, err := e.Info(); err == nil && maxAge > 0 && time.Since(info.ModTime()) > maxAge {
			stale = true
		}
		if !stale || pid == os.Getpid() {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover namespace %s: %w", e.Name(), err))
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// leftoverPID parses <prefix>-<pid>-<hex>-<role>.
func leftoverPID(prefix, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// staleAfter is the age past which a namespace of our prefix is a leftover even
// if a process with its creator's pid runs (pids get reused).
const staleAfter = 2 * time.Hour
