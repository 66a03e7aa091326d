package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinuxHost is the Host of a Linux network namespace: links, addresses, routes and
// rules through netlink, NAT through nftables, sysctls through /proc/sys. It never
// shells out.
type LinuxHost struct {
	nl *netlink.Handle
	// ns is the namespace to work in, or netns.None() for the caller's own. /proc/sys/net
	// shows the namespace of the thread that opens a file, so sysctls of another
	// namespace are read and written from a thread that has entered it.
	ns      netns.NsHandle
	nftOpts []nftables.ConnOption
}

var _ Host = (*LinuxHost)(nil)

// NewLinuxHost returns the Host of the calling process's network namespace.
func NewLinuxHost() (*LinuxHost, error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netcfg: netlink: %w", err)
	}
	return &LinuxHost{nl: nl, ns: netns.None()}, nil
}

// NewLinuxHostAt returns the Host of another network namespace (tests use their own).
// The handle must stay open while the host is used.
func NewLinuxHostAt(ns netns.NsHandle) (*LinuxHost, error) {
	if !ns.IsOpen() {
		return nil, errors.New("netcfg: namespace handle is not open")
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netcfg: netlink in namespace: %w", err)
	}
	return &LinuxHost{nl: nl, ns: ns, nftOpts: []nftables.ConnOption{nftables.WithNetNSFd(int(ns))}}, nil
}

// Close releases the netlink socket.
func (h *LinuxHost) Close() { h.nl.Close() }

// notExist maps the kernel's "no such object" answers to ErrNotExist.
func notExist(err error) error {
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return err
}

func (h *LinuxHost) link(name string) (netlink.Link, error) {
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return nil, notExist(err)
	}
	return l, nil
}

// Link implements LinkHost.
func (h *LinuxHost) Link(name string) (Link, error) {
	l, err := h.link(name)
	if err != nil {
		return Link{}, err
	}
	a := l.Attrs()
	return Link{Name: a.Name, Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}, nil
}

// SetLink implements LinkHost.
func (h *LinuxHost) SetLink(want Link) error {
	l, err := h.link(want.Name)
	if err != nil {
		return err
	}
	if want.MTU != 0 && l.Attrs().MTU != want.MTU {
		if err := h.nl.LinkSetMTU(l, want.MTU); err != nil {
			return fmt.Errorf("set MTU of %s: %w", want.Name, err)
		}
	}
	if up := l.Attrs().Flags&net.FlagUp != 0; up != want.Up {
		set := h.nl.LinkSetDown
		if want.Up {
			set = h.nl.LinkSetUp
		}
		if err := set(l); err != nil {
			return fmt.Errorf("set %s up=%v: %w", want.Name, want.Up, err)
		}
	}
	return nil
}

// Interfaces implements LinkHost.
func (h *LinuxHost) Interfaces() ([]string, error) {
	ls, err := h.nl.LinkList()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Attrs().Name
	}
	return names, nil
}

