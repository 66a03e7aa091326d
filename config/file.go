package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// file mirrors the TOML layout. Values stay strings until validate turns
// them into typed fields, so every message can quote what the user wrote.
type file struct {
	Device struct {
		Name         string `toml:"name"`
		MTU          int    `toml:"mtu"`
		KernelIPv4   string `toml:"kernel_ipv4"`
		StackIPv4    string `toml:"stack_ipv4"`
		KernelIPv6   string `toml:"kernel_ipv6"`
		StackIPv6    string `toml:"stack_ipv6"`
		RouteTable   int    `toml:"route_table"`
		RulePriority int    `toml:"rule_priority"`
	} `toml:"device"`
	Outbound struct {
		Include []string `toml:"include"`
		Exclude []string `toml:"exclude"`
		NAT     bool     `toml:"nat"`
		Policy  string   `toml:"policy"`
		Rules   []struct {
			Prefix string `toml:"prefix"`
			Ports  []int  `toml:"ports"`
			Mode   string `toml:"mode"`
		} `toml:"rule"`
	} `toml:"outbound"`
	Service []struct {
		Name          string `toml:"name"`
		Listen        string `toml:"listen"`
		Backend       string `toml:"backend"`
		ProxyProtocol bool   `toml:"proxy_protocol"`
		Policy        string `toml:"policy"`
		HostPort      int    `toml:"host_port"`
	} `toml:"service"`
	Crypto struct {
		TEPs                 []string `toml:"teps"`
		AEADs                []string `toml:"aeads"`
		Resumption           bool     `toml:"resumption"`
		ResumptionCacheSize  int      `toml:"resumption_cache_size"`
		ResumptionLifetime   string   `toml:"resumption_lifetime"`
		EphemeralKeyLifetime string   `toml:"ephemeral_key_lifetime"`
		RekeyAfterBytes      int64    `toml:"rekey_after_bytes"`
	} `toml:"crypto"`
	Control struct {
		Socket string `toml:"socket"`
		Mode   string `toml:"mode"`
		Group  string `toml:"group"`
	} `toml:"control"`
	Metrics struct {
		Listen string `toml:"listen"`
	} `toml:"metrics"`
	Log struct {
		Level  string `toml:"level"`
		Format string `toml:"format"`
		KeyLog string `toml:"key_log"`
	} `toml:"log"`
	Runtime struct {
		CPUs int `toml:"cpus"`
	} `toml:"runtime"`
	TCP struct {
		SACKMinRTT        string `toml:"sack_min_rtt"`
		MinRTO            string `toml:"min_rto"`
		Keepalive         bool   `toml:"keepalive"`
		KeepaliveIdle     string `toml:"keepalive_idle"`
		KeepaliveInterval string `toml:"keepalive_interval"`
		KeepaliveCount    int    `toml:"keepalive_count"`
	} `toml:"tcp"`
	Limits fileLimits `toml:"limits"`
}

// fileLimits is the [limits] section.
type fileLimits struct {
	ENOFlows                int    `toml:"eno_flows"`
	ENOFlowsOutboundReserve int    `toml:"eno_flows_outbound_reserve"`
	HalfOpenPerSource       int    `toml:"half_open_per_source"`
	HalfOpenTimeout         string `toml:"half_open_timeout"`
	// Resumption cache.
	ResumptionLookAhead   int `toml:"resumption_lookahead"`
	ResumptionPrefixShare int `toml:"resumption_prefix_share"`
	// Passive handshakes (services).
	HandshakesPerSource      int    `toml:"handshakes_per_source"`
	Init1Timeout             string `toml:"init1_timeout"`
	HandshakeBudgetPerSource int    `toml:"handshake_budget_per_source"`
	RelaysOutbound           int    `toml:"relays_outbound"`
	RelaysInbound            int    `toml:"relays_inbound"`
	RelaysPerSource          int    `toml:"relays_per_source"`
}

// ifname matches what Linux accepts as an interface name (IFNAMSIZ-1).
var ifname = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// validator collects the first error with its key.
type validator struct {
	name  string
	flags map[string]string // key -> flag that overrode it
	err   *Error
}

func (v *validator) fail(key, format string, args ...any) {
	if v.err == nil {
		v.err = &Error{File: v.name, Key: key, Flag: v.flags[key], Msg: fmt.Sprintf(format, args...)}
	}
}

