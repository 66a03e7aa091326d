// Package topo builds the network-namespace topology of tcpcryptd's
// end-to-end tests and demo, and runs commands and Go code inside it:
//
//	 laptop ns                 router ns                        server ns
//	+-----------------+       +-------------------------+       +-----------------+
//	| eth0            |       | rtr-lap        rtr-srv  |       |            eth0 |
//	| 10.77.1.2/24    |-------| 10.77.1.1/24   10.77.2.1|-------| 10.77.2.2/24    |
//	| fd77:1::2/64    | veth  | fd77:1::1/64  fd77:2::1 | veth  | fd77:2::2/64    |
//	| default via     |       |                         |       | default via     |
//	|   10.77.1.1,    |       |  kernel forwarding, or  |       |   10.77.2.1,    |
//	|   fd77:1::1     |       |  the impair bridge      |       |   fd77:2::1     |
//	+-----------------+       |  (AF_PACKET, both ways) |       +-----------------+
//	                          |  10.77.3.0/24, fd77:3::/64 via server (service
//	                          |  addresses a server's tcpcryptd routes to its TUN)
//	                          +-------------------------+
//
// Everything lives in namespaces named <prefix>-<pid>-<random>-<role>, created
// with netlink (no iproute2 needed) and removed by Close; the host's own
// interfaces, routes, rules, sysctls and firewall are never touched. Pure-L3:
// MAC addresses are fixed (02:77:...), so the bridge can rewrite them like a
// router without ARP of its own.
package topo

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
)

// Addresses of the topology (fixed: every run has namespaces of its own).
var (
	LaptopIPv4     = netip.MustParseAddr("10.77.1.2")
	LaptopIPv6     = netip.MustParseAddr("fd77:1::2")
	RouterLapIPv4  = netip.MustParseAddr("10.77.1.1")
	RouterLapIPv6  = netip.MustParseAddr("fd77:1::1")
	RouterSrvIPv4  = netip.MustParseAddr("10.77.2.1")
	RouterSrvIPv6  = netip.MustParseAddr("fd77:2::1")
	ServerIPv4     = netip.MustParseAddr("10.77.2.2")
	ServerIPv6     = netip.MustParseAddr("fd77:2::2")
	ServiceNetIPv4 = netip.MustParsePrefix("10.77.3.0/24")
	ServiceNetIPv6 = netip.MustParsePrefix("fd77:3::/64")

	laptopNetIPv4 = netip.MustParsePrefix("10.77.1.0/24")
	laptopNetIPv6 = netip.MustParsePrefix("fd77:1::/64")
	serverNetIPv4 = netip.MustParsePrefix("10.77.2.0/24")
	serverNetIPv6 = netip.MustParsePrefix("fd77:2::/64")

	macLaptop    = net.HardwareAddr{0x02, 0x77, 0, 0, 1, 2}
	macRouterLap = net.HardwareAddr{0x02, 0x77, 0, 0, 1, 1}
	macRouterSrv = net.HardwareAddr{0x02, 0x77, 0, 0, 2, 1}
	macServer    = net.HardwareAddr{0x02, 0x77, 0, 0, 2, 2}
)

// Interface names (each unique only inside its namespace).
const (
	HostIface      = "eth0"    // laptop's and server's link to the router
	RouterLapIface = "rtr-lap" // router's link to the laptop
	RouterSrvIface = "rtr-srv" // router's link to the server
)

// Options choose how the topology is built.
type Options struct {
	// Prefix of the namespace names (default "tcpcit"). Leftovers with this
	// prefix from runs that died are removed first.
	Prefix string
	// Impair: the router does not forward in the kernel; the impair bridge
	// forwards frames between its two links instead (with offloads turned off
	// on every veth, so the bridge sees single segments with full checksums).
	Impair bool
	// Seed of the bridge's random decisions (Impair only).
	Seed uint64
	// Logf receives progress lines (optional).
	Logf func(format string, args ...any)
}

// Topology is laptop -- router -- server, see the package comment.
type Topology struct {
	Laptop, Router, Server *NS
	// Bridge is the router's impairment bridge (nil without Options.Impair).
	Bridge *impair.Bridge

	closeOnce sync.Once
	closeErr  error
}

