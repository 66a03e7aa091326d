// Package netcfg configures the host's networking around the TUN device: addresses,
// a routing table and policy rules that send chosen TCP traffic into the device,
// forwarding sysctls, and nftables NAT (masquerade of the stack's egress, DNAT of host
// ports to service addresses).
//
// It works as desired state applied by reconcile (docs/architecture.md, "Host state"): Up computes what
// the host should look like for a Spec, reads what is there, adds what is missing
// and only then deletes what is ours but no longer wanted. Every change is recorded
// in a journal, which Down replays backwards, so the host ends as it was; the
// journal can be kept in a file so that a later process (tcpcryptd down) undoes the
// changes of one that crashed. Cleanup removes leftovers even without a journal: all
// we create carries our marks — the routing table Table, routes and rules tagged
// with RouteProtocol, rule priorities from RulePriority, the nftables table
// NFTTableName — so it can be recognised.
//
// Routing design (docs/capture.md): a dedicated table
// holds the Include prefixes (routes into the device), Exclude prefixes (throw
// routes: lookup goes on to the main table) and host routes for service addresses;
// a rule at RulePriority+1 sends TCP packets that carry CaptureMark to that table.
// Only connections the host itself opens get that mark (an nftables rule on the
// output hook, for a new connection in its original direction, kept in conntrack),
// so replies of the host's own servers and forwarded packets are never captured.
// Rules at RulePriority make every packet that comes out of the device (iif) or
// carries a stack egress source look up the main table instead, so the stack's own
// connections are never routed back into the device.
//
// All host access goes through the Host interface; LinuxHost is netlink, nftables
// and /proc/sys (optionally inside a given network namespace), and tests use a fake
// that prints host state as text.
package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
)

// Marks that make our host objects recognisable (for adoption by a new process and
// for Cleanup). They are constants, not configuration, except the table and rule
// priority, whose defaults are here.
const (
	// DefaultTable is the routing table of the Include/Exclude routes.
	DefaultTable = 2300
	// DefaultRulePriority is the priority of the bypass rules; the table lookup rule
	// uses DefaultRulePriority+1. Both come before the main table's rule (32766).
	DefaultRulePriority = 10300
	// RulePrioritySpan is how many priorities from RulePriority we use.
	RulePrioritySpan = 2
	// RouteProtocol tags our routes and rules (rtm_protocol / FRA_PROTOCOL). 233 is
	// not assigned in iproute2's rt_protos.
	RouteProtocol = 233
	// NFTTableName is our nftables table (family inet).
	NFTTableName = "tcpcryptd"
	// CaptureMark is the firewall mark (in conntrack and on packets) of the
	// host's own TCP connections that go into the device; the policy rule
	// that selects Table matches it (docs/capture.md).
	CaptureMark = 0x7463a001
	// OwnMark is the mark (SO_MARK) the daemon puts on its own sockets
	// (backend dials): packets that carry it are never captured, whatever
	// the include list says.
	OwnMark = 0x7463a002

	// Linux's reserved routing tables and the rule priority range a table rule may use.
	tableDefault = 253
	tableMain    = 254
	tableLocal   = 255
	maxRulePrio  = 32765 - RulePrioritySpan
)

// Spec is the host networking wanted around one TUN device. The command builds it
// from the configuration file.
type Spec struct {
	// Device is the TUN interface, which must exist (tun/link creates it).
	Device string
	// MTU of Device; 0 leaves it as it is.
	MTU int
	// KernelV4 and KernelV6 are the host's addresses on Device with their prefixes;
	// the prefixes are the link to the stack. Either may be the zero Prefix.
	KernelV4, KernelV6 netip.Prefix
	// StackV4 and StackV6 are the stack's egress source addresses. Each must lie in
	// the matching Kernel prefix (so replies reach Device by the connected route)
	// and differ from the host's address there.
	StackV4, StackV6 netip.Addr
	// Table is the routing table for Include/Exclude (0: DefaultTable).
	Table int
	// RulePriority is the first of our rule priorities (0: DefaultRulePriority).
	RulePriority int
	// Include lists destination prefixes whose TCP traffic is routed into Device;
	// Exclude carves prefixes out of them.
	Include, Exclude []netip.Prefix
	// NAT masquerades the stack's egress sources on their way out of other interfaces.
	NAT bool
	// Services are host TCP ports DNAT'ed to service addresses the stack answers.
	Services []ServiceSpec
}

// ServiceSpec maps a TCP port on the host's own addresses to a stack service address.
type ServiceSpec struct {
	// Addr is the service's address and port (routed into Device).
	Addr netip.AddrPort
	// HostPort is the TCP port on the host's addresses; 0 means no DNAT (the address
	// is only routed into Device).
	HostPort uint16
	// Backend is where the daemon relays the service's connections, as
	// configured (host:port; empty if none). A backend on a host port that
	// may be one of the host's own non-loopback addresses keeps that port
	// out of the local DNAT (see Desired).
	Backend string
}

// SpecError reports an invalid Spec: which field and why.
type SpecError struct {
	Field  string
	Reason string
}

func (e *SpecError) Error() string { return fmt.Sprintf("netcfg: %s: %s", e.Field, e.Reason) }