func (v *validator) prefix(key, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		v.fail(key, "%q is not an address prefix; write it like \"10.0.0.0/8\" or \"fd00::/8\"", s)
		return netip.Prefix{}
	}
	if p != p.Masked() {
		v.fail(key, "%q has host bits set; did you mean %q?", s, p.Masked().String())
	}
	return p
}

func (v *validator) mode(key, s string) Mode {
	switch m := Mode(s); m {
	case ModeOff, ModeOpportunistic, ModeRequired:
		return m
	}
	v.fail(key, "%q is not a policy; use \"off\", \"opportunistic\" or \"required\"", s)
	return ""
}

func (v *validator) ports(key string, in []int) []uint16 {
	out := make([]uint16, 0, len(in))
	for i, p := range in {
		if p < 1 || p > 65535 {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "port %d is out of range; use 1-65535", p)
			continue
		}
		out = append(out, uint16(p))
	}
	return out
}

func (v *validator) duration(key, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		v.fail(key, "%q is not a duration; write it like \"90s\", \"10m\" or \"24h\"", s)
	}
	return d
}

func (v *validator) names(key string, in, known []string) []string {
	if len(in) == 0 {
		v.fail(key, "must list at least one of %s", strings.Join(known, ", "))
	}
	seen := map[string]bool{}
	for i, s := range in {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case !slices.Contains(known, s):
			v.fail(k, "unknown name %q; choose from %s", s, strings.Join(known, ", "))
		case seen[s]:
			v.fail(k, "%q is listed twice; list each once, most preferred first", s)
		}
		seen[s] = true
	}
	return slices.Clone(in)
}

