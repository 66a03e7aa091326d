package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// snapshot returns ns's network state (see topo.NS.Snapshot).
func snapshot(t *testing.T, ns *topo.NS) string {
	t.Helper()
	s, err := ns.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stateDiff lists the lines only in a (-) and only in b (+).
func stateDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var d []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			d = append(d, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}

// withoutLinkLocal drops IPv6 link-local addresses and their routes: the
// kernel gives a new TUN device a random one each time.
func withoutLinkLocal(s string) string {
	lines := strings.Split(s, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool {
		return strings.Contains(l, " fe80:") || strings.Contains(l, "=fe80:")
	})
	return strings.Join(lines, "\n")
}

// waitState waits up to 5s for ns's state to equal want (a device removed
// by the kernel may take a moment to disappear) and fails with the
// difference otherwise.
func waitState(t *testing.T, ns *topo.NS, want, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := snapshot(t, ns)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: namespace state differs from before 'up':\n%s", what, stateDiff(want, got))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKillThenDown: after kill -9 of the daemon, `tcpcryptd down` removes
// every route, rule, address, nft table, device and sysctl change of ours,
// a second `down` is harmless, and `up` works again (and its clean exit
// leaves nothing either). Once with the laptop's configuration (outbound:
// routes, rules, masquerade, forwarding), once with the server's (services).
func TestKillThenDown(t *testing.T) {
	requireDaemon(t)
	for _, role := range []struct {
		name string
		cfg  func(string) string
		ns   func(*topo.Topology) *topo.NS
	}{
		{"laptop", laptopConfig, func(tp *topo.Topology) *topo.NS { return tp.Laptop }},
		{"server", serverConfig, func(tp *topo.Topology) *topo.NS { return tp.Server }},
	} {
		t.Run(role.name, func(t *testing.T) {
			tp := newTopo(t, false)
			ns := role.ns(tp)
			before := snapshot(t, ns)
			d := startDaemon(t, ns, role.name, role.cfg)
			running := snapshot(t, ns)
			if !strings.Contains(running, "link tcpc0 ") {
				t.Fatalf("no TUN device while running:\n%s", running)
			}
			d.kill9()
			crashed := snapshot(t, ns)
			t.Logf("left behind by kill -9:\n%s", stateDiff(before, crashed))
			if crashed == before {
				t.Log("kill -9 left nothing behind; 'down' still has to succeed")
			}

			if r := runCLI(t, ns, "down", "--config", d.cfg); r.code != 0 {
				t.Fatalf("down after kill -9: %v", r)
			}
			waitState(t, ns, before, "after kill -9 and down")
			if r := runCLI(t, ns, "down", "--config", d.cfg); r.code != 0 {
				t.Fatalf("second down: %v", r)
			}
			waitState(t, ns, before, "after a second down")

			d.start()
			if h, err := d.api.Health(); err != nil || h.Status != "ok" {
				t.Fatalf("health after restart: %+v %v", h, err)
			}
			if again := snapshot(t, ns); withoutLinkLocal(again) != withoutLinkLocal(running) {
				t.Errorf("state after restart differs from the first run:\n%s", stateDiff(running, again))
			}
			d.stop()
			waitState(t, ns, before, "after a clean stop")
		})
	}
}

// TestMalformedConfigAndFlags: bad configuration files and flags give a
// clear error naming the key or flag and a non-zero exit, and change nothing
// in the namespace.
func TestMalformedConfigAndFlags(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	ns := tp.Laptop
	dir := shortTempDir(t, "bad")
	socket := filepath.Join(dir, "control.sock")
	good := laptopConfig(socket)
	const (
		codeUsage  = 2
		codeConfig = 3
	)
	tests := []struct {
		name string
		cfg  string   // config file text ("" : none written)
		args []string // after "up --config FILE"
		code int
		want []string // in stderr
	}{
		{name: "unknown key", cfg: good + "\n[crypto]\nteps_order = [\"x25519\"]\n", code: codeConfig, want: []string{"crypto.teps_order", "unknown"}},
		{name: "bad prefix", cfg: strings.Replace(good, `"10.77.2.0/24", "fd77:2::/64"`, `"10.77.2.0/33", "fd77:2::/64"`, 1), code: codeConfig, want: []string{"outbound.include[0]", "10.77.2.0/33"}},
		{name: "bad mtu", cfg: strings.Replace(good, `name = "tcpc0"`, "name = \"tcpc0\"\nmtu = 100", 1), code: codeConfig, want: []string{"device.mtu", "100"}},
		{name: "bad policy", cfg: strings.Replace(good, `policy = "opportunistic"`, `policy = "sometimes"`, 1), code: codeConfig, want: []string{"outbound.policy", "sometimes"}},
		{name: "bad rule mode", cfg: strings.Replace(good, `mode = "required"`, `mode = "always"`, 1), code: codeConfig, want: []string{"outbound.rule[0].mode", "always"}},
		{name: "service without port", cfg: good + "\n[[service]]\nname = \"w\"\nlisten = \"10.77.3.1\"\nbackend = \"127.0.0.1:8080\"\n", code: codeConfig, want: []string{"listen", "10.77.3.1"}},
		{name: "unknown TEP", cfg: good + "\n[crypto]\nteps = [\"x25519\", \"rot13\"]\n", code: codeConfig, want: []string{"crypto.teps[1]", "rot13"}},
		{name: "syntax error", cfg: good + "\n[device\n", code: codeConfig, want: []string{"tcpcryptd.toml"}},
		{name: "missing file", args: []string{}, code: codeConfig, want: []string{"does-not-exist.toml"}},
		{name: "log level flag", cfg: good, args: []string{"--log-level", "loud"}, code: codeUsage, want: []string{"--log-level", "loud"}},
		{name: "device flag", cfg: good, args: []string{"--device", "bad/name"}, code: codeUsage, want: []string{"--device", "bad/name"}},
		{name: "relative control socket", cfg: good, args: []string{"--control-socket", "ctl.sock"}, code: codeUsage, want: []string{"--control-socket"}},
		{name: "unknown flag", cfg: good, args: []string{"--no-such-flag"}, code: codeUsage, want: []string{"no-such-flag"}},
	}
	before := snapshot(t, ns)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "does-not-exist.toml")
			if tc.cfg != "" {
				path = filepath.Join(dir, "tcpcryptd.toml")
				if err := os.WriteFile(path, []byte(tc.cfg), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := runCLI(t, ns, append([]string{"up", "--config", path}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("up: exit %d, want %d\n%v", r.code, tc.code, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error message lacks %q:\n%s", w, r.stderr)
				}
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 8 {
				t.Errorf("error message is not short:\n%s", r.stderr)
			}
			t.Logf("%s", strings.TrimSpace(r.stderr))
			if tc.code == codeConfig && tc.cfg != "" {
				cc := runCLI(t, ns, "check-config", "--config", path)
				if cc.code != codeConfig || !strings.Contains(cc.stderr, tc.want[0]) {
					t.Errorf("check-config: %v", cc)
				}
			}
			if _, err := os.Stat(socket); err == nil {
				t.Errorf("control socket %s created", socket)
			}
			waitState(t, ns, before, "after a rejected 'up'")
		})
	}
}
