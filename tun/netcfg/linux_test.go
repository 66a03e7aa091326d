package netcfg_test

// Namespace tests of LinuxHost: everything happens in a namespace the test creates.
//
//   test namespace
//   +---------------------------------------------------------------+
//   |  up0 (veth, up, accept_ra=1)       tcpc0 (TUN, tun/link)        |
//   |  kernel TCP/UDP sockets  --routes/rules under test-->  tcpc0   |
//   +---------------------------------------------------------------+

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/tun/internal/nstest"
	"github.com/tcpcryptd/tcpcryptd/tun/link"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// linuxEnv is a namespace with a TUN (read by a recorder) and a dummy uplink.
type linuxEnv struct {
	ns   *nstest.NS
	nl   *netlink.Handle
	ep   *link.Endpoint
	rec  *dstRecorder
	host *netcfg.LinuxHost
}

func newLinuxEnv(t *testing.T) *linuxEnv {
	t.Helper()
	nstest.CheckLeaks(t, "tun/link.", "wireguard/tun.")
	env := &linuxEnv{ns: nstest.New(t), rec: &dstRecorder{}}
	env.nl = env.ns.Netlink(t)
	err := env.ns.Do(func() (err error) {
		env.ep, err = link.Open(dev, link.Options{MTU: 1500})
		return err
	})
	if err != nil {
		t.Fatalf("open TUN: %v", err)
	}
	t.Cleanup(env.ep.Close)
	env.ep.Attach(env.rec)

	// An uplink with IPv6 on and accept_ra=1 (a veth: this kernel may lack dummy).
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0p"}
	if err := env.nl.LinkAdd(up); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	if err := env.nl.LinkSetUp(up); err != nil {
		t.Fatal(err)
	}
	// Addresses and default routes on the uplink, as a host has: a
	// connection's first route lookup (by the socket, before any mark) must
	// find a route; the capture mark then sends it into the TUN instead.
	for _, p := range []string{"192.0.2.1/24", "2001:db8:1::1/64"} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr(strings.Split(p, "/")[0]).AsSlice()), Mask: net.CIDRMask(24, 32)}}
		if strings.Contains(p, ":") {
			a.IPNet.Mask, a.Flags = net.CIDRMask(64, 128), unix.IFA_F_NODAD
		}
		if err := env.nl.AddrAdd(up, a); err != nil {
			t.Fatalf("address on the uplink: %v", err)
		}
	}
	for _, gw := range []string{"192.0.2.254", "2001:db8:1::fe"} {
		if err := env.nl.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IP(addr(gw).AsSlice())}); err != nil {
			t.Fatalf("default route: %v", err)
		}
	}
	if env.host, err = netcfg.NewLinuxHostAt(env.ns.Handle()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.host.Close)
	return env
}

// dstRecorder records the destination and protocol of packets the TUN receives.
type dstRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *dstRecorder) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	b := v.AsSlice()
	var s string
	switch {
	case p == header.IPv4ProtocolNumber && len(b) >= 20:
		h := header.IPv4(b)
		s = fmt.Sprintf("%d %v", h.Protocol(), h.DestinationAddress())
	case p == header.IPv6ProtocolNumber && len(b) >= 40:
		h := header.IPv6(b)
		s = fmt.Sprintf("%d %v", h.NextHeader(), h.DestinationAddress())
	}
	r.mu.Lock()
	r.seen = append(r.seen, s)
	r.mu.Unlock()
}

func (*dstRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (r *dstRecorder) saw(proto int, dst netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.seen, fmt.Sprintf("%d %v", proto, dst))
}

