package stack

import (
	"net/netip"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// Rule sets the ENO mode for destinations inside Prefix, on Port (0 = any
// port).
type Rule struct {
	Prefix netip.Prefix
	Port   uint16
	Mode   eno.Mode
}

// Policy maps a connection's destination (address and port) to an ENO mode:
// eno.ModeOff (plain TCP, no ENO option at all), eno.ModeOpportunistic
// (encrypt when the peer agrees, else plain) or eno.ModeRequired (refuse the
// connection unless it is encrypted). The zero Policy and a nil *Policy
// mean opportunistic for everything.
//
// The destination is the address and port the connection's SYN was sent
// to: the remote side for Dial, our own listening address for Listen, the
// original destination for forwarded connections.
//
// Decision: a listener's policy is keyed by our own (destination) address
// and port, not by the client's address, so one rule set means the same
// thing for the forwarder, dialers and services ("traffic to X:443 must be
// encrypted"). A caller wanting per-client rules gives each listener its
// own Policy.
type Policy struct {
	Default eno.Mode
	Rules   []Rule
}

// ModeFor returns the mode of the most specific matching rule: the longest
// matching prefix wins; among rules with the same prefix length a rule
// naming the port beats a rule for any port. With no match it returns
// Default. IPv4-mapped IPv6 addresses match IPv4 prefixes.
func (p *Policy) ModeFor(addr netip.Addr, port uint16) eno.Mode {
	if p == nil {
		return eno.ModeOpportunistic
	}
	addr = addr.Unmap()
	best, bestBits, bestPort := p.Default, -1, false
	for _, r := range p.Rules {
		pfx := r.Prefix
		if !pfx.IsValid() {
			continue
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), max(pfx.Bits()-96, 0))
		}
		if !pfx.Contains(addr) || (r.Port != 0 && r.Port != port) {
			continue
		}
		bits, hasPort := pfx.Bits(), r.Port != 0
		if bits > bestBits || (bits == bestBits && hasPort && !bestPort) {
			best, bestBits, bestPort = r.Mode, bits, hasPort
		}
	}
	return best
}
