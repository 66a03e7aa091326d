package netcfg

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Link is the state of a network interface that we manage.
type Link struct {
	Name string `json:"name"`
	Up   bool   `json:"up"`
	MTU  int    `json:"mtu"`
}

func (l Link) String() string {
	state := "down"
	if l.Up {
		state = "up"
	}
	return fmt.Sprintf("link %s %s mtu %d", l.Name, state, l.MTU)
}

// Addr is an address with its prefix length on an interface.
type Addr struct {
	Dev    string       `json:"dev"`
	Prefix netip.Prefix `json:"prefix"`
}

func (a Addr) String() string { return fmt.Sprintf("addr %s %v", a.Dev, a.Prefix) }

// Route is a route as far as we create them: into a device, or a throw route
// (lookup continues with the next rule), in a table.
type Route struct {
	Table int          `json:"table"`
	Dst   netip.Prefix `json:"dst"`
	Dev   string       `json:"dev,omitempty"` // empty for throw routes
	Throw bool         `json:"throw,omitempty"`
	Proto int          `json:"proto"` // rtm_protocol; RouteProtocol for ours
}

func (r Route) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "route table %s ", tableName(r.Table))
	if r.Throw {
		fmt.Fprintf(&b, "throw %v", r.Dst)
	} else {
		fmt.Fprintf(&b, "%v dev %s", r.Dst, r.Dev)
	}
	fmt.Fprintf(&b, " proto %s", protoName(r.Proto))
	return b.String()
}

// key identifies a route for diffing; the protocol is a mark, not identity.
func (r Route) key() string {
	r.Proto = 0
	return r.String()
}

// Rule is a policy routing rule as far as we create them.
type Rule struct {
	Priority int          `json:"priority"`
	V6       bool         `json:"v6,omitempty"`
	From     netip.Prefix `json:"from,omitzero"`     // zero: any source
	To       netip.Prefix `json:"to,omitzero"`       // zero: any destination
	IifName  string       `json:"iif,omitempty"`     // empty: any input interface
	IPProto  int          `json:"ipproto,omitempty"` // 0: any transport
	Mark     uint32       `json:"fwmark,omitempty"`  // 0: any firewall mark (else: exactly this one)
	Table    int          `json:"table"`
	Proto    int          `json:"proto"` // FRA_PROTOCOL; RouteProtocol for ours
}

func (r Rule) String() string {
	var b strings.Builder
	fam := "v4"
	if r.V6 {
		fam = "v6"
	}
	fmt.Fprintf(&b, "rule %s prio %d", fam, r.Priority)
	if r.From.IsValid() {
		fmt.Fprintf(&b, " from %v", r.From)
	}
	if r.To.IsValid() {
		fmt.Fprintf(&b, " to %v", r.To)
	}
	if r.IifName != "" {
		fmt.Fprintf(&b, " iif %s", r.IifName)
	}
	if r.IPProto != 0 {
		if r.IPProto == ipProtoTCP {
			b.WriteString(" ipproto tcp")
		} else {
			fmt.Fprintf(&b, " ipproto %d", r.IPProto)
		}
	}
	if r.Mark != 0 {
		fmt.Fprintf(&b, " fwmark %#x", r.Mark)
	}
	fmt.Fprintf(&b, " lookup %s proto %s", tableName(r.Table), protoName(r.Proto))
	return b.String()
}

func (r Rule) key() string {
	r.Proto = 0
	return r.String()
}

// Sysctl is one /proc/sys value; Key is the path below /proc/sys
// ("net/ipv4/ip_forward"), so interface names with dots stay unambiguous.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (s Sysctl) String() string { return fmt.Sprintf("sysctl %s = %s", s.Key, s.Value) }

const ipProtoTCP = 6

func tableName(t int) string {
	switch t {
	case tableMain:
		return "main"
	case tableLocal:
		return "local"
	case tableDefault:
		return "default"
	}
	return strconv.Itoa(t)
}

func protoName(p int) string {
	if p == RouteProtocol {
		return "tcpcryptd"
	}
	return strconv.Itoa(p)
}

// validSysctlKey accepts paths below /proc/sys/net made of non-empty segments that
// are not "." or "..": what our keys look like (interface names cannot contain '/').
func validSysctlKey(key string) error {
	if !strings.HasPrefix(key, "net/") {
		return fmt.Errorf("sysctl key %q: not below net/", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("sysctl key %q: bad path segment", key)
		}
		for _, c := range seg {
			if c <= ' ' || c == 0x7f {
				return fmt.Errorf("sysctl key %q: control or space character", key)
			}
		}
	}
	return nil
}
