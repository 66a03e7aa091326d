package main

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// WireGuard setup: wireguard-go in the laptop and in the server namespace, a
// tunnel 10.99.0.1 -- 10.99.0.2 whose UDP packets take the topology's routed
// path (10.77.1.2:51820 -- 10.77.2.2:51820); with Env.IPv6, fd99::1 --
// fd99::2 over fd77:1::2 -- fd77:2::2. The client dials the backend at its
// tunnel address.

const (
	wgListenPort = 51820
	wgMTU        = 1420
	// wgSocketDir is where wireguard-go puts its UAPI socket (host-global, not
	// per namespace: interface names must be unique on the host).
	wgSocketDir = "/var/run/wireguard"
	// procStopGrace is how long a helper process gets between SIGTERM and
	// SIGKILL.
	procStopGrace = 5 * time.Second
)

var (
	wgLaptopAddr  = netip.MustParsePrefix("10.99.0.1/24")
	wgServerAddr  = netip.MustParsePrefix("10.99.0.2/24")
	wgLaptopAddr6 = netip.MustParsePrefix("fd99::1/64")
	wgServerAddr6 = netip.MustParsePrefix("fd99::2/64")
	// wgSeq makes interface names unique among the setups of one process.
	wgSeq atomic.Uint32
)

type wgSetup struct {
	env   *Env
	sides []*wgSide // laptop, server
	// createdDir: wgSocketDir did not exist before we started wireguard-go
	// (which creates it); Close removes it again if it is empty.
	createdDir bool
}

// wgSide is one end of the tunnel.
type wgSide struct {
	role     string
	ns       *topo.NS
	ifname   string
	addr     netip.Prefix   // tunnel address
	endpoint netip.AddrPort // its UDP endpoint on the routed path
	key      *ecdh.PrivateKey
	proc     *sideProc
}

func (s *wgSide) socket() string { return filepath.Join(wgSocketDir, s.ifname+".sock") }

// startWireGuard runs wireguard-go on both sides, configures them through
// their UAPI sockets and returns once a TCP connection through the tunnel
// works.
func startWireGuard(env *Env) (_ Setup, err error) {
	if env.WireGuardGo == "" {
		return nil, errors.New("wireguard-go: no executable (Env.WireGuardGo)")
	}
	s := &wgSetup{env: env}
	if _, err := os.Stat(wgSocketDir); errors.Is(err, os.ErrNotExist) {
		s.createdDir = true
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	seq := wgSeq.Add(1) % 1000
	for _, x := range []struct {
		role     string
		ns       *topo.NS
		addr     netip.Prefix
		endpoint netip.AddrPort
	}{
		{"laptop", env.Topo.Laptop, byFamily(env, wgLaptopAddr, wgLaptopAddr6), netip.AddrPortFrom(byFamily(env, topo.LaptopIPv4, topo.LaptopIPv6), wgListenPort)},
		{"server", env.Topo.Server, byFamily(env, wgServerAddr, wgServerAddr6), netip.AddrPortFrom(byFamily(env, topo.ServerIPv4, topo.ServerIPv6), wgListenPort)},
	} {
		// "wg<pid>-<seq><l|s>": at most 2+7+1+3+1 = 14 characters (IFNAMSIZ-1
		// is 15; Linux pids are at most 4194304).
		name := fmt.Sprintf("wg%d-%d%c", os.Getpid(), seq, x.role[0])
		if len(name) > 15 {
			return nil, fmt.Errorf("wireguard-go: interface name %q too long", name)
		}
		key, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		side := &wgSide{role: x.role, ns: x.ns, ifname: name, addr: x.addr, endpoint: x.endpoint, key: key}
		cmd := x.ns.Command(env.WireGuardGo, "-f", name)
		// Foreground without the "use the kernel module" banner; errors only.
		cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "LOG_LEVEL=error")
		side.proc, err = startSideProc(cmd, "wireguard-go", x.role, "")
		if err != nil {
			return nil, err
		}
		s.sides = append(s.sides, side)
	}
	for _, side := range s.sides {
		if err := side.waitSocket(10 * time.Second); err != nil {
			return nil, err
		}
	}
	for i, side := range s.sides {
		peer := s.sides[1-i]
		cfg := fmt.Sprintf("set=1\nprivate_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\npersistent_keepalive_interval=0\n\n",
			hex.EncodeToString(side.key.Bytes()), wgListenPort,
			hex.EncodeToString(peer.key.PublicKey().Bytes()), peer.endpoint,
			netip.PrefixFrom(peer.addr.Addr(), peer.addr.Addr().BitLen()))
		if err := wgUAPISet(side.socket(), cfg); err != nil {
			return nil, fmt.Errorf("wireguard-go (%s): configure: %w%s", side.role, err, side.proc.tailSuffix())
		}
		if err := side.linkUp(); err != nil {
			return nil, fmt.Errorf("wireguard-go (%s): %w%s", side.role, err, side.proc.tailSuffix())
		}
	}
	if err := s.waitTunnel(15 * time.Second); err != nil {
		return nil, err
	}
	if env.Logf != nil {
		env.Logf("wireguard-go: %s (%s) -- %s (%s) up", s.sides[0].ifname, s.sides[0].addr, s.sides[1].ifname, s.sides[1].addr)
	}
	return s, nil
}

