package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if c.Device.Name != "tcpcrypt0" || c.Device.MTU != 1500 {
		t.Errorf("device = %+v", c.Device)
	}
	if !c.Device.KernelIPv4.Contains(c.Device.StackIPv4) || !c.Device.KernelIPv6.Contains(c.Device.StackIPv6) {
		t.Errorf("stack addresses outside the kernel prefixes: %+v", c.Device)
	}
	if got := strings.Join(c.Crypto.TEPs, ","); got != "x25519,x448,p256" {
		t.Errorf("teps = %s", got)
	}
	if c.Control.Mode != 0o600 {
		t.Errorf("control mode = %o, want 0600", c.Control.Mode)
	}
	if c.Crypto.EphemeralKeyLifetime != 0 || c.Crypto.ResumptionLifetime != 24*time.Hour {
		t.Errorf("crypto = %+v", c.Crypto)
	}
	if c.Outbound.Policy != ModeOpportunistic {
		t.Errorf("policy = %q", c.Outbound.Policy)
	}
	if c.Runtime.CPUs != 1 {
		t.Errorf("runtime.cpus = %d, want 1", c.Runtime.CPUs)
	}
	if c.TCP.SACKMinRTT != 0 || c.TCP.MinRTO != 100*time.Millisecond {
		t.Errorf("tcp.sack_min_rtt = %v, tcp.min_rto = %v, want 0s, 100ms", c.TCP.SACKMinRTT, c.TCP.MinRTO)
	}
	if l := c.Limits; l.HandshakesPerSource != 32 || l.Init1Timeout != 3*time.Second || l.HandshakeBudgetPerSource != 1000 {
		t.Errorf("limits = %+v", l)
	}
	if l := c.Limits; l.ENOFlows != 65536 || l.ENOFlowsOutboundReserve != 8192 || l.HalfOpenPerSource != 1024 || l.HalfOpenTimeout != 20*time.Second {
		t.Errorf("flow limits = %+v", l)
	}
}

