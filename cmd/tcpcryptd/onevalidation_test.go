package main

import (
	"errors"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg/netcfgtest"
)

// TestConfigOneValidation: the configuration's validation is the one
// users see. A configuration it accepts, at the edges of what it accepts,
// makes a Spec that tun/netcfg accepts too: netcfg's own checks are
// invariants for its callers, never a second message for the user's
// mistake. (The mistakes netcfg would catch are refused by config first,
// naming the key: config's TestHostNetworkingMistakesNamedByKey.)
func TestConfigOneValidation(t *testing.T) {
	// Mistakes: config must refuse them, or netcfg must take them.
	mistakes := []string{
		"[device]\nrule_priority = 32765\n",
		"[device]\nkernel_ipv4 = \"10.254.77.1/32\"\nstack_ipv4 = \"10.254.77.1\"\n",
		"[device]\nkernel_ipv4 = \"10.254.77.1/24\"\nstack_ipv4 = \"10.254.77.0\"\n",
		"[[service]]\nlisten = \"127.0.0.1:443\"\nbackend = \"127.0.0.1:8080\"\n",
		"[[service]]\nlisten = \"10.254.78.1:443\"\nbackend = \"127.0.0.1:8080\"\nhost_port = 443\n" +
			"[[service]]\nlisten = \"10.254.78.2:443\"\nbackend = \"127.0.0.1:8081\"\nhost_port = 443\n",
	}
	for _, text := range mistakes {
		cfg, err := config.Parse("t.toml", []byte(text))
		if err != nil {
			continue // refused by config, naming the key
		}
		if err := upSpec(t, cfg); err != nil {
			t.Errorf("%q: config accepts it, netcfg says %v", text, err)
		}
	}
	// Edges of what config accepts: netcfg takes them.
	for _, text := range []string{
		"",
		"[device]\nrule_priority = 32763\nroute_table = 1\nmtu = 1280\n",
		"[device]\nkernel_ipv4 = \"10.254.77.0/31\"\nstack_ipv4 = \"10.254.77.1\"\n" +
			"kernel_ipv6 = \"fd7c:e770::/127\"\nstack_ipv6 = \"fd7c:e770::1\"\n",
		"[outbound]\ninclude = [\"198.51.100.0/24\", \"2001:db8:1::/48\"]\nexclude = [\"198.51.100.128/25\"]\nnat = true\n" +
			"[[service]]\nlisten = \"10.254.78.1:443\"\nbackend = \"127.0.0.1:8080\"\nhost_port = 443\n" +
			"[[service]]\nlisten = \"[fd7c:e771::1]:443\"\nbackend = \"127.0.0.1:8081\"\nhost_port = 443\n",
	} {
		cfg, err := config.Parse("t.toml", []byte(text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if err := upSpec(t, cfg); err != nil {
			t.Errorf("%q: config accepts it, netcfg says %v", text, err)
		}
	}
}

// upSpec brings cfg's host networking up on a fake host and returns
// netcfg's refusal of the Spec, if any.
func upSpec(t *testing.T, cfg *config.Config) error {
	host := netcfgtest.NewHost()
	host.AddLink(cfg.Device.Name, 1500)
	nc, err := netcfg.New(host, netcfg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var se *netcfg.SpecError
	if err := nc.Up(netSpec(cfg)); errors.As(err, &se) {
		return err
	}
	return nil
}