// waitSocket waits until wireguard-go accepts connections on its UAPI socket
// (it creates the TUN device before the socket, so the device exists then).
func (s *wgSide) waitSocket(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", s.socket(), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if s.proc.exited() {
			return fmt.Errorf("wireguard-go (%s) exited during start-up (%v)%s", s.role, s.proc.err, s.proc.tailSuffix())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard-go (%s): no UAPI socket %s after %v: %v%s", s.role, s.socket(), timeout, err, s.proc.tailSuffix())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wgUAPISet sends one set=1 request (cfg ends with an empty line) and checks
// the answer is errno=0.
func wgUAPISet(socket, cfg string) error {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(cfg)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	var errno string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("UAPI answer: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "errno="); ok {
			errno = v
		}
	}
	if errno != "0" {
		return fmt.Errorf("UAPI answered errno=%s", errno)
	}
	return nil
}

// linkUp gives the tunnel device its address and MTU and brings it up.
func (s *wgSide) linkUp() error {
	nl := s.ns.Netlink()
	l, err := nl.LinkByName(s.ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", s.ifname, s.ns, err)
	}
	if err := nl.LinkSetMTU(l, wgMTU); err != nil {
		return fmt.Errorf("MTU of %s in %s: %w", s.ifname, s.ns, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(s.addr.Addr().AsSlice()), Mask: net.CIDRMask(s.addr.Bits(), s.addr.Addr().BitLen())}}
	if err := nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", s.addr, s.ifname, s.ns, err)
	}
	if err := nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring up %s in %s: %w", s.ifname, s.ns, err)
	}
	return nil
}

// waitTunnel dials from the laptop to a listener on the server's tunnel
// address until a connection gets through (the first packet starts the
// handshake).
func (s *wgSetup) waitTunnel(timeout time.Duration) error {
	ln, err := s.env.Topo.Server.Listen("tcp", netip.AddrPortFrom(s.sides[1].addr.Addr(), 0).String())
	if err != nil {
		return fmt.Errorf("wireguard-go: readiness listener: %w", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{'w'})
			c.Close()
		}
	}()
	target := ln.Addr().String()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		for _, side := range s.sides {
			if side.proc.exited() {
				return fmt.Errorf("wireguard-go (%s) exited (%v)%s", side.role, side.proc.err, side.proc.tailSuffix())
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var c net.Conn
		c, last = s.env.Topo.Laptop.DialContext(ctx, "tcp", target)
		cancel()
		if last == nil {
			var b [1]byte
			c.SetDeadline(time.Now().Add(3 * time.Second))
			_, last = c.Read(b[:])
			c.Close()
			if last == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("wireguard-go: no TCP connection through the tunnel to %s after %v: %v%s%s",
		target, timeout, last, s.sides[0].proc.tailSuffix(), s.sides[1].proc.tailSuffix())
}

func (s *wgSetup) Name() string { return "wireguard-go" }

func (s *wgSetup) Target() netip.AddrPort {
	return netip.AddrPortFrom(s.sides[1].addr.Addr(), s.env.BackendPort)
}

func (s *wgSetup) Procs() []Proc {
	var ps []Proc
	for _, side := range s.sides {
		ps = append(ps, Proc{Role: side.role, PID: side.proc.cmd.Process.Pid})
	}
	return ps
}

// TUNs implements tunUser.
func (s *wgSetup) TUNs() []tunDevice {
	var d []tunDevice
	for _, side := range s.sides {
		d = append(d, tunDevice{side.ns, side.ifname})
	}
	return d
}

// Close stops both wireguard-go processes and checks that their devices and
// UAPI sockets are gone.
func (s *wgSetup) Close() error {
	var errs []error
	for i := len(s.sides) - 1; i >= 0; i-- {
		side := s.sides[i]
		if err := side.proc.stop(procStopGrace); err != nil {
			errs = append(errs, err)
		}
		// wireguard-go unlinks its socket when it exits normally; not when
		// killed.
		if err := os.Remove(side.socket()); err == nil {
			errs = append(errs, fmt.Errorf("wireguard-go (%s) left %s behind (removed)", side.role, side.socket()))
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if err := side.waitLinkGone(2 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	s.sides = nil
	if s.createdDir {
		os.Remove(wgSocketDir) // only if empty: another wireguard-go may use it
		s.createdDir = false
	}
	return errors.Join(errs...)
}

// waitLinkGone waits for the TUN device to disappear with its process; one
// still there after timeout is deleted and reported.
func (s *wgSide) waitLinkGone(timeout time.Duration) error {
	nl := s.ns.Netlink()
	if nl == nil {
		return nil // namespace already removed
	}
	deadline := time.Now().Add(timeout)
	for {
		l, err := nl.LinkByName(s.ifname)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s in %s: %w", s.ifname, s.ns, err)
		}
		if time.Now().After(deadline) {
			if err := nl.LinkDel(l); err != nil {
				return fmt.Errorf("%s still in %s after wireguard-go exited; delete: %w", s.ifname, s.ns, err)
			}
			return fmt.Errorf("%s still in %s after wireguard-go exited (deleted)", s.ifname, s.ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
