package topo

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// snapshotSysctls are the per-namespace switches a daemon may flip.
var snapshotSysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/forwarding",
	"net/ipv4/conf/all/rp_filter",
	"net/ipv4/conf/default/rp_filter",
	"net/ipv6/conf/all/forwarding",
	"net/ipv6/conf/default/forwarding",
	"net/ipv6/conf/all/accept_ra",
	"net/ipv6/conf/default/accept_ra",
	"net/ipv4/conf/" + HostIface + "/rp_filter",
	"net/ipv6/conf/" + HostIface + "/accept_ra",
	"net/ipv6/conf/" + HostIface + "/forwarding",
}

// Snapshot returns the namespace's network state as sorted text lines: links,
// addresses, routes of every table, policy rules, nftables tables and the
// forwarding-related sysctls. Two snapshots are equal when nothing a daemon
// configures differs (counters and other volatile fields are left out).
func (n *NS) Snapshot() (string, error) {
	var lines []string
	links, err := n.nl.LinkList()
	if err != nil {
		return "", fmt.Errorf("links in %s: %w", n, err)
	}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		up := "down"
		if a.Flags&net.FlagUp != 0 {
			up = "up"
		}
		lines = append(lines, fmt.Sprintf("link %s type=%s %s mtu=%d", a.Name, l.Type(), up, a.MTU))
		addrs, err := n.nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return "", fmt.Errorf("addresses of %s in %s: %w", a.Name, n, err)
		}
		for _, ad := range addrs {
			lines = append(lines, fmt.Sprintf("addr %s %s", a.Name, ad.IPNet))
		}
	}
	routes, err := n.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("routes in %s: %w", n, err)
	}
	for _, r := range routes {
		if r.Table == unix.RT_TABLE_LOCAL && r.Protocol == unix.RTPROT_KERNEL {
			// The kernel keeps the local table in step with addresses,
			// link state and forwarding (subnet-router anycast) on its own
			// schedule, e.g. an IPv6 address's local route appears once the
			// veth has carrier. tcpcryptd never writes this table.
			continue
		}
		dev := names[r.LinkIndex]
		if dev == "" && r.LinkIndex != 0 {
			dev = fmt.Sprintf("if%d", r.LinkIndex)
		}
		lines = append(lines, fmt.Sprintf("route table=%d type=%d proto=%d dst=%v gw=%v src=%v dev=%s prio=%d",
			r.Table, r.Type, r.Protocol, r.Dst, r.Gw, r.Src, dev, r.Priority))
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := n.nl.RuleList(fam)
		if err != nil {
			return "", fmt.Errorf("rules in %s: %w", n, err)
		}
		for _, r := range rules {
			lines = append(lines, fmt.Sprintf("rule family=%d prio=%d table=%d src=%v dst=%v iif=%s oif=%s ipproto=%d mark=%d invert=%v goto=%d type=%d",
				fam, r.Priority, r.Table, r.Src, r.Dst, r.IifName, r.OifName, r.IPProto, r.Mark, r.Invert, r.Goto, r.Type))
		}
	}
	nft, err := nftables.New(nftables.WithNetNSFd(int(n.h)))
	if err != nil {
		return "", fmt.Errorf("nftables in %s: %w", n, err)
	}
	defer nft.CloseLasting()
	tables, err := nft.ListTables()
	if err != nil {
		return "", fmt.Errorf("nftables tables in %s: %w", n, err)
	}
	for _, t := range tables {
		lines = append(lines, fmt.Sprintf("nft table family=%d %s", t.Family, t.Name))
	}
	for _, key := range snapshotSysctls {
		v, err := n.ReadSysctl(key)
		if err != nil {
			v = "(absent)"
		}
		lines = append(lines, fmt.Sprintf("sysctl %s=%s", key, v))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n", nil
}