func (f *file) validate(name string, flags map[string]string) (*Config, error) {
	v := &validator{name: name, flags: flags}
	c := &Config{}

	d := &f.Device
	if !ifname.MatchString(d.Name) || d.Name == "." || d.Name == ".." {
		v.fail("device.name", "%q is not a valid interface name; use up to 15 letters, digits, '_', '-' or '.'", d.Name)
	}
	if d.MTU < 1280 || d.MTU > 65535 {
		// 1280 is the IPv6 minimum link MTU (RFC 8200 §5).
		v.fail("device.mtu", "%d is out of range; use 1280-65535 (1280 is the IPv6 minimum)", d.MTU)
	}
	c.Device = Device{Name: d.Name, MTU: d.MTU, RouteTable: d.RouteTable, RulePriority: d.RulePriority}
	c.Device.KernelIPv4 = v.hostPrefix("device.kernel_ipv4", d.KernelIPv4, true)
	c.Device.KernelIPv6 = v.hostPrefix("device.kernel_ipv6", d.KernelIPv6, false)
	c.Device.StackIPv4 = v.addrIn("device.stack_ipv4", d.StackIPv4, c.Device.KernelIPv4)
	c.Device.StackIPv6 = v.addrIn("device.stack_ipv6", d.StackIPv6, c.Device.KernelIPv6)
	// Tables 0 and 253-255 are the kernel's (unspec, default, main, local).
	if d.RouteTable < 1 || d.RouteTable > 0xfffffff0 || (d.RouteTable >= 253 && d.RouteTable <= 255) {
		v.fail("device.route_table", "%d is reserved or out of range; pick an unused table such as 7701", d.RouteTable)
	}
	// Priority 0 is the local-table rule; 32766/32767 are main and default.
	// The daemon uses rule_priority and the next priorities (maxRulePriority
	// leaves room for them), all before the main table's rule.
	if d.RulePriority < 1 || d.RulePriority > maxRulePriority {
		v.fail("device.rule_priority", "%d must be 1-%d so our rules run before the main table", d.RulePriority, maxRulePriority)
	}

	o := &f.Outbound
	for i, s := range o.Include {
		c.Outbound.Include = append(c.Outbound.Include, v.prefix(fmt.Sprintf("outbound.include[%d]", i), s))
	}
	for i, s := range o.Exclude {
		c.Outbound.Exclude = append(c.Outbound.Exclude, v.prefix(fmt.Sprintf("outbound.exclude[%d]", i), s))
	}
	// Include may be everything ("0.0.0.0/0", "::/0"): loopback, link-local,
	// multicast and the device's own prefixes are never captured, and
	// exclude takes its prefixes back (docs/capture.md). An include prefix
	// that lies wholly inside one of those captures nothing: a mistake.
	never := append(slices.Clone(c.Outbound.Exclude), c.Outbound.NeverCaptured(c.Device.KernelIPv4, c.Device.KernelIPv6)...)
	for i, p := range c.Outbound.Include {
		for _, q := range never {
			if p.IsValid() && q.IsValid() && p.Addr().Is6() == q.Addr().Is6() && p.Bits() >= q.Bits() && q.Contains(p.Addr()) {
				v.fail(fmt.Sprintf("outbound.include[%d]", i), "%s captures nothing: it lies inside %s, which is %s", p, q, neverWhy(q, c))
				break
			}
		}
	}
	c.Outbound.NAT = o.NAT
	c.Outbound.Policy = v.mode("outbound.policy", o.Policy)
	for i, r := range o.Rules {
		key := fmt.Sprintf("outbound.rule[%d]", i)
		c.Outbound.Policies = append(c.Outbound.Policies, PolicyRule{
			Prefix: v.prefix(key+".prefix", r.Prefix),
			Ports:  v.ports(key+".ports", r.Ports),
			Mode:   v.mode(key+".mode", r.Mode),
		})
	}

	for i, s := range f.Service {
		key := serviceKey(i, s.Name)
		svc := Service{Name: s.Name, Backend: s.Backend, ProxyProtocol: s.ProxyProtocol}
		ap, err := netip.ParseAddrPort(s.Listen)
		la := ap.Addr()
		switch {
		case err != nil || ap.Port() == 0:
			v.fail(key+".listen", "%q is not address:port; write it like \"10.254.78.1:443\" or \"[fd00::1]:443\"", s.Listen)
		case la.Zone() != "" || la.Is4In6():
			v.fail(key+".listen", "%q: write a plain IPv4 or IPv6 address, without zone or IPv4-mapped form", s.Listen)
		case la.IsLoopback() || la.IsMulticast() || la.IsUnspecified():
			v.fail(key+".listen", "%q is not a unicast address the device can be routed to; use one such as \"10.254.78.1:443\"", s.Listen)
		}
		svc.Listen = ap
		if _, port, err := net.SplitHostPort(s.Backend); err != nil || port == "" || port == "0" {
			v.fail(key+".backend", "%q is not host:port; write it like \"127.0.0.1:8080\"", s.Backend)
		}
		svc.Policy = ModeOpportunistic
		if s.Policy != "" {
			svc.Policy = v.mode(key+".policy", s.Policy)
		}
		if s.HostPort < 0 || s.HostPort > 65535 {
			v.fail(key+".host_port", "%d is out of range; use 0 (off) or 1-65535", s.HostPort)
		}
		svc.HostPort = uint16(s.HostPort)
		for _, prev := range c.Services {
			if prev.Listen == svc.Listen && svc.Listen.IsValid() {
				v.fail(key+".listen", "%s is already used by another service; give each service its own address:port", svc.Listen)
			}
			// A host port is forwarded to one service per IP family.
			if svc.HostPort != 0 && prev.HostPort == svc.HostPort && prev.Listen.Addr().Is6() == svc.Listen.Addr().Is6() {
				v.fail(key+".host_port", "%d is already forwarded to another service of the same IP family; pick another port", svc.HostPort)
			}
		}
		c.Services = append(c.Services, svc)
	}

	cr := &f.Crypto
	c.Crypto.TEPs = v.names("crypto.teps", cr.TEPs, KnownTEPs)
	c.Crypto.AEADs = v.names("crypto.aeads", cr.AEADs, KnownAEADs)
	c.Crypto.Resumption = cr.Resumption
	if cr.ResumptionCacheSize < 0 || cr.ResumptionCacheSize > 1<<22 {
		v.fail("crypto.resumption_cache_size", "%d is out of range; use 0-4194304 entries", cr.ResumptionCacheSize)
	}
	c.Crypto.ResumptionCacheSize = cr.ResumptionCacheSize
	c.Crypto.ResumptionLifetime = v.duration("crypto.resumption_lifetime", cr.ResumptionLifetime)
	c.Crypto.EphemeralKeyLifetime = v.duration("crypto.ephemeral_key_lifetime", cr.EphemeralKeyLifetime)
	if c.Crypto.EphemeralKeyLifetime > time.Hour {
		// RFC 8548 §3.3/§8: a reused key pair's lifetime MUST be limited
		// as far as practical.
		v.fail("crypto.ephemeral_key_lifetime", "%s is too long for a reused key pair; use at most 1h (0s = fresh per connection)", c.Crypto.EphemeralKeyLifetime)
	}
	if cr.RekeyAfterBytes < 0 {
		v.fail("crypto.rekey_after_bytes", "%d is negative; use 0 (default) or a byte count", cr.RekeyAfterBytes)
	}
	c.Crypto.RekeyAfterBytes = uint64(max(cr.RekeyAfterBytes, 0))

	ct := &f.Control
	if ct.Socket == "" || !strings.HasPrefix(ct.Socket, "/") {
		v.fail("control.socket", "%q must be an absolute path such as /run/tcpcryptd/control.sock", ct.Socket)
	}
	m, err := strconv.ParseUint(ct.Mode, 8, 32)
	switch {
	case err != nil || m > 0o777:
		v.fail("control.mode", "%q is not an octal file mode; write it like \"0600\" or \"0660\"", ct.Mode)
	case m&0o007 != 0:
		v.fail("control.mode", "%q lets every local user control the daemon; use \"0600\" or \"0660\" with control.group", ct.Mode)
	}
	c.Control = Control{Socket: ct.Socket, Mode: os.FileMode(m), Group: ct.Group}

	if f.Metrics.Listen != "" {
		if _, err := netip.ParseAddrPort(f.Metrics.Listen); err != nil {
			v.fail("metrics.listen", "%q is not address:port; write it like \"127.0.0.1:9477\" or leave it empty", f.Metrics.Listen)
		}
	}
	c.Metrics.Listen = f.Metrics.Listen

	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", "%q is not a level; use debug, info, warn or error", f.Log.Level)
	}
	switch f.Log.Format {
	case "text", "json":
	default:
		v.fail("log.format", "%q is not a format; use text or json", f.Log.Format)
	}
	if f.Log.KeyLog == "" && v.flags["log.key_log"] != "" {
		// In the file "" means no key log; a flag given with no file name
		// is a slip, not a request for none.
		v.fail("log.key_log", "needs a file name")
	}
	c.Log = Log{Level: f.Log.Level, Format: f.Log.Format, KeyLog: f.Log.KeyLog}

	if f.Runtime.CPUs < 0 || f.Runtime.CPUs > maxCPUs {
		v.fail("runtime.cpus", "%d is out of range; use 1-%d, or 0 for every CPU", f.Runtime.CPUs, maxCPUs)
	}
	c.Runtime.CPUs = f.Runtime.CPUs

	c.TCP.SACKMinRTT = v.duration("tcp.sack_min_rtt", f.TCP.SACKMinRTT)
	if c.TCP.SACKMinRTT > maxSACKMinRTT {
		v.fail("tcp.sack_min_rtt", "%s is too long; use at most %s (0s = SACK with every peer)", c.TCP.SACKMinRTT, maxSACKMinRTT)
	}
	c.TCP.MinRTO = v.durationIn("tcp.min_rto", f.TCP.MinRTO, minMinRTO, maxMinRTO)

	lim := &f.Limits
	if lim.ResumptionLookAhead < 0 || lim.ResumptionLookAhead > maxResumptionLookAhead {
		v.fail("limits.resumption_lookahead", "%d is out of range; use 0-%d secrets", lim.ResumptionLookAhead, maxResumptionLookAhead)
	}
	c.Limits.ResumptionLookAhead = lim.ResumptionLookAhead
	if lim.ResumptionPrefixShare < 1 || lim.ResumptionPrefixShare > 1<<22 {
		v.fail("limits.resumption_prefix_share", "%d is out of range; use 1-4194304 chains", lim.ResumptionPrefixShare)
	}
	c.Limits.ResumptionPrefixShare = lim.ResumptionPrefixShare
	// Passive handshakes.
	if lim.HandshakesPerSource < 1 || lim.HandshakesPerSource > maxHandshakesPerSource {
		v.fail("limits.handshakes_per_source", "%d is out of range; use 1-%d", lim.HandshakesPerSource, maxHandshakesPerSource)
	}
	c.Limits.HandshakesPerSource = lim.HandshakesPerSource
	c.Limits.Init1Timeout = v.duration("limits.init1_timeout", lim.Init1Timeout)
	if c.Limits.Init1Timeout < minInit1Timeout || c.Limits.Init1Timeout > maxInit1Timeout {
		v.fail("limits.init1_timeout", "%s is out of range; use %s-%s (a client sends Init1 one round trip after connecting)",
			c.Limits.Init1Timeout, minInit1Timeout, maxInit1Timeout)
	}
	if lim.HandshakeBudgetPerSource < 1 || lim.HandshakeBudgetPerSource > maxHandshakeBudget {
		v.fail("limits.handshake_budget_per_source", "%d is out of range; use 1-%d X25519 handshakes per second",
			lim.HandshakeBudgetPerSource, maxHandshakeBudget)
	}
	c.Limits.HandshakeBudgetPerSource = lim.HandshakeBudgetPerSource

	t := &f.TCP
	c.TCP.Keepalive = t.Keepalive
	c.TCP.KeepaliveIdle = v.durationIn("tcp.keepalive_idle", t.KeepaliveIdle, time.Second, 2*time.Hour)
	c.TCP.KeepaliveInterval = v.durationIn("tcp.keepalive_interval", t.KeepaliveInterval, time.Second, 10*time.Minute)
	if t.KeepaliveCount < 1 || t.KeepaliveCount > 100 {
		v.fail("tcp.keepalive_count", "%d is out of range; use 1-100 unanswered probes", t.KeepaliveCount)
	}
	c.TCP.KeepaliveCount = t.KeepaliveCount

	c.Limits.RelaysOutbound, c.Limits.RelaysInbound, c.Limits.RelaysPerSource = lim.RelaysOutbound, lim.RelaysInbound, lim.RelaysPerSource
	for _, k := range []struct {
		key string
		n   int
	}{{"limits.relays_outbound", lim.RelaysOutbound}, {"limits.relays_inbound", lim.RelaysInbound}, {"limits.relays_per_source", lim.RelaysPerSource}} {
		if k.n < 1 || k.n > maxRelays {
			v.fail(k.key, "%d is out of range; use 1-%d connections", k.n, maxRelays)
		}
	}

	// A backend routed into the device is a loop (see RoutedIntoDevice);
	// checked once every address above is known.
	for i, s := range f.Service {
		if v.err != nil {
			break
		}
		host, _, err := net.SplitHostPort(s.Backend)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			continue // a name: the daemon checks what it resolves to before each dial
		}
		if why := c.RoutedIntoDevice(a.WithZone("")); why != "" {
			fix := "point backend at the server's own address, such as 127.0.0.1:8080"
			v.fail(serviceKey(i, s.Name)+".backend", "%q is routed into the device (%s): the daemon's dial to it would come back to the daemon and chain connections until file descriptors run out; %s", s.Backend, why, fix)
		}
	}
	v.limits(&f.Limits, &c.Limits)

	if v.err != nil {
		return nil, v.err
	}
	return c, nil
}

