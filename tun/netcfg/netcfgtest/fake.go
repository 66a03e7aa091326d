// Package netcfgtest provides a fake netcfg.Host that keeps host state in memory and
// prints it as text, for golden tests of netcfg and of code that drives it.
package netcfgtest

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// ErrInjected is returned by an operation that FailOn armed.
var ErrInjected = errors.New("injected failure")

// Host is an in-memory netcfg.Host. The zero value is not usable; use NewHost.
type Host struct {
	mu       sync.Mutex
	links    map[string]*netcfg.Link
	addrs    map[string][]netip.Prefix
	routes   []netcfg.Route
	rules    []netcfg.Rule
	sysctls  map[string]string
	natTable bool
	nat      []netcfg.NATRule
	changes  int
	fail     map[string]int // op -> calls until failure (1: the next call)
}

var _ netcfg.Host = (*Host)(nil)

// NewHost returns a host that looks like a small Linux machine: lo and eth0 (IPv4 and
// IPv6, accept_ra=1) and wlan0 (accept_ra=0), forwarding off, the three standard
// rules, a default route, and no nftables table of ours.
func NewHost() *Host {
	h := &Host{
		links: map[string]*netcfg.Link{
			"lo":    {Name: "lo", Up: true, MTU: 65536},
			"eth0":  {Name: "eth0", Up: true, MTU: 1500},
			"wlan0": {Name: "wlan0", Up: true, MTU: 1500},
		},
		addrs: map[string][]netip.Prefix{
			"lo":    {netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")},
			"eth0":  {netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64"), netip.MustParsePrefix("fe80::1/64")},
			"wlan0": {},
		},
		routes: []netcfg.Route{
			{Table: 254, Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0", Proto: 3},
			{Table: 254, Dst: netip.MustParsePrefix("192.0.2.0/24"), Dev: "eth0", Proto: 2},
			{Table: 254, Dst: netip.MustParsePrefix("::/0"), Dev: "eth0", Proto: 9},
		},
		rules: []netcfg.Rule{
			{Priority: 0, Table: 255}, {Priority: 32766, Table: 254}, {Priority: 32767, Table: 253},
			{Priority: 0, V6: true, Table: 255}, {Priority: 32766, V6: true, Table: 254},
		},
		sysctls: map[string]string{
			"net/ipv4/ip_forward":             "0",
			"net/ipv6/conf/all/forwarding":    "0",
			"net/ipv6/conf/lo/accept_ra":      "1",
			"net/ipv6/conf/eth0/accept_ra":    "1",
			"net/ipv6/conf/wlan0/accept_ra":   "0",
			"net/ipv6/conf/default/accept_ra": "1",
		},
		fail: map[string]int{},
	}
	return h
}

// AddLink creates an interface (the TUN a test pretends tun/link created), with IPv6
// on and accept_ra=1 and src_valid_mark=0 as a fresh Linux interface has.
func (h *Host) AddLink(name string, mtu int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.links[name] = &netcfg.Link{Name: name, MTU: mtu}
	h.addrs[name] = nil
	h.sysctls["net/ipv6/conf/"+name+"/accept_ra"] = "1"
	h.sysctls["net/ipv4/conf/"+name+"/src_valid_mark"] = "0"
}

// RemoveLink deletes an interface as closing a TUN does: its addresses and the
// routes through it go with it.
func (h *Host) RemoveLink(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.links, name)
	delete(h.addrs, name)
	delete(h.sysctls, "net/ipv6/conf/"+name+"/accept_ra")
	delete(h.sysctls, "net/ipv4/conf/"+name+"/src_valid_mark")
	h.routes = slices.DeleteFunc(h.routes, func(r netcfg.Route) bool { return r.Dev == name })
}

// SetSysctlValue presets a sysctl without counting a change.
func (h *Host) SetSysctlValue(key, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sysctls[key] = value
}

// FailOn makes the nth next call (1: the next) of op fail with ErrInjected. op is a
// method name such as "AddRoute".
func (h *Host) FailOn(op string, nth int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail[op] = nth
}

// Changes counts the state-changing calls that succeeded.
func (h *Host) Changes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changes
}

// check runs under mu at the start of every method.
func (h *Host) check(op string) error {
	if n, ok := h.fail[op]; ok {
		if n <= 1 {
			delete(h.fail, op)
			return fmt.Errorf("%s: %w", op, ErrInjected)
		}
		h.fail[op] = n - 1
	}
	return nil
}

func (h *Host) changed() { h.changes++ }

// String prints the whole host state, one object per line, in a stable order.
func (h *Host) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	section := func(lines []string) {
		slices.Sort(lines)
		out = append(out, lines...)
	}
	var ls []string
	for _, l := range h.links {
		ls = append(ls, l.String())
	}
	section(ls)
	var as []string
	for dev, ps := range h.addrs {
		for _, p := range ps {
			as = append(as, netcfg.Addr{Dev: dev, Prefix: p}.String())
		}
	}
	section(as)
	var rs []string
	for _, r := range h.routes {
		rs = append(rs, r.String())
	}
	section(rs)
	rules := slices.Clone(h.rules)
	slices.SortStableFunc(rules, func(a, b netcfg.Rule) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.String(), b.String()))
	})
	for _, r := range rules {
		out = append(out, r.String())
	}
	var ss []string
	for k, v := range h.sysctls {
		ss = append(ss, netcfg.Sysctl{Key: k, Value: v}.String())
	}
	section(ss)
	if h.natTable {
		out = append(out, "nft table inet "+netcfg.NFTTableName)
		var ns []string
		for _, r := range h.nat {
			ns = append(ns, "nft "+r.String())
		}
		section(ns)
	}
	return strings.Join(out, "\n") + "\n"
}