func specErr(field, format string, args ...any) error {
	return &SpecError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// normalized validates s and fills in defaults.
func (s Spec) normalized() (Spec, error) {
	if s.Device == "" || len(s.Device) > 15 {
		return s, specErr("Device", "%q must be 1..15 characters", s.Device)
	}
	if s.Table == 0 {
		s.Table = DefaultTable
	}
	if s.Table < 1 || s.Table == tableDefault || s.Table == tableMain || s.Table == tableLocal || int64(s.Table) > 1<<32-1 {
		return s, specErr("Table", "%d is reserved or out of range (use 1..2^32-1 except 253, 254, 255)", s.Table)
	}
	if s.RulePriority == 0 {
		s.RulePriority = DefaultRulePriority
	}
	if s.RulePriority < 1 || s.RulePriority > maxRulePrio {
		return s, specErr("RulePriority", "%d out of range 1..%d (the main table's rule is 32766)", s.RulePriority, maxRulePrio)
	}
	if !s.KernelV4.IsValid() && !s.KernelV6.IsValid() {
		return s, specErr("KernelV4/KernelV6", "at least one host address on %s is needed", s.Device)
	}
	minMTU := 68
	if s.KernelV6.IsValid() {
		minMTU = 1280 // RFC 8200 §5
	}
	if s.MTU != 0 && (s.MTU < minMTU || s.MTU > 65535) {
		return s, specErr("MTU", "%d out of range %d..65535", s.MTU, minMTU)
	}
	if err := checkFamily("KernelV4", "StackV4", s.KernelV4, s.StackV4, false); err != nil {
		return s, err
	}
	if err := checkFamily("KernelV6", "StackV6", s.KernelV6, s.StackV6, true); err != nil {
		return s, err
	}
	for i, p := range s.Include {
		if err := s.checkPrefix(fmt.Sprintf("Include[%d]", i), p); err != nil {
			return s, err
		}
	}
	for i, p := range s.Exclude {
		if err := s.checkPrefix(fmt.Sprintf("Exclude[%d]", i), p); err != nil {
			return s, err
		}
	}
	if s.NAT && !s.StackV4.IsValid() && !s.StackV6.IsValid() {
		return s, specErr("NAT", "needs StackV4 or StackV6 (the addresses to masquerade)")
	}
	type famPort struct {
		v6   bool
		port uint16
	}
	ports := map[famPort]bool{} // a host port maps to one service per IP family
	for i, svc := range s.Services {
		f := fmt.Sprintf("Services[%d]", i)
		a := svc.Addr.Addr()
		if !svc.Addr.IsValid() || svc.Addr.Port() == 0 || a.Zone() != "" || a.Is4In6() {
			return s, specErr(f, "address %v needs an unzoned IP and a port", svc.Addr)
		}
		if a.Is4() && !s.KernelV4.IsValid() || a.Is6() && !s.KernelV6.IsValid() {
			return s, specErr(f, "%v: no host address of that family on %s", svc.Addr, s.Device)
		}
		if a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() {
			return s, specErr(f, "%v is not a unicast address", a)
		}
		if svc.HostPort != 0 {
			k := famPort{a.Is6(), svc.HostPort}
			if ports[k] {
				return s, specErr(f, "host port %d used twice for the same IP family", svc.HostPort)
			}
			ports[k] = true
		}
	}
	return s, nil
}

func checkFamily(kField, sField string, k netip.Prefix, stack netip.Addr, v6 bool) error {
	if k.IsValid() {
		if k.Addr().Is6() != v6 || k.Addr().Is4In6() || k.Addr().Zone() != "" {
			return specErr(kField, "%v is not an IPv%s prefix", k, map[bool]string{false: "4", true: "6"}[v6])
		}
		if k.Bits() == k.Addr().BitLen() {
			return specErr(kField, "%v leaves no room for the stack's address (use /31 or shorter, /127 for IPv6)", k)
		}
	}
	if !stack.IsValid() {
		return nil
	}
	switch {
	case !k.IsValid():
		return specErr(sField, "%v needs %s", stack, kField)
	case stack.Is6() != v6 || stack.Zone() != "":
		return specErr(sField, "%v is not an unzoned IPv%s address", stack, map[bool]string{false: "4", true: "6"}[v6])
	case !k.Contains(stack) || stack == k.Addr():
		return specErr(sField, "%v must lie in %v and differ from the host's address, so replies reach the device", stack, k)
	case stack == k.Masked().Addr() && k.Bits() < k.Addr().BitLen()-1: // RFC 3021 /31s have no network address
		return specErr(sField, "%v is the network address of %v", stack, k)
	}
	return nil
}

func (s Spec) checkPrefix(field string, p netip.Prefix) error {
	switch {
	case !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6():
		return specErr(field, "%v is not a valid prefix", p)
	case p != p.Masked():
		return specErr(field, "%v has host bits set (did you mean %v?)", p, p.Masked())
	case p.Addr().Is4() && !s.KernelV4.IsValid(), p.Addr().Is6() && !s.KernelV6.IsValid():
		return specErr(field, "%v: no host address of that family on %s", p, s.Device)
	}
	return nil
}

// ErrNotExist is returned by a Host for an object that is not there; undo treats it
// as done.
var ErrNotExist = errors.New("does not exist")