// maxRulePriority is the highest device.rule_priority: the daemon installs
// rules at it and the next priority (tun/netcfg's RulePrioritySpan), and the
// main table's rule is at 32766.
const maxRulePriority = 32765 - 2

// maxRelays bounds the limits.relays_* keys (a relay holds two TCP
// endpoints and, inbound, a file descriptor).
const maxRelays = 1 << 20

// serviceKey names service i in messages: by name when it has one.
func serviceKey(i int, name string) string {
	if name != "" {
		return fmt.Sprintf("service %q", name)
	}
	return fmt.Sprintf("service[%d]", i)
}

// RoutedIntoDevice says whether the host routes connections to a into the
// device, and by which key ("" if not): a service's listen address (any
// port), the stack's address, or the rest of the device's prefix (except
// the kernel's own address there). Loopback addresses never are: the
// kernel delivers them locally before any route applies. A service backend
// there would be dialed back into the daemon. outbound.include does not
// count: it captures the host's connections by a firewall mark, and the
// daemon's own sockets carry another mark that is never captured
// (docs/capture.md).
func (c *Config) RoutedIntoDevice(a netip.Addr) string {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsUnspecified() {
		return ""
	}
	for i, s := range c.Services {
		if s.Listen.Addr().Unmap() == a {
			return serviceKey(i, s.Name) + ".listen"
		}
	}
	d := c.Device
	switch a {
	case d.StackIPv4:
		return "device.stack_ipv4"
	case d.StackIPv6:
		return "device.stack_ipv6"
	}
	for _, k := range []struct {
		key string
		p   netip.Prefix
	}{{"device.kernel_ipv4", d.KernelIPv4}, {"device.kernel_ipv6", d.KernelIPv6}} {
		if k.p.IsValid() && a != k.p.Addr() && k.p.Masked().Contains(a) {
			return k.key
		}
	}
	return ""
}

