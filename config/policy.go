package config

import "net/netip"

// Captured reports whether outbound connections to addr are routed through
// the device: addr is in an include prefix and in no exclude prefix.
func (o *Outbound) Captured(addr netip.Addr) bool {
	addr = addr.Unmap()
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