// LinkHost.

func (h *Host) Link(name string) (netcfg.Link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Link"); err != nil {
		return netcfg.Link{}, err
	}
	l, ok := h.links[name]
	if !ok {
		return netcfg.Link{}, fmt.Errorf("link %s: %w", name, netcfg.ErrNotExist)
	}
	return *l, nil
}

func (h *Host) SetLink(l netcfg.Link) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("SetLink"); err != nil {
		return err
	}
	cur, ok := h.links[l.Name]
	if !ok {
		return fmt.Errorf("link %s: %w", l.Name, netcfg.ErrNotExist)
	}
	cur.Up = l.Up
	if l.MTU != 0 {
		cur.MTU = l.MTU
	}
	h.changed()
	return nil
}

func (h *Host) Interfaces() ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Interfaces"); err != nil {
		return nil, err
	}
	var names []string
	for n := range h.links {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (h *Host) Addrs(dev string) ([]netip.Prefix, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Addrs"); err != nil {
		return nil, err
	}
	ps, ok := h.addrs[dev]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", dev, netcfg.ErrNotExist)
	}
	return slices.Clone(ps), nil
}

func (h *Host) AddAddr(a netcfg.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("AddAddr"); err != nil {
		return err
	}
	ps, ok := h.addrs[a.Dev]
	if !ok {
		return fmt.Errorf("link %s: %w", a.Dev, netcfg.ErrNotExist)
	}
	if slices.Contains(ps, a.Prefix) {
		return fmt.Errorf("%v: exists", a)
	}
	h.addrs[a.Dev] = append(ps, a.Prefix)
	h.changed()
	return nil
}

func (h *Host) DelAddr(a netcfg.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("DelAddr"); err != nil {
		return err
	}
	ps := h.addrs[a.Dev]
	i := slices.Index(ps, a.Prefix)
	if i < 0 {
		return fmt.Errorf("%v: %w", a, netcfg.ErrNotExist)
	}
	h.addrs[a.Dev] = slices.Delete(ps, i, i+1)
	h.changed()
	return nil
}

// RouteHost.

func routeKey(r netcfg.Route) string { r.Proto = 0; return r.String() }

