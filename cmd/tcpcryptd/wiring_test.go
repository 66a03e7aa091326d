package main

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The file lists TEPs most preferred first; tcpcrypt.Config.TEPs wants
// increasing preference (RFC 8547 §4.5: B's SYN lists them that way).
func TestTCPCryptConfigOrder(t *testing.T) {
	cfg := mustParse(t, `
[crypto]
teps = ["p256", "x25519"]
aeads = ["chacha20poly1305", "aes128gcm"]
ephemeral_key_lifetime = "30s"
rekey_after_bytes = 1000000
resumption_cache_size = 16
`)
	var kl bytes.Buffer
	tc, err := tcpcryptConfig(cfg.Crypto, cfg.Limits, &kl)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tc.TEPs, []kex.ID{kex.X25519, kex.P256}) {
		t.Errorf("TEPs %v, want x25519 then p256 (increasing preference)", tc.TEPs)
	}
	if !slices.Equal(tc.AEADs, []schedule.AEADID{schedule.ChaCha20Poly1305, schedule.AES128GCM}) {
		t.Errorf("AEADs %v, want most preferred first", tc.AEADs)
	}
	if tc.EphemeralLifetime != 30*time.Second || tc.RekeyAfter != 1000000 || tc.KeyLog != &kl {
		t.Errorf("lifetime %v rekey %d keylog %v", tc.EphemeralLifetime, tc.RekeyAfter, tc.KeyLog)
	}
	if !tc.Resumption || tc.Cache == nil {
		t.Error("resumption not configured")
	}

	off := mustParse(t, "[crypto]\nresumption_cache_size = 0\n")
	if tc, err := tcpcryptConfig(off.Crypto, off.Limits, nil); err != nil || tc.Resumption || tc.Cache != nil || tc.KeyLog != nil {
		t.Errorf("cache size 0: %+v %v", tc, err)
	}
	if _, err := tcpcryptConfig(config.Crypto{TEPs: []string{"rsa"}, AEADs: []string{"aes128gcm"}}, config.Limits{}, nil); err == nil {
		t.Error("unknown TEP accepted")
	}
	if _, err := tcpcryptConfig(config.Crypto{TEPs: []string{"x25519"}, AEADs: []string{"des"}}, config.Limits{}, nil); err == nil {
		t.Error("unknown AEAD accepted")
	}
}

// The stack policy gives the same mode as the configuration's own
// PolicyFor for every destination.
func TestOutboundPolicyAgrees(t *testing.T) {
	cfg := mustParse(t, `
[outbound]
include = ["192.0.2.0/24", "2001:db8::/32"]
policy = "opportunistic"
[[outbound.rule]]
prefix = "192.0.2.0/24"
mode = "off"
[[outbound.rule]]
prefix = "192.0.2.0/24"
ports = [443, 8443]
mode = "required"
[[outbound.rule]]
prefix = "192.0.2.128/25"
mode = "required"
[[outbound.rule]]
prefix = "2001:db8:1::/48"
ports = [22]
mode = "off"
`)
	p := outboundPolicy(cfg.Outbound)
	if len(p.Rules) != 5 {
		t.Fatalf("rules %v: want one per port", p.Rules)
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.200", "198.51.100.1", "2001:db8:1::5", "2001:db8:2::5", "::ffff:192.0.2.1"} {
		for _, port := range []uint16{22, 80, 443, 8443} {
			addr := netip.MustParseAddr(a)
			want := enoMode(cfg.Outbound.PolicyFor(addr, port))
			if got := p.ModeFor(addr, port); got != want {
				t.Errorf("%s port %d: stack %v, config %v", a, port, got, want)
			}
		}
	}
	if enoMode(config.ModeRequired) != eno.ModeRequired || enoMode(config.ModeOff) != eno.ModeOff || enoMode(config.ModeOpportunistic) != eno.ModeOpportunistic {
		t.Error("mode mapping")
	}
	svc := servicePolicy(config.Service{Policy: config.ModeRequired})
	if svc.ModeFor(netip.MustParseAddr("10.0.0.1"), 1) != eno.ModeRequired {
		t.Error("service policy")
	}
}

