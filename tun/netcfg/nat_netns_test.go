package netcfg_test

// End-to-end NAT through the kernel, in two namespaces the test creates:
//
//   namespace A ("host")                                     namespace B ("remote")
//   +---------------------------------------------+          +--------------------------+
//   | gVisor stack on tcpc0 (tun/link):           |          |                          |
//   |   10.77.9.2, fd77:9::2   (egress sources)   |          |                          |
//   |   10.77.9.10, fd77:9::10 (service :443)     |          |                          |
//   | tcpc0 10.77.9.1/24 fd77:9::1/64             |          |                          |
//   | up0 10.88.0.1/24 fd88::1/64  <------veth------------>  up0p 10.88.0.2 fd88::2    |
//   +---------------------------------------------+          |  kernel server :7000     |
//                                                            |  kernel client -> :8443  |
//                                                            +--------------------------+
//
// The stack dials B from its egress address: forwarding, the bypass rule and the
// masquerade make B see A's uplink address. B dials A's uplink port 8443: DNAT sends
// it to the stack's service, which sees B's address.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpcryptd/tcpcryptd/tun/internal/nstest"
	"github.com/tcpcryptd/tcpcryptd/tun/link"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

func addAddrs(t *testing.T, nl *netlink.Handle, name string, ps ...string) netlink.Link {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		a := &netlink.Addr{IPNet: prefixNet(pfx(p))}
		if pfx(p).Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(l, a); err != nil {
			t.Fatalf("add %s to %s: %v", p, name, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}
}

func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

func TestLinuxNATEndToEnd(t *testing.T) {
	nstest.CheckLeaks(t, "tun/link.", "wireguard/tun.")
	a, b := nstest.New(t), nstest.New(t)
	nlA, nlB := a.Netlink(t), b.Netlink(t)

	var ep *link.Endpoint
	if err := a.Do(func() (err error) { ep, err = link.Open(dev, link.Options{MTU: 1500}); return err }); err != nil {
		t.Fatal(err)
	}
	if err := nlA.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0p"}); err != nil {
		t.Fatal(err)
	}
	peer, err := nlA.LinkByName("up0p")
	if err != nil {
		t.Fatal(err)
	}
	if err := nlA.LinkSetNsFd(peer, int(b.Handle())); err != nil {
		t.Fatal(err)
	}
	addAddrs(t, nlA, "up0", "10.88.0.1/24", "fd88::1/64")
	addAddrs(t, nlB, "up0p", "10.88.0.2/24", "fd88::2/64")

	// The stack: egress and service addresses on NIC 1.
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.Cleanup(s.Destroy)
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.77.9.2/24", "10.77.9.10/24", "fd77:9::2/64", "fd77:9::10/64"} {
		pa := tcpip.ProtocolAddress{Protocol: netProto(pfx(p).Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(pfx(p).Addr().AsSlice()), PrefixLen: pfx(p).Bits()}}
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}, {Destination: header.IPv6EmptySubnet, NIC: 1}})

	host, err := netcfg.NewLinuxHostAt(a.Handle())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Close)
	c := newConfig(t, host, "")
	spec := netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/24"), KernelV6: pfx("fd77:9::1/64"),
		StackV4: addr("10.77.9.2"), StackV6: addr("fd77:9::2"),
		Include: pfxs("203.0.113.0/24", "2001:db8:100::/48"), NAT: true,
		Services: []netcfg.ServiceSpec{{Addr: ap("10.77.9.10:443"), HostPort: 8443}, {Addr: ap("[fd77:9::10]:443"), HostPort: 8443}},
	}
	if err := c.Up(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Down(); err != nil {
			t.Error(err)
		}
	})

	// B: a kernel server that answers with the address it sees.
	for _, lip := range []string{"10.88.0.2", "fd88::2"} {
		var l net.Listener
		if err := b.Do(func() (err error) {
			l, err = net.Listen("tcp", net.JoinHostPort(lip, "7000"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(conn, conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
				conn.Close()
			}
		}()
	}

	// Egress: the stack dials B from its egress address; B sees A's uplink address.
	for _, tc := range []struct{ src, dst, seen string }{
		{"10.77.9.2:0", "10.88.0.2:7000", "10.88.0.1"},
		{"[fd77:9::2]:0", "[fd88::2]:7000", "fd88::1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := gonet.DialTCPWithBind(ctx, s, fullAddr(ap(tc.src)), fullAddr(ap(tc.dst)), netProto(ap(tc.dst).Addr()))
		cancel()
		if err != nil {
			t.Fatalf("stack dial %s from %s: %v", tc.dst, tc.src, err)
		}
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != tc.seen {
			t.Errorf("egress from %s: server saw %q (%v), want the masqueraded %s", tc.src, got, err, tc.seen)
		}
	}

	// Inbound: B dials A's uplink port 8443; DNAT delivers it to the stack's service,
	// which sees B's address.
	for _, svc := range spec.Services {
		l, err := gonet.ListenTCP(s, fullAddr(svc.Addr), netProto(svc.Addr.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(conn, conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
				conn.Close()
			}
		}()
	}
	// B dials A's uplink port 8443 (prerouting DNAT); then A itself does
	// (output hook, dnat-local), and the service sees A's address. Loopback
	// is left alone: nothing listens on 127.0.0.1:8443, so that is refused.
	for _, tc := range []struct {
		from      *nstest.NS
		name      string
		dst, seen string
	}{
		{b, "B", "10.88.0.1:8443", "10.88.0.2"},
		{b, "B", "[fd88::1]:8443", "fd88::2"},
		{a, "A itself", "10.88.0.1:8443", "10.88.0.1"},
		{a, "A itself", "[fd88::1]:8443", "fd88::1"},
	} {
		var conn net.Conn
		if err := tc.from.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", tc.dst, 5*time.Second)
			return err
		}); err != nil {
			t.Fatalf("dial %s from %s: %v", tc.dst, tc.name, err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != tc.seen {
			t.Errorf("DNAT %s from %s: service saw %q (%v), want %s", tc.dst, tc.name, got, err, tc.seen)
		}
	}
	for _, dst := range []string{"127.0.0.1:8443", "[::1]:8443"} {
		err := a.Do(func() error {
			conn, err := net.DialTimeout("tcp", dst, 5*time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		})
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("dial %s from A: %v, want connection refused (loopback is not DNAT'ed)", dst, err)
		}
	}
}