// neverWhy says why a prefix of NeverCaptured (or exclude) is not captured.
func neverWhy(q netip.Prefix, c *Config) string {
	switch {
	case slices.Contains(c.Outbound.Exclude, q):
		return "in outbound.exclude"
	case q == c.Device.KernelIPv4.Masked() || q == c.Device.KernelIPv6.Masked():
		return "the device's own prefix"
	}
	return "never captured (loopback, link-local, multicast or unspecified)"
}

// durationIn parses a duration and checks it lies in [lo, hi].
func (v *validator) durationIn(key, s string, lo, hi time.Duration) time.Duration {
	d := v.duration(key, s)
	if v.err == nil && (d < lo || d > hi) {
		v.fail(key, "%s is out of range; use %s to %s", d, lo, hi)
	}
	return d
}

// limits validates the flow-table keys of [limits].
func (v *validator) limits(in *fileLimits, out *Limits) {
	if in.ENOFlows < minENOFlows || in.ENOFlows > maxENOFlows {
		v.fail("limits.eno_flows", "%d is out of range; use %d-%d connections", in.ENOFlows, minENOFlows, maxENOFlows)
	}
	if in.ENOFlowsOutboundReserve < 1 || in.ENOFlowsOutboundReserve > in.ENOFlows/2 {
		v.fail("limits.eno_flows_outbound_reserve", "%d is out of range; use 1 to half of limits.eno_flows (%d)", in.ENOFlowsOutboundReserve, in.ENOFlows/2)
	}
	if in.HalfOpenPerSource < 1 || in.HalfOpenPerSource > in.ENOFlows {
		v.fail("limits.half_open_per_source", "%d is out of range; use 1 to limits.eno_flows (%d)", in.HalfOpenPerSource, in.ENOFlows)
	}
	d := v.duration("limits.half_open_timeout", in.HalfOpenTimeout)
	if d < minHalfOpenTimeout || d > maxHalfOpenTimeout {
		v.fail("limits.half_open_timeout", "%q is out of range; use %s-%s (a SYN-ACK lost four times needs 15s)", in.HalfOpenTimeout, minHalfOpenTimeout, maxHalfOpenTimeout)
	}
	out.ENOFlows, out.ENOFlowsOutboundReserve = in.ENOFlows, in.ENOFlowsOutboundReserve
	out.HalfOpenPerSource, out.HalfOpenTimeout = in.HalfOpenPerSource, d
}