func TestNetSpecAndStackAddresses(t *testing.T) {
	cfg := mustParse(t, `
[device]
name = "tc0"
mtu = 1400
route_table = 100
rule_priority = 200
[outbound]
include = ["192.0.2.0/24"]
exclude = ["192.0.2.1/32"]
nat = false
[[service]]
listen = "10.254.78.1:443"
backend = "127.0.0.1:8080"
host_port = 8443
[[service]]
listen = "10.254.78.1:80"
backend = "127.0.0.1:8081"
[[service]]
listen = "[fd7c:e771::1]:443"
backend = "[::1]:8080"
`)
	s := netSpec(cfg)
	want := netcfg.Spec{
		Device: "tc0", MTU: 1400,
		KernelV4: netip.MustParsePrefix("10.254.77.1/24"), KernelV6: netip.MustParsePrefix("fd7c:e770::1/64"),
		StackV4: netip.MustParseAddr("10.254.77.2"), StackV6: netip.MustParseAddr("fd7c:e770::2"),
		Table: 100, RulePriority: 200,
		Include: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		Exclude: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")},
		Services: []netcfg.ServiceSpec{
			{Addr: netip.MustParseAddrPort("10.254.78.1:443"), HostPort: 8443, Backend: "127.0.0.1:8080"},
			{Addr: netip.MustParseAddrPort("10.254.78.1:80"), Backend: "127.0.0.1:8081"},
			{Addr: netip.MustParseAddrPort("[fd7c:e771::1]:443"), Backend: "[::1]:8080"},
		},
	}
	if s.Device != want.Device || s.MTU != want.MTU || s.KernelV4 != want.KernelV4 || s.KernelV6 != want.KernelV6 ||
		s.StackV4 != want.StackV4 || s.StackV6 != want.StackV6 || s.Table != want.Table || s.RulePriority != want.RulePriority ||
		s.NAT || !slices.Equal(s.Include, want.Include) || !slices.Equal(s.Exclude, want.Exclude) || !slices.Equal(s.Services, want.Services) {
		t.Fatalf("spec\n got %+v\nwant %+v", s, want)
	}
	addrs := stackAddresses(cfg)
	wantAddrs := []netip.Prefix{
		netip.MustParsePrefix("10.254.77.2/24"), netip.MustParsePrefix("fd7c:e770::2/64"),
		netip.MustParsePrefix("10.254.78.1/32"), netip.MustParsePrefix("fd7c:e771::1/128"),
	}
	if !slices.Equal(addrs, wantAddrs) {
		t.Fatalf("stack addresses %v, want %v (each service address once)", addrs, wantAddrs)
	}
	if !forwarding(cfg) || forwarding(config.Default()) {
		t.Fatal("forwarder runs only with include prefixes")
	}
}

func TestJournalPath(t *testing.T) {
	cfg := config.Default()
	cfg.Control.Socket = "/run/x/control.sock"
	if got := journalPath(cfg); got != "/run/x/control.journal" {
		t.Fatal(got)
	}
	cfg.Control.Socket = "/run/x/ctl"
	if got := journalPath(cfg); got != "/run/x/ctl.journal" {
		t.Fatal(got)
	}
}

func TestHandshakeLimits(t *testing.T) {
	cfg := mustParse(t, `
[limits]
handshakes_per_source = 5
init1_timeout = "750ms"
handshake_budget_per_source = 90
`)
	var o stack.Options
	setLimits(&o, cfg.Limits)
	if o.HandshakesPerSource != 5 || o.Init1Timeout != 750*time.Millisecond || o.HandshakeBudget != 90 {
		t.Errorf("stack options = %d, %v, %v", o.HandshakesPerSource, o.Init1Timeout, o.HandshakeBudget)
	}
}

// [limits] reaches the stack's flow-table options.
func TestFlowLimitsWiring(t *testing.T) {
	cfg := mustParse(t, "[limits]\neno_flows = 1000\neno_flows_outbound_reserve = 100\nhalf_open_per_source = 8\nhalf_open_timeout = \"5s\"\n")
	var o stack.Options
	setLimits(&o, cfg.Limits)
	if o.MaxFlows != 1000 || o.OutboundFlowReserve != 100 || o.HalfOpenPerSource != 8 || o.InboundHalfOpenTimeout != 5*time.Second {
		t.Fatalf("options %+v", o)
	}
}