// dump prints, straight from netlink, nftables and /proc/sys, everything netcfg may
// touch: rules, routes in our table or with our protocol, addresses on the TUN, nft
// tables, forwarding and accept_ra.
func (env *linuxEnv) dump(t *testing.T, table int) string {
	t.Helper()
	var out []string
	rules, err := env.nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		out = append(out, fmt.Sprintf("rule fam=%d prio=%d src=%v iif=%q ipproto=%d fwmark=%#x table=%d proto=%d",
			r.Family, r.Priority, r.Src, r.IifName, r.IPProto, r.Mark, r.Table, r.Protocol))
	}
	routes, err := env.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Table == table || r.Protocol == netcfg.RouteProtocol {
			out = append(out, fmt.Sprintf("route table=%d dst=%v type=%d link=%d proto=%d", r.Table, r.Dst, r.Type, r.LinkIndex, r.Protocol))
		}
	}
	if l, err := env.nl.LinkByName(dev); err == nil {
		addrs, err := env.nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if !a.IP.IsLinkLocalUnicast() {
				out = append(out, "addr "+a.IPNet.String())
			}
		}
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(env.ns.Handle())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := nft.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		chains, _ := nft.ListChainsOfTableFamily(tb.Family)
		n := 0
		for _, c := range chains {
			if c.Table.Name == tb.Name {
				rs, _ := nft.GetRules(tb, c)
				n += len(rs)
			}
		}
		out = append(out, fmt.Sprintf("nft table %d %s rules=%d", tb.Family, tb.Name, n))
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/up0/accept_ra"} {
		v, err := env.host.Sysctl(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, "\n") + "\n"
}

var linuxSpec = netcfg.Spec{
	Device: dev, MTU: 1400, KernelV4: pfx("10.77.9.1/24"), KernelV6: pfx("fd77:9::1/64"),
	StackV4: addr("10.77.9.2"), StackV6: addr("fd77:9::2"),
	Include: pfxs("203.0.113.0/24", "2001:db8:100::/48"), Exclude: pfxs("203.0.113.128/25"), NAT: true,
	Services: []netcfg.ServiceSpec{{Addr: ap("10.77.9.10:443"), HostPort: 8443}, {Addr: ap("198.18.0.5:22"), HostPort: 2222},
		{Addr: ap("[fd77:9::10]:443"), HostPort: 8444}},
}

// TestLinuxUpDown: Up creates every object (checked with netlink and nftables
// directly), routes TCP to an Include address into the TUN but not UDP, is
// idempotent, and Down leaves the namespace exactly as it was.
func TestLinuxUpDown(t *testing.T) {
	env := newLinuxEnv(t)
	before := env.dump(t, netcfg.DefaultTable)
	c := newConfig(t, env.host, "")
	if err := c.Up(linuxSpec); err != nil {
		t.Fatal(err)
	}
	after := env.dump(t, netcfg.DefaultTable)
	t.Logf("after Up:\n%s", after)
	for _, want := range []string{
		"addr 10.77.9.1/24", "addr fd77:9::1/64",
		fmt.Sprintf("route table=%d dst=203.0.113.0/24 type=%d", netcfg.DefaultTable, unix.RTN_UNICAST),
		fmt.Sprintf("route table=%d dst=203.0.113.128/25 type=%d", netcfg.DefaultTable, unix.RTN_THROW),
		fmt.Sprintf("route table=%d dst=198.18.0.5/32 type=%d", netcfg.DefaultTable, unix.RTN_UNICAST),
		fmt.Sprintf("route table=%d dst=2001:db8:100::/48", netcfg.DefaultTable),
		fmt.Sprintf("rule fam=2 prio=%d src=10.77.9.2/32 iif=\"\" ipproto=0 fwmark=0x0 table=254 proto=%d", netcfg.DefaultRulePriority, netcfg.RouteProtocol),
		fmt.Sprintf("rule fam=2 prio=%d src=<nil> iif=%q ipproto=0 fwmark=0x0 table=254 proto=%d", netcfg.DefaultRulePriority, dev, netcfg.RouteProtocol),
		fmt.Sprintf("rule fam=10 prio=%d src=<nil> iif=\"\" ipproto=6 fwmark=%#x table=%d proto=%d",
			netcfg.DefaultRulePriority+1, netcfg.CaptureMark, netcfg.DefaultTable, netcfg.RouteProtocol),
		// 3 dnat, 3 dnat-local, 2 masquerade, 2 capture (203.0.113.0-127,
		// 2001:db8:100::/48), 2 capture-restore (out, in), 2 forward-drop.
		fmt.Sprintf("nft table %d %s rules=14", nftables.TableFamilyINet, netcfg.NFTTableName),
		"net/ipv4/ip_forward=1", "net/ipv6/conf/all/forwarding=1", "net/ipv6/conf/up0/accept_ra=2",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("after Up, missing %q", want)
		}
	}
	if l, _ := env.host.Link(dev); !l.Up || l.MTU != 1400 {
		t.Errorf("link = %v", l)
	}
	// The rules read back through user data.
	if rs, ok, err := env.host.NATRules(); err != nil || !ok || len(rs) != 14 {
		t.Errorf("NATRules = %v, %v, %v", rs, ok, err)
	}

	// Routing: TCP to an Include address enters the TUN; UDP does not (it gets no
	// mark and leaves by the default route); TCP to an Exclude address does not either.
	env.poke(t, "tcp", "203.0.113.7:80")
	env.poke(t, "tcp", "[2001:db8:100::7]:80")
	env.poke(t, "udp", "203.0.113.8:53")
	env.poke(t, "tcp", "203.0.113.200:80")
	deadline := time.Now().Add(5 * time.Second)
	for !(env.rec.saw(6, addr("203.0.113.7")) && env.rec.saw(6, addr("2001:db8:100::7"))) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !env.rec.saw(6, addr("203.0.113.7")) || !env.rec.saw(6, addr("2001:db8:100::7")) {
		t.Error("TCP SYN to an Include address did not reach the TUN")
	}
	if env.rec.saw(17, addr("203.0.113.8")) {
		t.Error("UDP to an Include address was routed into the TUN")
	}
	if env.rec.saw(6, addr("203.0.113.200")) {
		t.Error("TCP to an Exclude address was routed into the TUN")
	}

	n := len(c.Journal())
	if err := c.Up(linuxSpec); err != nil {
		t.Fatal(err)
	}
	if again := env.dump(t, netcfg.DefaultTable); again != after || len(c.Journal()) != n {
		t.Errorf("second Up changed the host:\n%s", again)
	}

	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	if got := env.dump(t, netcfg.DefaultTable); got != before {
		t.Errorf("after Down:\n--- got\n%s--- want\n%s", got, before)
	}
}

