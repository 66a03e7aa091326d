package netcfg_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// A host that forwarded already keeps forwarding as it did: no drop rule
// for that family. Where forwarding is our doing, only the device's flows
// are forwarded (forward-drop), and a later Up, which sees forwarding on,
// remembers from the journal that it was off.
func TestForwardDropOnlyWhereWeEnabledForwarding(t *testing.T) {
	h := newHost()
	h.SetSysctlValue("net/ipv4/ip_forward", "1") // a router for IPv4, not for IPv6
	c := newConfig(t, h, "")
	spec := netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/24"), KernelV6: pfx("fd77:9::1/64"),
		StackV4: addr("10.77.9.2"), StackV6: addr("fd77:9::2"), Include: pfxs("0.0.0.0/0", "::/0"), NAT: true,
	}
	for range 2 {
		if err := c.Up(spec); err != nil {
			t.Fatal(err)
		}
		st := h.String()
		if strings.Contains(st, "forward-drop ipv4") {
			t.Errorf("drop rule for IPv4 on a host that forwarded before:\n%s", st)
		}
		if !strings.Contains(st, "nft forward-drop ipv6 iif != tcpc0 oif != tcpc0") {
			t.Errorf("no drop rule for IPv6, whose forwarding we turned on:\n%s", st)
		}
	}
	var js []string
	for _, ch := range c.Journal() {
		js = append(js, ch.String())
	}
	j := strings.Join(js, "\n")
	if !strings.Contains(j, "set net/ipv6/conf/all/forwarding, was 0") || strings.Contains(j, "net/ipv4/ip_forward") {
		t.Errorf("journal does not say which forwarding we turned on:\n%s", j)
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Sysctl("net/ipv4/ip_forward"); strings.TrimSpace(v) != "1" {
		t.Errorf("ip_forward after Down = %s, want 1 (as it was)", v)
	}
}

func TestCapturedBy(t *testing.T) {
	inc := pfxs("0.0.0.0/0", "::/0")
	exc := pfxs("192.0.2.0/24", "192.0.2.128/25", "10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32")
	k4, k6 := pfx("10.77.9.1/24"), pfx("fd77:9::1/64")
	for a, want := range map[string]bool{
		"0.0.0.0": false, "0.255.255.255": false, "1.0.0.0": true, "9.255.255.255": true, "10.0.0.0": false,
		"10.255.255.255": false, "11.0.0.0": true, "126.255.255.255": true, "127.0.0.1": false, "128.0.0.0": true,
		"169.254.0.1": false, "192.0.1.255": true, "192.0.2.0": false, "192.0.2.255": false, "192.0.3.0": true,
		"223.255.255.255": true, "224.0.0.0": false, "239.255.255.255": false, "240.0.0.1": true,
		"255.255.255.254": true, "255.255.255.255": false, "10.77.9.5": false,
		"::": false, "::1": false, "::2": true, "::ffff:1.2.3.4": true /* unmapped: IPv4 */, "2001:db7::1": true, "2001:db8::1": false,
		"2001:db9::": true, "fd77:9::5": false, "fd77:a::5": true, "fe80::1": false, "febf:ffff::1": false,
		"fec0::1": true, "ff02::1": false, "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true,
	} {
		if got := netcfg.CapturedBy(inc, exc, k4, k6, netip.MustParseAddr(a)); got != want {
			t.Errorf("CapturedBy(%s) = %v, want %v", a, got, want)
		}
	}
	// Include lists overlap and touch; narrower lists capture only themselves.
	inc = pfxs("198.51.100.0/25", "198.51.100.128/25", "198.51.100.0/24", "203.0.113.0/24")
	for a, want := range map[string]bool{"198.51.100.0": true, "198.51.100.255": true, "198.51.101.0": false,
		"203.0.113.9": true, "8.8.8.8": false, "2001:db9::1": false} {
		if got := netcfg.CapturedBy(inc, nil, k4, k6, netip.MustParseAddr(a)); got != want {
			t.Errorf("narrow: CapturedBy(%s) = %v, want %v", a, got, want)
		}
	}
}
