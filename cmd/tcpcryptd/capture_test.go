package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// What check-config and the control API say is captured (config) is what
// the host's rules capture (netcfg): the automatic exclusions are listed
// in both packages and must agree.
func TestCapturedAgreesWithNetcfg(t *testing.T) {
	cfg := mustParse(t, `
[outbound]
include = ["0.0.0.0/0", "::/0"]
exclude = ["192.0.2.0/24", "2001:db8:1::/48"]
`)
	s := netSpec(cfg)
	for _, a := range []string{
		"198.51.100.7", "192.0.2.5", "127.0.0.1", "0.1.2.3", "169.254.1.1", "224.0.0.1", "239.255.255.250",
		"255.255.255.255", "10.254.77.1", "10.254.77.200", "10.254.78.1", "1.1.1.1",
		"2001:db8:2::1", "2001:db8:1::5", "::1", "::", "::ffff:1.2.3.4", "fe80::1", "febf::1", "ff02::1",
		"fd7c:e770::2", "fd7c:e771::2", "2606:4700::1111",
	} {
		ip := netip.MustParseAddr(a)
		want := netcfg.CapturedBy(s.Include, s.Exclude, s.KernelV4, s.KernelV6, ip)
		if got := cfg.Captured(ip); got != want {
			t.Errorf("%s: config says captured=%v, netcfg %v", a, got, want)
		}
	}
}

// A backend dial carries netcfg.OwnMark, which the capture rules skip: the
// daemon's own connections never come back into the device, whatever the
// include list says. (Setting SO_MARK needs CAP_NET_ADMIN.)
func TestBackendDialCarriesOwnMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_MARK needs CAP_NET_ADMIN")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	dial := backendDialer(config.Service{Name: "t", Backend: l.Addr().String()}, func(netip.AddrPort) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	rc.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if gerr != nil || uint32(mark) != netcfg.OwnMark {
		t.Fatalf("backend socket mark %#x (%v), want %#x", mark, gerr, netcfg.OwnMark)
	}
}
