package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A service backend the host routes into the device comes back to the
// daemon: each connection to the service dials the service again. Such
// a backend is refused with the key and the fix; real backends pass.
func TestBackendRoutedIntoDeviceRefused(t *testing.T) {
	const svcs = `
[outbound]
include = ["192.0.2.0/24", "2001:db8::/32"]
exclude = ["192.0.2.128/25"]
[[service]]
name = "web"
listen = "10.254.78.1:443"
backend = "%s"
[[service]]
name = "other"
listen = "[fd00:78::1]:443"
backend = "127.0.0.1:9"
`
	for _, tc := range []struct {
		backend, why string // why: "" when the backend is fine
	}{
		{"10.254.78.1:443", `service "web".listen`}, // its own listen address
		{"10.254.78.1:8080", `service "web".listen`},
		{"[fd00:78::1]:80", `service "other".listen`},
		{"[::ffff:10.254.78.1]:443", `service "web".listen`},
		{"10.254.77.2:80", "device.stack_ipv4"},
		{"[fd7c:e770::2]:80", "device.stack_ipv6"},
		{"10.254.77.99:80", "device.kernel_ipv4"}, // routed into the device, on to the forwarder
		{"192.0.2.10:80", ""},                     // included, but the daemon's own dials are never captured
		{"[2001:db8::5]:80", ""},
		{"127.0.0.1:8080", ""},
		{"[::1]:8080", ""},
		{"10.254.77.1:8080", ""},    // the kernel's own address on the device
		{"192.0.2.200:80", ""},      // excluded again
		{"198.51.100.7:80", ""},     // not captured
		{"backend.internal:80", ""}, // a name: checked at dial time
		{"localhost:8080", ""},
	} {
		_, err := Parse("test.toml", []byte(strings.Replace(svcs, "%s", tc.backend, 1)))
		if tc.why == "" {
			if err != nil {
				t.Errorf("backend %s: %v, want accepted", tc.backend, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("backend %s accepted, want refused (%s)", tc.backend, tc.why)
			continue
		}
		if ce.Key != `service "web".backend` || !strings.Contains(ce.Msg, tc.why) || !strings.Contains(ce.Msg, "routed into the device") {
			t.Errorf("backend %s: %v; want key service \"web\".backend naming %s", tc.backend, err, tc.why)
		}
	}
}

func TestRoutedIntoDeviceLoopback(t *testing.T) {
	c, err := Parse("t", []byte("[outbound]\ninclude = [\"0.0.0.0/0\", \"::/0\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.0.0.1", "::1", "0.0.0.0", "::"} {
		if why := c.RoutedIntoDevice(netip.MustParseAddr(a)); why != "" {
			t.Errorf("%s routed in (%s); loopback is delivered locally", a, why)
		}
	}
	// Included destinations are captured by mark, and the daemon's own
	// sockets never are: a backend there is dialed directly.
	if why := c.RoutedIntoDevice(netip.MustParseAddr("203.0.113.1")); why != "" {
		t.Errorf("203.0.113.1: %q", why)
	}
}

func TestKeepaliveAndRelayLimits(t *testing.T) {
	c := Default()
	if tc := c.TCP; !tc.Keepalive || tc.KeepaliveIdle != 2*time.Minute || tc.KeepaliveInterval != 30*time.Second || tc.KeepaliveCount != 4 {
		t.Errorf("tcp = %+v", tc)
	}
	if l := c.Limits; l.RelaysOutbound != 16384 || l.RelaysInbound != 16384 || l.RelaysPerSource != 4096 {
		t.Errorf("limits = %+v", l)
	}
	for _, tc := range []struct{ text, key, want string }{
		{"[tcp]\nkeepalive_idle = \"10ms\"", "tcp.keepalive_idle", "1s to 2h"},
		{"[tcp]\nkeepalive_interval = \"1h\"", "tcp.keepalive_interval", "1s to 10m"},
		{"[tcp]\nkeepalive_count = 0", "tcp.keepalive_count", "1-100"},
		{"[limits]\nrelays_inbound = 0", "limits.relays_inbound", "1-1048576"},
		{"[limits]\nrelays_per_source = -1", "limits.relays_per_source", "1-1048576"},
	} {
		_, err := Parse("test.toml", []byte(tc.text))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.want) {
			t.Errorf("%q: %v; want key %s with %q", tc.text, err, tc.key, tc.want)
		}
	}
}