func (h *Host) Routes(table int) ([]netcfg.Route, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Routes"); err != nil {
		return nil, err
	}
	var out []netcfg.Route
	for _, r := range h.routes {
		if table == 0 || r.Table == table {
			out = append(out, r)
		}
	}
	return out, nil
}

func (h *Host) AddRoute(r netcfg.Route) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("AddRoute"); err != nil {
		return err
	}
	if !r.Throw {
		if _, ok := h.links[r.Dev]; !ok {
			return fmt.Errorf("%v: %w", r, netcfg.ErrNotExist)
		}
	}
	if slices.ContainsFunc(h.routes, func(x netcfg.Route) bool { return routeKey(x) == routeKey(r) }) {
		return fmt.Errorf("%v: exists", r)
	}
	h.routes = append(h.routes, r)
	h.changed()
	return nil
}

func (h *Host) DelRoute(r netcfg.Route) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("DelRoute"); err != nil {
		return err
	}
	i := slices.IndexFunc(h.routes, func(x netcfg.Route) bool { return routeKey(x) == routeKey(r) })
	if i < 0 {
		return fmt.Errorf("%v: %w", r, netcfg.ErrNotExist)
	}
	h.routes = slices.Delete(h.routes, i, i+1)
	h.changed()
	return nil
}

func (h *Host) Rules() ([]netcfg.Rule, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Rules"); err != nil {
		return nil, err
	}
	return slices.Clone(h.rules), nil
}

func (h *Host) AddRule(r netcfg.Rule) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("AddRule"); err != nil {
		return err
	}
	if slices.Contains(h.rules, r) {
		return fmt.Errorf("%v: exists", r)
	}
	h.rules = append(h.rules, r)
	h.changed()
	return nil
}

func (h *Host) DelRule(r netcfg.Rule) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("DelRule"); err != nil {
		return err
	}
	i := slices.Index(h.rules, r)
	if i < 0 {
		return fmt.Errorf("%v: %w", r, netcfg.ErrNotExist)
	}
	h.rules = slices.Delete(h.rules, i, i+1)
	h.changed()
	return nil
}

// SysctlHost.

func (h *Host) Sysctl(key string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("Sysctl"); err != nil {
		return "", err
	}
	v, ok := h.sysctls[key]
	if !ok {
		return "", fmt.Errorf("sysctl %s: %w", key, netcfg.ErrNotExist)
	}
	return v + "\n", nil // as /proc/sys has it
}

func (h *Host) SetSysctl(key, value string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("SetSysctl"); err != nil {
		return err
	}
	if _, ok := h.sysctls[key]; !ok {
		return fmt.Errorf("sysctl %s: %w", key, netcfg.ErrNotExist)
	}
	h.sysctls[key] = value
	h.changed()
	return nil
}

// NATHost.

func (h *Host) NATRules() ([]netcfg.NATRule, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("NATRules"); err != nil {
		return nil, false, err
	}
	return slices.Clone(h.nat), h.natTable, nil
}

func (h *Host) AddNATRules(rules []netcfg.NATRule) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("AddNATRules"); err != nil {
		return err
	}
	h.natTable = true
	h.nat = append(h.nat, rules...)
	h.changed()
	return nil
}

func (h *Host) DelNATRules(rules []netcfg.NATRule) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("DelNATRules"); err != nil {
		return err
	}
	if !h.natTable {
		return fmt.Errorf("nft table: %w", netcfg.ErrNotExist)
	}
	n := len(h.nat)
	h.nat = slices.DeleteFunc(h.nat, func(r netcfg.NATRule) bool { return slices.Contains(rules, r) })
	if len(h.nat) == n {
		return fmt.Errorf("nft rules: %w", netcfg.ErrNotExist)
	}
	h.changed()
	return nil
}

func (h *Host) DelNATTable() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.check("DelNATTable"); err != nil {
		return err
	}
	if !h.natTable {
		return fmt.Errorf("nft table: %w", netcfg.ErrNotExist)
	}
	h.natTable, h.nat = false, nil
	h.changed()
	return nil
}
