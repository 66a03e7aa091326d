package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// This file turns the configuration into the values the components take.
// Each function is pure, so the translation is tested without a host.

// tcpcryptConfig builds the tcpcrypt configuration from the crypto section.
// The file lists TEPs most preferred first; tcpcrypt.Config.TEPs is in
// increasing order of preference (the order of B's SYN option, RFC 8547
// §4.5), so the list is reversed. AEADs are most preferred first in both.
// keyLog is nil unless the operator asked for a key log. The resumption
// cache takes its bounds from the crypto section and from l.
func tcpcryptConfig(c config.Crypto, l config.Limits, keyLog io.Writer) (*tcpcrypt.Config, error) {
	tc := &tcpcrypt.Config{
		EphemeralLifetime: c.EphemeralKeyLifetime,
		RekeyAfter:        c.RekeyAfterBytes,
		KeyLog:            keyLog,
	}
	for _, name := range c.TEPs {
		id, ok := tepByName(name)
		if !ok {
			return nil, fmt.Errorf("crypto.teps: %q is not implemented", name)
		}
		tc.TEPs = append(tc.TEPs, id)
	}
	slices.Reverse(tc.TEPs)
	for _, name := range c.AEADs {
		id, ok := aeadByName(name)
		if !ok {
			return nil, fmt.Errorf("crypto.aeads: %q is not implemented", name)
		}
		tc.AEADs = append(tc.AEADs, id)
	}
	// Decision: resumption_cache_size = 0 with resumption on means no room
	// for any secret, so resumption is off (the daemon says so at start).
	if c.Resumption && c.ResumptionCacheSize > 0 {
		tc.Resumption = true
		lookAhead := l.ResumptionLookAhead
		if lookAhead == 0 {
			lookAhead = -1 // the package reads 0 as its default
		}
		tc.Cache = tcpcrypt.NewCache(tcpcrypt.CacheConfig{
			MaxEntries:  c.ResumptionCacheSize,
			Lifetime:    c.ResumptionLifetime,
			LookAhead:   lookAhead,
			PrefixShare: l.ResumptionPrefixShare,
		})
	}
	if err := tc.Check(); err != nil {
		return nil, fmt.Errorf("crypto: %w", err)
	}
	return tc, nil
}

func tepByName(name string) (kex.ID, bool) {
	for _, id := range kex.AllIDs() { // experimental ones too: configured means enabled
		if id.String() == name {
			return id, true
		}
	}
	return 0, false
}

func aeadByName(name string) (schedule.AEADID, bool) {
	for _, id := range schedule.AEADIDs() {
		if id.String() == name {
			return id, true
		}
	}
	return 0, false
}

// setLimits sets the stack's limits against hostile peers from the
// [limits] section: passive handshakes and the ENO flow table (the relay
// limits travel in Options.Relays, with keepalive: relayOptions).
func setLimits(o *stack.Options, l config.Limits) {
	o.HandshakesPerSource = l.HandshakesPerSource
	o.Init1Timeout = l.Init1Timeout
	o.HandshakeBudget = float64(l.HandshakeBudgetPerSource)
	o.MaxFlows = l.ENOFlows
	o.OutboundFlowReserve = l.ENOFlowsOutboundReserve
	o.HalfOpenPerSource = l.HalfOpenPerSource
	o.InboundHalfOpenTimeout = l.HalfOpenTimeout
}

// enoMode maps a configured policy to the ENO mode.
func enoMode(m config.Mode) eno.Mode {
	switch m {
	case config.ModeOff:
		return eno.ModeOff
	case config.ModeRequired:
		return eno.ModeRequired
	}
	return eno.ModeOpportunistic
}

// outboundPolicy translates [outbound] policy and rules into the stack's
// policy. A rule with several ports becomes one stack rule per port; the
// two use the same precedence (longest prefix, then a named port over any
// port), so stack.Policy.ModeFor agrees with config.Outbound.PolicyFor.
func outboundPolicy(o config.Outbound) *stack.Policy {
	p := &stack.Policy{Default: enoMode(o.Policy)}
	for _, r := range o.Policies {
		if len(r.Ports) == 0 {
			p.Rules = append(p.Rules, stack.Rule{Prefix: r.Prefix, Mode: enoMode(r.Mode)})
			continue
		}
		for _, port := range r.Ports {
			p.Rules = append(p.Rules, stack.Rule{Prefix: r.Prefix, Port: port, Mode: enoMode(r.Mode)})
		}
	}
	return p
}

// servicePolicy is the policy of one service's listener: its mode for
// every client.
func servicePolicy(s config.Service) *stack.Policy {
	return &stack.Policy{Default: enoMode(s.Policy)}
}

// netSpec is the host networking wanted for cfg.
func netSpec(cfg *config.Config) netcfg.Spec {
	d := cfg.Device
	s := netcfg.Spec{
		Device:       d.Name,
		MTU:          d.MTU,
		KernelV4:     d.KernelIPv4,
		KernelV6:     d.KernelIPv6,
		StackV4:      d.StackIPv4,
		StackV6:      d.StackIPv6,
		Table:        d.RouteTable,
		RulePriority: d.RulePriority,
		Include:      slices.Clone(cfg.Outbound.Include),
		Exclude:      slices.Clone(cfg.Outbound.Exclude),
		NAT:          cfg.Outbound.NAT,
	}
	for _, svc := range cfg.Services {
		s.Services = append(s.Services, netcfg.ServiceSpec{Addr: svc.Listen, HostPort: svc.HostPort, Backend: svc.Backend})
	}
	return s
}

// stackAddresses are the addresses the stack's NIC owns: its egress
// addresses (with the device prefix) and every service address.
func stackAddresses(cfg *config.Config) []netip.Prefix {
	d := cfg.Device
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if p.IsValid() && !p.Addr().IsUnspecified() && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if d.StackIPv4.IsValid() {
		add(netip.PrefixFrom(d.StackIPv4, d.KernelIPv4.Bits()))
	}
	if d.StackIPv6.IsValid() {
		add(netip.PrefixFrom(d.StackIPv6, d.KernelIPv6.Bits()))
	}
	for _, svc := range cfg.Services {
		a := svc.Listen.Addr().Unmap()
		add(netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// forwarding reports whether the outbound forwarder runs: only when some
// destinations are routed into the device.
func forwarding(cfg *config.Config) bool { return len(cfg.Outbound.Include) > 0 }

// relayOptions translates [tcp] keepalive and [limits] relays_* into the
// stack's relay options; the backend loop check uses the configuration's
// own idea of what is routed into the device, as validation does.
func relayOptions(cfg *config.Config) stack.RelayOptions {
	t, l := cfg.TCP, cfg.Limits
	return stack.RelayOptions{
		MaxOutbound:  l.RelaysOutbound,
		MaxInbound:   l.RelaysInbound,
		MaxPerSource: l.RelaysPerSource,
		Keepalive: stack.Keepalive{
			Off:      !t.Keepalive,
			Idle:     t.KeepaliveIdle,
			Interval: t.KeepaliveInterval,
			Count:    t.KeepaliveCount,
		},
		RoutedIn: cfg.RoutedIntoDevice,
	}
}
