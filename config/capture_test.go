package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// "Encrypt everything" is a configuration: include = everything is
// accepted (the device's own prefixes, loopback, link-local and multicast
// are left out automatically) and exclude takes prefixes back.
func TestIncludeEverything(t *testing.T) {
	c, err := Parse("t", []byte(`
[outbound]
include = ["0.0.0.0/0", "::/0"]
exclude = ["192.0.2.0/24", "2001:db8:1::/48"]
`))
	if err != nil {
		t.Fatalf("include everything refused: %v", err)
	}
	for a, want := range map[string]bool{
		"198.51.100.7":    true,
		"2001:db8:2::1":   true,
		"192.0.2.5":       false, // excluded
		"2001:db8:1::9":   false,
		"127.0.0.1":       false, // loopback
		"::1":             false,
		"169.254.10.1":    false, // link-local
		"fe80::1":         false,
		"224.0.0.251":     false, // multicast
		"ff02::fb":        false,
		"255.255.255.255": false,
		"10.254.77.9":     false, // the device's prefix (default kernel_ipv4 10.254.77.1/24)
		"fd7c:e770::9":    false,
	} {
		if got := c.Captured(netip.MustParseAddr(a)); got != want {
			t.Errorf("Captured(%s) = %v, want %v", a, got, want)
		}
	}
}

// An include prefix that exclude or an automatic exclusion takes back
// whole is refused: it captures nothing, and its author meant something.
func TestIncludeThatCapturesNothing(t *testing.T) {
	for _, tc := range []struct{ toml, why string }{
		{"include = [\"127.0.0.0/8\"]", "never captured"},
		{"include = [\"fe80::/64\"]", "never captured"},
		{"include = [\"10.254.77.128/25\"]", "the device's own prefix"},
		{"include = [\"192.0.2.0/25\"]\nexclude = [\"192.0.2.0/24\"]", "in outbound.exclude"},
	} {
		_, err := Parse("t", []byte("[outbound]\n"+tc.toml+"\n"))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "outbound.include[0]" || !strings.Contains(ce.Msg, tc.why) {
			t.Errorf("%s: %v, want outbound.include[0] refused (%s)", tc.toml, err, tc.why)
		}
	}
	// Partly excluded is fine.
	if _, err := Parse("t", []byte("[outbound]\ninclude = [\"192.0.2.0/24\"]\nexclude = [\"192.0.2.0/25\"]\n")); err != nil {
		t.Errorf("partly excluded include refused: %v", err)
	}
}
