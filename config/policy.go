package config

import "net/netip"

// neverCaptured are destinations the host's connections to are never
// captured, whatever include says (the same list as tun/netcfg's
// automatic exclusions; a test in cmd/tcpcryptd checks they agree).
var neverCaptured = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// NeverCaptured returns the prefixes excluded automatically for a device
// with these prefixes (either may be zero): loopback, unspecified,
// link-local, multicast, broadcast, IPv4-mapped, and the device's own.
func (o *Outbound) NeverCaptured(kernelV4, kernelV6 netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), neverCaptured...)
	for _, p := range []netip.Prefix{kernelV4, kernelV6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Captured reports whether outbound connections to addr are routed through
// the device: addr is in an include prefix and in no exclude prefix, and
// not one of the automatic exclusions (NeverCaptured without the device's
// prefixes; Config.Captured adds those).
func (o *Outbound) Captured(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range neverCaptured {
		if p.Contains(addr) {
			return false
		}
	}
	in := false
	for _, p := range o.Include {
		if p.Contains(addr) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range o.Exclude {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// Captured reports whether the host's own connections to addr are captured
// into the device with this configuration (Outbound.Captured, and not in
// the device's own prefixes).
func (c *Config) Captured(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range []netip.Prefix{c.Device.KernelIPv4, c.Device.KernelIPv6} {
		if p.IsValid() && p.Masked().Contains(addr) {
			return false
		}
	}
	return c.Outbound.Captured(addr)
}

// PolicyFor returns the mode for a destination: the rule with the longest
// matching prefix wins, and among equally long prefixes a rule that names
// the port beats one that covers every port. No match: o.Policy.
func (o *Outbound) PolicyFor(addr netip.Addr, port uint16) Mode {
	addr = addr.Unmap()
	best, bestBits, bestPorts := o.Policy, -1, false
	for _, r := range o.Policies {
		if !r.Prefix.Contains(addr) {
			continue
		}
		named := len(r.Ports) > 0
		if named && !containsPort(r.Ports, port) {
			continue
		}
		bits := r.Prefix.Bits()
		if bits > bestBits || (bits == bestBits && named && !bestPorts) {
			best, bestBits, bestPorts = r.Mode, bits, named
		}
	}
	return best
}

func containsPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}