// Addrs implements LinkHost.
func (h *LinuxHost) Addrs(dev string) ([]netip.Prefix, error) {
	l, err := h.link(dev)
	if err != nil {
		return nil, err
	}
	as, err := h.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if p, ok := ipNetToPrefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (h *LinuxHost) nlAddr(a Addr) (netlink.Link, *netlink.Addr, error) {
	l, err := h.link(a.Dev)
	if err != nil {
		return nil, nil, err
	}
	na := &netlink.Addr{IPNet: prefixToIPNet(a.Prefix)}
	if a.Prefix.Addr().Is6() {
		// The stack answers for the device's other addresses and never duplicates
		// ours: DAD would only delay the address by a second or more.
		na.Flags = unix.IFA_F_NODAD
	}
	return l, na, nil
}

// AddAddr implements LinkHost.
func (h *LinuxHost) AddAddr(a Addr) error {
	l, na, err := h.nlAddr(a)
	if err != nil {
		return err
	}
	return h.nl.AddrAdd(l, na)
}

// DelAddr implements LinkHost.
func (h *LinuxHost) DelAddr(a Addr) error {
	l, na, err := h.nlAddr(a)
	if err != nil {
		return err
	}
	return notExist(h.nl.AddrDel(l, na))
}

// Routes implements RouteHost.
func (h *LinuxHost) Routes(table int) ([]Route, error) {
	filter := &netlink.Route{Table: table} // 0 is RT_TABLE_UNSPEC: every table
	nrs, err := h.nl.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	var out []Route
	for _, nr := range nrs {
		r := Route{Table: nr.Table, Proto: int(nr.Protocol)}
		switch nr.Type {
		case unix.RTN_THROW:
			r.Throw = true
		case unix.RTN_UNICAST:
			if nr.LinkIndex == 0 || nr.Gw != nil || len(nr.MultiPath) > 0 {
				continue // not a shape we create
			}
			name, ok := names[nr.LinkIndex]
			if !ok {
				l, err := h.nl.LinkByIndex(nr.LinkIndex)
				if err != nil {
					continue
				}
				name = l.Attrs().Name
				names[nr.LinkIndex] = name
			}
			r.Dev = name
		default:
			continue // local, broadcast, unreachable...: not ours
		}
		if nr.Dst == nil {
			r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if nr.Family == unix.AF_INET6 {
				r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		} else if p, ok := ipNetToPrefix(nr.Dst); ok {
			r.Dst = p.Masked()
		} else {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (h *LinuxHost) nlRoute(r Route) (*netlink.Route, error) {
	nr := &netlink.Route{
		Table:    r.Table,
		Dst:      prefixToIPNet(r.Dst),
		Protocol: netlink.RouteProtocol(r.Proto),
		Family:   unix.AF_INET,
	}
	if r.Dst.Addr().Is6() {
		nr.Family = unix.AF_INET6
	}
	if r.Throw {
		nr.Type = unix.RTN_THROW
		return nr, nil
	}
	l, err := h.link(r.Dev)
	if err != nil {
		return nil, err
	}
	nr.Type, nr.LinkIndex, nr.Scope = unix.RTN_UNICAST, l.Attrs().Index, netlink.SCOPE_LINK
	return nr, nil
}

// AddRoute implements RouteHost.
func (h *LinuxHost) AddRoute(r Route) error {
	nr, err := h.nlRoute(r)
	if err != nil {
		return err
	}
	return h.nl.RouteAdd(nr)
}

// DelRoute implements RouteHost.
func (h *LinuxHost) DelRoute(r Route) error {
	nr, err := h.nlRoute(r)
	if err != nil {
		return err
	}
	nr.Protocol = 0 // match whatever protocol it carries
	return notExist(h.nl.RouteDel(nr))
}

// Rules implements RouteHost.
func (h *LinuxHost) Rules() ([]Rule, error) {
	nrs, err := h.nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(nrs))
	for _, nr := range nrs {
		r := Rule{Priority: nr.Priority, V6: nr.Family == unix.AF_INET6, IifName: nr.IifName,
			IPProto: nr.IPProto, Table: nr.Table, Proto: int(nr.Protocol)}
		if nr.Mask == nil || *nr.Mask == 0xffffffff {
			r.Mark = nr.Mark // a masked mark is not a shape we create
		}
		if nr.Src != nil {
			if p, ok := ipNetToPrefix(nr.Src); ok {
				r.From = p
			}
		}
		if nr.Dst != nil {
			if p, ok := ipNetToPrefix(nr.Dst); ok {
				r.To = p
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func nlRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Priority, nr.Table, nr.IifName, nr.IPProto = r.Priority, r.Table, r.IifName, r.IPProto
	nr.Protocol = uint8(r.Proto)
	if r.Mark != 0 {
		nr.Mark = r.Mark
		all := uint32(0xffffffff)
		nr.Mask = &all
	}
	nr.Family = unix.AF_INET
	if r.V6 {
		nr.Family = unix.AF_INET6
	}
	if r.From.IsValid() {
		nr.Src = prefixToIPNet(r.From)
	}
	if r.To.IsValid() {
		nr.Dst = prefixToIPNet(r.To)
	}
	return nr
}

// AddRule implements RouteHost.
func (h *LinuxHost) AddRule(r Rule) error { return h.nl.RuleAdd(nlRule(r)) }

// DelRule implements RouteHost.
func (h *LinuxHost) DelRule(r Rule) error { return notExist(h.nl.RuleDel(nlRule(r))) }

// Sysctl implements SysctlHost.
func (h *LinuxHost) Sysctl(key string) (string, error) {
	if err := validSysctlKey(key); err != nil {
		return "", err
	}
	var v []byte
	err := h.inNS(func() (err error) {
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("sysctl %s: %w", key, ErrNotExist)
	}
	return strings.TrimSpace(string(v)), err
}

// SetSysctl implements SysctlHost.
func (h *LinuxHost) SetSysctl(key, value string) error {
	if err := validSysctlKey(key); err != nil {
		return err
	}
	err := h.inNS(func() error {
		f, err := os.OpenFile(filepath.Join("/proc/sys", key), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s: %w", key, ErrNotExist)
	}
	return err
}

// inNS runs f in h's namespace: directly for the caller's own, else on a dedicated
// OS thread that enters it. If that thread cannot return to its namespace it is
// left locked, and Go discards it when the goroutine ends.
func (h *LinuxHost) inNS(f func() error) error {
	if !h.ns.IsOpen() {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ipNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 32 {
		a = a.Unmap()
	}
	if a.BitLen() != bits {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