// poke sends one packet (a TCP SYN or a UDP datagram) from the namespace's kernel.
func (env *linuxEnv) poke(t *testing.T, network, dst string) {
	t.Helper()
	err := env.ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, network, dst)
		if err == nil {
			_, err = c.Write([]byte("x"))
			c.Close()
		}
		return err
	})
	t.Logf("%s to %s: %v", network, dst, err)
}

// TestLinuxCrashCleanup: Up, then the process dies without Down (the TUN goes with
// it). Cleanup without a journal removes every rule, route and nft table of ours;
// with the journal file it also restores the sysctls.
func TestLinuxCrashCleanup(t *testing.T) {
	for _, withJournal := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-journal", true: "journal"}[withJournal], func(t *testing.T) {
			env := newLinuxEnv(t)
			before := env.dump(t, netcfg.DefaultTable)
			path := filepath.Join(t.TempDir(), "journal")
			if err := newConfig(t, env.host, path).Up(linuxSpec); err != nil {
				t.Fatal(err)
			}
			env.ep.Close() // the crash: the Config is dropped and the TUN closes
			opts := netcfg.CleanupOptions{Device: dev, Logger: testLogger(t)}
			if withJournal {
				opts.JournalPath = path
			}
			if err := netcfg.Cleanup(env.host, opts); err != nil {
				t.Fatal(err)
			}
			got := env.dump(t, netcfg.DefaultTable)
			if !withJournal {
				// Without the journal, the sysctls stay as the crash left them.
				for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
					before = strings.Replace(before, k+"=0", k+"=1", 1)
				}
				before = strings.Replace(before, "net/ipv6/conf/up0/accept_ra=1", "net/ipv6/conf/up0/accept_ra=2", 1)
			}
			if got != before {
				t.Errorf("after Cleanup:\n--- got\n%s--- want\n%s", got, before)
			}
		})
	}
}