// hostPrefix parses an address with its prefix length, e.g. "10.0.0.1/24".
func (v *validator) hostPrefix(key, s string, want4 bool) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		v.fail(key, "%q is not address/length; write it like \"10.254.77.1/24\" or \"fd7c:e770::1/64\"", s)
		return netip.Prefix{}
	}
	if p.Addr().Is4() != want4 || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		fam := "IPv6"
		if want4 {
			fam = "IPv4"
		}
		v.fail(key, "%q is not an %s address", s, fam)
	}
	if p.Bits() == p.Addr().BitLen() {
		v.fail(key, "%q leaves no room for the stack's address; use a prefix such as /24 (or /64 for IPv6)", s)
	}
	return p
}

// addrIn parses the stack address, which must sit in the kernel prefix (so
// the kernel routes its return traffic into the device) and differ from the
// kernel's own address.
func (v *validator) addrIn(key, s string, in netip.Prefix) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		v.fail(key, "%q is not an IP address", s)
		return netip.Addr{}
	}
	if in.IsValid() && (!in.Contains(a) || a == in.Addr()) {
		v.fail(key, "%s must be inside %s and differ from the kernel's address %s", a, in.Masked(), in.Addr())
	}
	// RFC 3021: a /31 has no network address; longer prefixes do.
	if in.IsValid() && a == in.Masked().Addr() && in.Bits() < in.Addr().BitLen()-1 {
		v.fail(key, "%s is the network address of %s; pick another address inside it", a, in.Masked())
	}
	return a
}
