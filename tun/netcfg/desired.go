package netcfg

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Sysctl keys we manage.
const (
	sysctlForward4 = "net/ipv4/ip_forward"
	sysctlForward6 = "net/ipv6/conf/all/forwarding"
)

func acceptRAKey(ifname string) string { return "net/ipv6/conf/" + ifname + "/accept_ra" }

func srcValidMarkKey(ifname string) string { return "net/ipv4/conf/" + ifname + "/src_valid_mark" }

// State is host state as netcfg wants it for a Spec (Desired) — the objects it owns,
// nothing else of the host.
type State struct {
	Link    Link
	Addrs   []Addr
	Routes  []Route
	Rules   []Rule
	NAT     []NATRule
	Sysctls []Sysctl
}

// Facts are what the wanted state depends on besides the Spec.
type Facts struct {
	// AcceptRA maps interface names to their current net/ipv6/conf/IF/accept_ra.
	AcceptRA map[string]string
	// Forward4Before and Forward6Before are the forwarding settings before we
	// touched them (the journal's record, else the host's current value).
	Forward4Before, Forward6Before string
	// ChangedAcceptRA lists interfaces whose accept_ra we already changed (journal).
	ChangedAcceptRA map[string]bool
}

// Desired computes the state for a normalized spec.
func Desired(s Spec, f Facts) State {
	st := State{Link: Link{Name: s.Device, Up: true, MTU: s.MTU}}
	for _, p := range []netip.Prefix{s.KernelV4, s.KernelV6} {
		if p.IsValid() {
			st.Addrs = append(st.Addrs, Addr{Dev: s.Device, Prefix: p})
		}
	}

	// The table: Include into the device, Exclude thrown back to the next rule,
	// service addresses outside the device's prefixes into the device.
	route := func(dst netip.Prefix, throw bool) Route {
		r := Route{Table: s.Table, Dst: dst, Throw: throw, Proto: RouteProtocol}
		if !throw {
			r.Dev = s.Device
		}
		return r
	}
	for _, p := range s.Include {
		st.Routes = append(st.Routes, route(p, false))
	}
	for _, p := range s.Exclude {
		st.Routes = append(st.Routes, route(p, true))
	}
	for _, svc := range s.Services {
		a := svc.Addr.Addr()
		if !s.KernelV4.Contains(a) && !s.KernelV6.Contains(a) {
			st.Routes = append(st.Routes, route(netip.PrefixFrom(a, a.BitLen()), false))
		}
	}
	st.Routes = dedup(st.Routes, Route.key)

	// Rules, per family that has routes in the table.
	for _, v6 := range []bool{false, true} {
		if !slices.ContainsFunc(st.Routes, func(r Route) bool { return r.Dst.Addr().Is6() == v6 }) {
			continue
		}
		stack := s.StackV4
		if v6 {
			stack = s.StackV6
		}
		if stack.IsValid() {
			st.Rules = append(st.Rules, Rule{Priority: s.RulePriority, V6: v6, From: netip.PrefixFrom(stack, stack.BitLen()),
				Table: tableMain, Proto: RouteProtocol})
		}
		st.Rules = append(st.Rules,
			Rule{Priority: s.RulePriority, V6: v6, IifName: s.Device, Table: tableMain, Proto: RouteProtocol},
			Rule{Priority: s.RulePriority + 1, V6: v6, IPProto: ipProtoTCP, Mark: CaptureMark, Table: s.Table, Proto: RouteProtocol})
	}

	// Service addresses outside the device's prefixes: every TCP packet to
	// one goes into the device, marked or not. They are the stack's own
	// addresses, so nothing but the device's flows goes there, and the
	// host's own connections to them must find their route before any
	// packet (and mark) exists: connect() looks the route up first.
	for _, r := range st.Routes {
		if !r.Throw && !slices.Contains(s.Include, r.Dst) {
			st.Rules = append(st.Rules, Rule{Priority: s.RulePriority + 1, V6: r.Dst.Addr().Is6(), To: r.Dst,
				IPProto: ipProtoTCP, Table: s.Table, Proto: RouteProtocol})
		}
	}

	// Capture: the host's own new connections to included destinations get
	// CaptureMark (docs/capture.md).
	exclude := append(slices.Clone(s.Exclude), AutoExclude(s.KernelV4, s.KernelV6)...)
	captured := false
	for _, v6 := range []bool{false, true} {
		for _, r := range captureRanges(s.Include, exclude, v6) {
			st.NAT = append(st.NAT, NATRule{Kind: NATCapture, Lo: r.Lo, Hi: r.Hi, Mark: CaptureMark, Own: OwnMark})
			captured = true
		}
	}
	if captured {
		st.NAT = append(st.NAT, NATRule{Kind: NATCaptureRestore, Mark: CaptureMark},
			NATRule{Kind: NATCaptureRestoreIn, Mark: CaptureMark, Dev: s.Device})
	}

	if s.NAT {
		for _, a := range []netip.Addr{s.StackV4, s.StackV6} {
			if a.IsValid() {
				st.NAT = append(st.NAT, NATRule{Kind: NATMasquerade, Src: a, Dev: s.Device})
			}
		}
	}
	for _, svc := range s.Services {
		if svc.HostPort != 0 {
			st.NAT = append(st.NAT, NATRule{Kind: NATDNAT, Port: svc.HostPort, To: svc.Addr, Dev: s.Device})
		}
	}
	// The host's own connections to a host port go to the service as well,
	// unless a backend listens on that port at an address that may be the
	// host's own: the daemon's dial to it would be sent back to the service,
	// and from there to the backend dial again.
	for _, svc := range s.Services {
		if svc.HostPort != 0 && !BackendMayUse(s.Services, svc.HostPort) {
			st.NAT = append(st.NAT, NATRule{Kind: NATDNATLocal, Port: svc.HostPort, To: svc.Addr})
		}
	}

	// Forwarding: the stack's egress and DNAT'ed services cross Device and another
	// interface. IPv6 forwarding makes Linux ignore router advertisements on
	// interfaces with accept_ra=1 (Documentation/networking/ip-sysctl.rst); 2 accepts
	// them regardless. We switch such interfaces to 2 when it is our doing that
	// forwarding goes on, and put them back on Down.
	//
	// No open relay: where forwarding was off before us, the host forwards
	// only packets into or out of Device (the stack's egress, DNAT'ed
	// services, and their replies); a host that was a router already keeps
	// forwarding as it did.
	if s.KernelV4.IsValid() {
		st.Sysctls = append(st.Sysctls, Sysctl{sysctlForward4, "1"})
		if captured {
			// Reverse-path filtering of the stack's replies uses the mark
			// capture-restore-in puts on them (IPv6 has no rp_filter).
			st.Sysctls = append(st.Sysctls, Sysctl{srcValidMarkKey(s.Device), "1"})
		}
		if f.Forward4Before != "1" {
			st.NAT = append(st.NAT, NATRule{Kind: NATForwardDrop, Dev: s.Device})
		}
	}
	if s.KernelV6.IsValid() {
		st.Sysctls = append(st.Sysctls, Sysctl{sysctlForward6, "1"})
		if f.Forward6Before != "1" {
			st.NAT = append(st.NAT, NATRule{Kind: NATForwardDrop, Dev: s.Device, IPv6: true})
		}
		names := make([]string, 0, len(f.AcceptRA))
		for n := range f.AcceptRA {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if n == "lo" || n == s.Device {
				continue
			}
			if f.ChangedAcceptRA[n] || (f.AcceptRA[n] == "1" && f.Forward6Before != "1") {
				st.Sysctls = append(st.Sysctls, Sysctl{acceptRAKey(n), "2"})
			}
		}
	}
	return st
}

// BackendMayUse reports whether a service's backend has port and an
// address that may be local and is not loopback: a host name other than
// localhost, or an address literal outside 127.0.0.0/8 and ::1. A backend
// that does not parse counts as such, to be safe. Desired then leaves the
// host's own connections to that port alone.
func BackendMayUse(svcs []ServiceSpec, port uint16) bool {
	for _, svc := range svcs {
		if svc.Backend == "" {
			continue
		}
		host, p, err := net.SplitHostPort(svc.Backend)
		if err != nil {
			return true
		}
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && n != uint64(port) {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() || strings.EqualFold(host, "localhost") {
			continue
		}
		return true
	}
	return false
}

func dedup[T any](xs []T, key func(T) string) []T {
	seen := map[string]bool{}
	out := xs[:0]
	for _, x := range xs {
		if k := key(x); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}