// TestP521OptIn: P-521 is not in the default list (its key exchange costs
// about 18 X25519 ones), but listing it explicitly is valid.
func TestP521OptIn(t *testing.T) {
	c, err := Parse("t", []byte("[crypto]\nteps = [\"x25519\", \"p521\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Crypto.TEPs, ","); got != "x25519,p521" {
		t.Errorf("teps = %s", got)
	}
}

func TestOverridesKeepOtherDefaults(t *testing.T) {
	c, err := Parse("t", []byte(`
[device]
mtu = 9000
[outbound]
include = ["192.0.2.0/24", "2001:db8::/32"]
exclude = ["192.0.2.128/25"]
[[outbound.rule]]
prefix = "192.0.2.0/24"
ports = [443]
mode = "required"
[[outbound.rule]]
prefix = "192.0.2.0/26"
mode = "off"
[[service]]
name = "web"
listen = "[fd00::5]:443"
backend = "127.0.0.1:8080"
proxy_protocol = true
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.MTU != 9000 || c.Device.Name != "tcpcrypt0" {
		t.Errorf("device = %+v", c.Device)
	}
	if len(c.Services) != 1 || c.Services[0].Policy != ModeOpportunistic || !c.Services[0].ProxyProtocol {
		t.Errorf("services = %+v", c.Services)
	}
	o := &c.Outbound
	for _, tc := range []struct {
		addr    string
		port    uint16
		capture bool
		mode    Mode
	}{
		{"192.0.2.70", 443, true, ModeRequired},
		{"192.0.2.70", 80, true, ModeOpportunistic},
		{"192.0.2.10", 443, true, ModeOff}, // longer prefix wins
		{"192.0.2.200", 443, false, ModeRequired},
		{"2001:db8::1", 22, true, ModeOpportunistic},
		{"198.51.100.1", 443, false, ModeOpportunistic},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := o.Captured(a); got != tc.capture {
			t.Errorf("Captured(%s) = %v, want %v", a, got, tc.capture)
		}
		if got := o.PolicyFor(a, tc.port); got != tc.mode {
			t.Errorf("PolicyFor(%s, %d) = %q, want %q", a, tc.port, got, tc.mode)
		}
	}
}

func TestInvalidConfigsNameKeyAndFix(t *testing.T) {
	for _, tc := range []struct {
		name, text, key, want string
	}{
		{"syntax", "[device\nmtu=1", "", "test.toml:2: expected"},
		{"unknown key", "[outbound]\ninclued = []", "outbound.inclued", "unknown key"},
		{"mtu", "[device]\nmtu = 100", "device.mtu", "1280-65535"},
		{"cpus", "[runtime]\ncpus = -1", "runtime.cpus", "0 for every CPU"},
		{"sack rtt negative", "[tcp]\nsack_min_rtt = \"-1ms\"", "tcp.sack_min_rtt", "not a duration"},
		{"sack rtt long", "[tcp]\nsack_min_rtt = \"1s\"", "tcp.sack_min_rtt", "at most 100ms"},
		{"eno flows", "[limits]\neno_flows = 10", "limits.eno_flows", "64-4194304"},
		{"flow reserve", "[limits]\neno_flows = 64\neno_flows_outbound_reserve = 33", "limits.eno_flows_outbound_reserve", "half of limits.eno_flows (32)"},
		{"per source", "[limits]\nhalf_open_per_source = 0", "limits.half_open_per_source", "use 1 to"},
		{"half-open timeout", "[limits]\nhalf_open_timeout = \"1s\"", "limits.half_open_timeout", "3s-2m0s"},
		{"ifname", "[device]\nname = \"much-too-long-name0\"", "device.name", "15"},
		{"prefix", "[outbound]\ninclude = [\"10.0.0.0/33\"]", "outbound.include[0]", "not an address prefix"},
		{"host bits", "[outbound]\ninclude = [\"10.0.0.1/8\"]", "outbound.include[0]", "did you mean \"10.0.0.0/8\""},
		{"captures nothing", "[outbound]\ninclude = [\"10.254.77.0/25\"]", "outbound.include[0]", "the device's own prefix"},
		{"policy", "[outbound]\npolicy = \"maybe\"", "outbound.policy", "\"off\", \"opportunistic\" or \"required\""},
		{"rule port", "[[outbound.rule]]\nprefix=\"10.0.0.0/8\"\nports=[0]\nmode=\"off\"", "outbound.rule[0].ports[0]", "1-65535"},
		{"stack addr", "[device]\nstack_ipv4 = \"10.9.9.9\"", "device.stack_ipv4", "inside 10.254.77.0/24"},
		{"stack equals kernel", "[device]\nstack_ipv6 = \"fd7c:e770::1\"", "device.stack_ipv6", "differ"},
		{"kernel v6 family", "[device]\nkernel_ipv6 = \"10.0.0.1/24\"", "device.kernel_ipv6", "not an IPv6"},
		{"table", "[device]\nroute_table = 254", "device.route_table", "reserved"},
		{"priority", "[device]\nrule_priority = 32766", "device.rule_priority", "1-32763"},
		{"service listen", "[[service]]\nname=\"w\"\nlisten=\"10.0.0.1\"\nbackend=\"127.0.0.1:1\"", "service \"w\".listen", "address:port"},
		{"service backend", "[[service]]\nlisten=\"10.0.0.1:1\"\nbackend=\"nowhere\"", "service[0].backend", "host:port"},
		{"service dup", "[[service]]\nlisten=\"10.0.0.1:1\"\nbackend=\"a:1\"\n[[service]]\nlisten=\"10.0.0.1:1\"\nbackend=\"a:2\"", "service[1].listen", "already used"},
		{"tep", "[crypto]\nteps = [\"x25519\", \"rsa\"]", "crypto.teps[1]", "unknown name \"rsa\""},
		{"tep dup", "[crypto]\nteps = [\"x25519\", \"x25519\"]", "crypto.teps[1]", "twice"},
		{"no aead", "[crypto]\naeads = []", "crypto.aeads", "at least one"},
		{"duration", "[crypto]\nresumption_lifetime = \"forever\"", "crypto.resumption_lifetime", "not a duration"},
		{"key reuse", "[crypto]\nephemeral_key_lifetime = \"3h\"", "crypto.ephemeral_key_lifetime", "at most 1h"},
		{"socket mode", "[control]\nmode = \"0666\"", "control.mode", "every local user"},
		{"socket mode syntax", "[control]\nmode = \"rw\"", "control.mode", "octal"},
		{"socket path", "[control]\nsocket = \"ctl.sock\"", "control.socket", "absolute"},
		{"metrics", "[metrics]\nlisten = \"localhost\"", "metrics.listen", "address:port"},
		{"log level", "[log]\nlevel = \"loud\"", "log.level", "debug, info, warn or error"},
		{"type", "[device]\nmtu = \"big\"", "", "mtu"},
		{"handshakes per source", "[limits]\nhandshakes_per_source = 0", "limits.handshakes_per_source", "1-65536"},
		{"init1 timeout", "[limits]\ninit1_timeout = \"0s\"", "limits.init1_timeout", "100ms-1m0s"},
		{"init1 timeout syntax", "[limits]\ninit1_timeout = \"soon\"", "limits.init1_timeout", "not a duration"},
		{"handshake budget", "[limits]\nhandshake_budget_per_source = -5", "limits.handshake_budget_per_source", "1-1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tc.text))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: err = %v, want *Error", err)
			}
			if tc.key != "" && ce.Key != tc.key {
				t.Errorf("key = %q, want %q (err: %v)", ce.Key, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "config test.toml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("[log]\nformat = \"json\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Log.Format != "json" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing) = %v", err)
	}
}

// FuzzParse: arbitrary text yields a valid config or an *Error, never a
// panic.
func FuzzParse(f *testing.F) {
	f.Add(DefaultText())
	f.Add("[device]\nmtu = 100")
	f.Add("[[service]]\nlisten=\"[::1]:1\"\nbackend=\"a:1\"")
	f.Add("[outbound]\ninclude = [\"10.0.0.0/8\"]\n[[outbound.rule]]\nprefix=\"10.0.0.0/8\"\nports=[1]\nmode=\"off\"")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("fuzz", []byte(s))
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if c.Device.MTU < 1280 || len(c.Crypto.TEPs) == 0 || c.Control.Mode&0o007 != 0 {
			t.Fatalf("invalid config accepted: %+v", c)
		}
	})
}
