package netcfg

import "net/netip"

// LinkHost reads and changes interfaces and their addresses.
type LinkHost interface {
	// Link returns the state of an interface (ErrNotExist if there is none).
	Link(name string) (Link, error)
	// SetLink brings the interface up or down and sets its MTU (0: unchanged).
	SetLink(l Link) error
	// Interfaces lists interface names.
	Interfaces() ([]string, error)
	// Addrs lists the addresses of an interface, link-local ones included.
	Addrs(dev string) ([]netip.Prefix, error)
	AddAddr(a Addr) error
	DelAddr(a Addr) error
}

// RouteHost reads and changes routes and policy rules.
type RouteHost interface {
	// Routes lists the routes of a table, or of every table for 0.
	Routes(table int) ([]Route, error)
	AddRoute(r Route) error
	DelRoute(r Route) error
	// Rules lists the policy rules of both families.
	Rules() ([]Rule, error)
	AddRule(r Rule) error
	DelRule(r Rule) error
}

// SysctlHost reads and writes /proc/sys values by path (net/ipv4/ip_forward).
type SysctlHost interface {
	Sysctl(key string) (string, error)
	SetSysctl(key, value string) error
}

// NATHost manages our nftables table (NFTTableName) and nothing else.
type NATHost interface {
	// NATRules returns the rules of our table and whether the table exists.
	NATRules() (rules []NATRule, exists bool, err error)
	// AddNATRules creates the table and its chains if needed and adds rules, in one
	// transaction.
	AddNATRules(rules []NATRule) error
	// DelNATRules deletes rules of our table.
	DelNATRules(rules []NATRule) error
	// DelNATTable deletes our table with all its rules (ErrNotExist if absent).
	DelNATTable() error
}

// Host is everything netcfg touches on a host.
type Host interface {
	LinkHost
	RouteHost
	SysctlHost
	NATHost
}