// New builds the topology. On error, whatever was created is removed again.
func New(o Options) (_ *Topology, err error) {
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = "tcpcit"
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if removed, err := RemoveLeftovers(o.Prefix, staleAfter); err != nil {
		logf("topo: removing leftovers: %v", err)
	} else if len(removed) > 0 {
		logf("topo: removed leftover namespaces %v", removed)
	}
	t := &Topology{}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	for _, role := range []string{"laptop", "router", "server"} {
		n, err := NewNamespace(o.Prefix, role)
		if err != nil {
			return nil, err
		}
		switch role {
		case "laptop":
			t.Laptop = n
		case "router":
			t.Router = n
		case "server":
			t.Server = n
		}
	}
	if err := Link(t.Laptop, HostIface, macLaptop, t.Router, RouterLapIface, macRouterLap); err != nil {
		return nil, err
	}
	if err := Link(t.Server, HostIface, macServer, t.Router, RouterSrvIface, macRouterSrv); err != nil {
		return nil, err
	}
	steps := []struct {
		ns     *NS
		iface  string
		prefix []netip.Prefix
	}{
		{t.Laptop, HostIface, []netip.Prefix{pfx(LaptopIPv4, laptopNetIPv4), pfx(LaptopIPv6, laptopNetIPv6)}},
		{t.Router, RouterLapIface, []netip.Prefix{pfx(RouterLapIPv4, laptopNetIPv4), pfx(RouterLapIPv6, laptopNetIPv6)}},
		{t.Router, RouterSrvIface, []netip.Prefix{pfx(RouterSrvIPv4, serverNetIPv4), pfx(RouterSrvIPv6, serverNetIPv6)}},
		{t.Server, HostIface, []netip.Prefix{pfx(ServerIPv4, serverNetIPv4), pfx(ServerIPv6, serverNetIPv6)}},
	}
	for _, s := range steps {
		if err := s.ns.AddAddrs(s.iface, s.prefix...); err != nil {
			return nil, err
		}
	}
	routes := []struct {
		ns    *NS
		dst   netip.Prefix
		via   netip.Addr
		iface string
	}{
		{t.Laptop, netip.Prefix{}, RouterLapIPv4, HostIface},
		{t.Laptop, netip.Prefix{}, RouterLapIPv6, HostIface},
		{t.Server, netip.Prefix{}, RouterSrvIPv4, HostIface},
		{t.Server, netip.Prefix{}, RouterSrvIPv6, HostIface},
		{t.Router, ServiceNetIPv4, ServerIPv4, RouterSrvIface},
		{t.Router, ServiceNetIPv6, ServerIPv6, RouterSrvIface},
	}
	for _, r := range routes {
		if err := r.ns.AddRoute(r.dst, r.via, r.iface); err != nil {
			return nil, err
		}
	}
	// Neighbours are static: the bridge rewrites MACs without ARP/NDP of its
	// own, and static entries make the first packet of every test immediate.
	neighs := []struct {
		ns    *NS
		iface string
		ip    netip.Addr
		mac   net.HardwareAddr
	}{
		{t.Laptop, HostIface, RouterLapIPv4, macRouterLap},
		{t.Laptop, HostIface, RouterLapIPv6, macRouterLap},
		{t.Server, HostIface, RouterSrvIPv4, macRouterSrv},
		{t.Server, HostIface, RouterSrvIPv6, macRouterSrv},
		{t.Router, RouterLapIface, LaptopIPv4, macLaptop},
		{t.Router, RouterLapIface, LaptopIPv6, macLaptop},
		{t.Router, RouterSrvIface, ServerIPv4, macServer},
		{t.Router, RouterSrvIface, ServerIPv6, macServer},
	}
	for _, nb := range neighs {
		if err := nb.ns.addNeigh(nb.iface, nb.ip, nb.mac); err != nil {
			return nil, err
		}
	}

	fwd := "1"
	if o.Impair {
		fwd = "0"
	}
	for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := t.Router.WriteSysctl(key, fwd); err != nil {
			return nil, err
		}
	}
	if !o.Impair {
		logf("topo: %s, %s, %s (router forwards in the kernel)", t.Laptop, t.Router, t.Server)
		return t, nil
	}
	for _, x := range []struct {
		ns    *NS
		iface string
	}{{t.Laptop, HostIface}, {t.Router, RouterLapIface}, {t.Router, RouterSrvIface}, {t.Server, HostIface}} {
		if err := x.ns.disableOffloads(x.iface); err != nil {
			return nil, err
		}
	}
	err = t.Router.Do(func() error {
		var err error
		t.Bridge, err = impair.NewBridge(impair.Config{
			A:     impair.Port{Iface: RouterLapIface, PeerMAC: macLaptop},
			B:     impair.Port{Iface: RouterSrvIface, PeerMAC: macServer},
			Local: []netip.Addr{RouterLapIPv4, RouterLapIPv6, RouterSrvIPv4, RouterSrvIPv6},
			Seed:  o.Seed,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start impair bridge in %s: %w", t.Router, err)
	}
	logf("topo: %s, %s, %s (router forwards through the impair bridge)", t.Laptop, t.Router, t.Server)
	return t, nil
}

// Close stops the bridge and removes the namespaces (and so every device in
// them). Processes started in the namespaces must have been stopped first;
// Close is idempotent.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		if t.Bridge != nil {
			t.Bridge.Close()
			if err := t.Bridge.Wait(); err != nil {
				errs = append(errs, fmt.Errorf("impair bridge: %w", err))
			}
		}
		for _, n := range []*NS{t.Laptop, t.Router, t.Server} {
			if n != nil {
				if err := n.Remove(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// Namespaces returns the topology's namespaces.
func (t *Topology) Namespaces() []*NS {
	return slices.DeleteFunc([]*NS{t.Laptop, t.Router, t.Server}, func(n *NS) bool { return n == nil })
}

func pfx(a netip.Addr, net netip.Prefix) netip.Prefix { return netip.PrefixFrom(a, net.Bits()) }

// Link joins namespaces a and b by a veth pair named aName (in a) and bName (in
// b), with the given MAC addresses (nil: random), and brings both ends up. The
// pair is created directly inside the namespaces, so its names never appear on
// the host.
func Link(a *NS, aName string, aMAC net.HardwareAddr, b *NS, bName string, bMAC net.HardwareAddr) error {
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: aName, HardwareAddr: aMAC, MTU: 1500},
		PeerName:         bName,
		PeerHardwareAddr: bMAC,
		PeerNamespace:    netlink.NsFd(int(b.h)),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s(%s) -- %s(%s): %w", aName, a, bName, b, err)
	}
	for _, x := range []struct {
		ns   *NS
		name string
	}{{a, aName}, {b, bName}} {
		l, err := x.ns.nl.LinkByName(x.name)
		if err == nil {
			err = x.ns.nl.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("bring up %s in %s: %w", x.name, x.ns, err)
		}
	}
	return nil
}

// AddAddrs puts addresses (with their prefix length) on iface. IPv6 addresses
// skip duplicate address detection, so they are usable at once.
func (n *NS) AddAddrs(iface string, addrs ...netip.Prefix) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", iface, n, err)
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := n.nl.AddrAdd(l, a); err != nil {
			return fmt.Errorf("address %s on %s in %s: %w", p, iface, n, err)
		}
	}
	return nil
}

// AddRoute adds a route to dst (the zero Prefix: default route of via's family)
// via gateway via on iface.
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr, iface string) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", iface, n, err)
	}
	if !dst.IsValid() {
		if via.Is4() {
			dst = netip.MustParsePrefix("0.0.0.0/0")
		} else {
			dst = netip.MustParsePrefix("::/0")
		}
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst), Gw: net.IP(via.AsSlice())}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s dev %s in %s: %w", dst, via, iface, n, err)
	}
	return nil
}

func (n *NS) addNeigh(iface string, ip netip.Addr, mac net.HardwareAddr) error {
	l, err := n.nl.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", iface, n, err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	nb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: mac}
	if err := n.nl.NeighSet(nb); err != nil {
		return fmt.Errorf("neighbour %s lladdr %s on %s in %s: %w", ip, mac, iface, n, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
