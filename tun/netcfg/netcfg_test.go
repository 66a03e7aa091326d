package netcfg_test

import (
	"errors"
	"flag"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg/netcfgtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const dev = "tcpc0"

func pfx(s string) netip.Prefix  { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr   { return netip.MustParseAddr(s) }
func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func pfxs(ss ...string) (ps []netip.Prefix) {
	for _, s := range ss {
		ps = append(ps, pfx(s))
	}
	return ps
}

// specs are the configurations of the golden tests, by golden file name.
var specs = []struct {
	name string
	spec netcfg.Spec
}{
	{"v4-outbound-nat", netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/24"), StackV4: addr("10.77.9.2"),
		Include: pfxs("203.0.113.0/24", "198.51.100.0/24"), Exclude: pfxs("203.0.113.128/25"), NAT: true,
	}},
	{"dual-stack-services", netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/24"), KernelV6: pfx("fd77:9::1/64"),
		StackV4: addr("10.77.9.2"), StackV6: addr("fd77:9::2"),
		Include: pfxs("203.0.113.0/24", "2001:db8:100::/48"), NAT: true,
		Services: []netcfg.ServiceSpec{
			{Addr: ap("10.77.9.10:443"), HostPort: 8443, Backend: "127.0.0.1:8443"},
			{Addr: ap("198.18.0.5:22"), HostPort: 2222, Backend: "192.0.2.7:2222"}, // no local DNAT for 2222
			{Addr: ap("[fd77:9::10]:443"), HostPort: 8444},
		},
	}},
	{"inbound-only", netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/30"), KernelV6: pfx("fd77:9::1/127"),
		Services: []netcfg.ServiceSpec{{Addr: ap("10.77.9.2:443")}, {Addr: ap("[fd77:9::]:80"), HostPort: 8080}},
	}},
	{"v6-custom-marks", netcfg.Spec{
		Device: dev, MTU: 1400, KernelV6: pfx("fd77:9::1/64"), StackV6: addr("fd77:9::2"),
		Table: 4242, RulePriority: 9000, Include: pfxs("2000::/3"), Exclude: pfxs("2001:db8::/32"), NAT: true,
	}},
	// Encrypt everything: the capture ranges leave out loopback, link-local,
	// multicast, the device's prefixes and the excluded ones.
	{"encrypt-everything", netcfg.Spec{
		Device: dev, KernelV4: pfx("10.77.9.1/24"), KernelV6: pfx("fd77:9::1/64"),
		StackV4: addr("10.77.9.2"), StackV6: addr("fd77:9::2"),
		Include: pfxs("0.0.0.0/0", "::/0"), Exclude: pfxs("192.0.2.0/24"), NAT: true,
	}},
}

// The host's own connections to a host port are DNAT'ed too (dnat-local),
// unless a backend may listen on that port at one of the host's own
// non-loopback addresses: the daemon's dial to it would loop back.
func TestDesiredLocalDNAT(t *testing.T) {
	for _, tc := range []struct {
		backend string
		local   bool
	}{
		{"", true},
		{"127.0.0.1:8443", true},
		{"127.9.9.9:8443", true},
		{"[::1]:8443", true},
		{"localhost:8443", true},
		{"LOCALHOST:8443", true},
		{"10.0.0.5:9000", true},
		{"10.0.0.5:8443", false},
		{"[2001:db8::5]:8443", false},
		{"backend.example:8443", false},
		{"10.0.0.5:https", false},
		{"no port", false},
	} {
		spec := netcfg.Spec{Device: dev, KernelV4: pfx("10.77.9.1/24"),
			Services: []netcfg.ServiceSpec{
				{Addr: ap("10.77.9.10:443"), HostPort: 8443},
				{Addr: ap("10.77.9.11:80"), Backend: tc.backend}, // another service's backend counts too
			}}
		st := netcfg.Desired(spec, netcfg.Facts{})
		var local, dnat int
		for _, r := range st.NAT {
			switch r.Kind {
			case netcfg.NATDNATLocal:
				local++
				if r.Port != 8443 || r.To != ap("10.77.9.10:443") || r.Dev != "" {
					t.Errorf("backend %q: local rule %v", tc.backend, r)
				}
			case netcfg.NATDNAT:
				dnat++
			}
		}
		if dnat != 1 || (local == 1) != tc.local || local > 1 {
			t.Errorf("backend %q: %d dnat and %d dnat-local rules, want 1 and local=%v", tc.backend, dnat, local, tc.local)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newHost() *netcfgtest.Host {
	h := netcfgtest.NewHost()
	h.AddLink(dev, 1500)
	return h
}

func newConfig(t *testing.T, h netcfg.Host, journal string) *netcfg.Config {
	t.Helper()
	c, err := netcfg.New(h, netcfg.Options{Logger: testLogger(t), JournalPath: journal})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func journalText(c *netcfg.Config) string {
	var b strings.Builder
	for _, ch := range c.Journal() {
		b.WriteString(ch.String() + "\n")
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from golden:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// goldenState is what each golden file holds: the host after Up, then the journal.
func goldenState(h *netcfgtest.Host, c *netcfg.Config) string {
	return h.String() + "-- journal --\n" + journalText(c)
}

// TestStates: one golden host state per spec, from a fresh host; Up is idempotent;
// Down restores the host exactly.
func TestStates(t *testing.T) {
	for _, sc := range specs {
		t.Run(sc.name, func(t *testing.T) {
			h := newHost()
			before := h.String()
			c := newConfig(t, h, "")
			if err := c.Up(sc.spec); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, sc.name, goldenState(h, c))

			n := h.Changes()
			if err := c.Up(sc.spec); err != nil {
				t.Fatal(err)
			}
			if h.Changes() != n {
				t.Errorf("second Up made %d changes", h.Changes()-n)
			}
			if err := c.Down(); err != nil {
				t.Fatal(err)
			}
			if got := h.String(); got != before {
				t.Errorf("Down left the host changed:\n--- got\n%s--- want\n%s", got, before)
			}
			if len(c.Journal()) != 0 {
				t.Errorf("journal after Down: %v", c.Journal())
			}
		})
	}
}

// TestTransitions applies the specs in random orders on one host: after each Up the
// host must look exactly as after that spec alone (its golden file), whatever came
// before; Down at the end restores the start.
func TestTransitions(t *testing.T) {
	golden := map[string]string{}
	for _, sc := range specs {
		b, err := os.ReadFile(filepath.Join("testdata", sc.name+".golden"))
		if err != nil {
			t.Skip("golden files missing; run TestStates -update first")
		}
		golden[sc.name], _, _ = strings.Cut(string(b), "-- journal --\n")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 5 {
		h := newHost()
		before := h.String()
		c := newConfig(t, h, "")
		for _, i := range append(r.Perm(len(specs)), r.Perm(len(specs))...) {
			sc := specs[i]
			if err := c.Up(sc.spec); err != nil {
				t.Fatalf("round %d, Up(%s): %v", round, sc.name, err)
			}
			if got := h.String(); got != golden[sc.name] {
				t.Fatalf("round %d, after Up(%s):\n--- got\n%s--- want\n%s", round, sc.name, got, golden[sc.name])
			}
		}
		if err := c.Down(); err != nil {
			t.Fatal(err)
		}
		if got := h.String(); got != before {
			t.Fatalf("round %d: Down left:\n%s", round, got)
		}
	}
}

// TestPartialFailure: an Up that fails midway leaves a journal that describes the
// host exactly, so Down restores it; a later Up completes.
func TestPartialFailure(t *testing.T) {
	spec := specs[1].spec
	failures := 0
	for _, op := range []string{"AddAddr", "AddRoute", "AddRule", "AddNATRules", "SetSysctl", "NATRules", "Rules"} {
		for nth := 1; nth <= 3; nth++ {
			h := newHost()
			before := h.String()
			c := newConfig(t, h, filepath.Join(t.TempDir(), "journal"))
			h.FailOn(op, nth)
			err := c.Up(spec)
			if err == nil {
				continue // fewer than nth calls of op
			}
			if !errors.Is(err, netcfgtest.ErrInjected) {
				t.Fatalf("%s#%d: %v", op, nth, err)
			}
			failures++
			if err := c.Down(); err != nil {
				t.Fatalf("%s#%d: Down: %v", op, nth, err)
			}
			if got := h.String(); got != before {
				t.Fatalf("%s#%d: Down after failed Up left:\n%s", op, nth, got)
			}
			if err := c.Up(spec); err != nil {
				t.Fatalf("%s#%d: Up after failure: %v", op, nth, err)
			}
		}
	}
	if failures < 10 {
		t.Errorf("only %d injected failures hit", failures)
	}
}

// TestDownKeepsFailures: undo that fails stays in the journal for the next Down.
func TestDownKeepsFailures(t *testing.T) {
	h := newHost()
	before := h.String()
	c := newConfig(t, h, "")
	if err := c.Up(specs[0].spec); err != nil {
		t.Fatal(err)
	}
	h.FailOn("DelRule", 1)
	if err := c.Down(); !errors.Is(err, netcfgtest.ErrInjected) {
		t.Fatalf("Down = %v", err)
	}
	if j := c.Journal(); len(j) != 1 || j[0].Kind != netcfg.ChangeRule {
		t.Fatalf("journal after failed Down = %v", j)
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
	if h.String() != before {
		t.Error("second Down did not finish")
	}
}

// TestJournalSurvivesRestart: a new process with the same journal file undoes the
// first one's changes, sysctls included; a process that adopts leftovers (no
// journal) removes them but cannot know old sysctls.
func TestJournalSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netcfg.journal")
	h := newHost()
	before := h.String()
	if err := newConfig(t, h, path).Up(specs[1].spec); err != nil {
		t.Fatal(err)
	}
	// Crash: the first Config is gone. A new one loads the journal.
	c2 := newConfig(t, h, path)
	if err := c2.Up(specs[1].spec); err != nil {
		t.Fatal(err)
	}
	if err := c2.Down(); err != nil {
		t.Fatal(err)
	}
	if got := h.String(); got != before {
		t.Fatalf("after restart and Down:\n%s", got)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal file left after a complete Down: %v", err)
	}
}

// TestCleanupAfterCrash: Up, then the process dies (no Down; the TUN vanishes with
// it). Cleanup with the journal file restores everything; without it, everything
// with our marks goes and only sysctls remain as they were left.
func TestCleanupAfterCrash(t *testing.T) {
	for _, withJournal := range []bool{true, false} {
		name := map[bool]string{true: "journal", false: "no-journal"}[withJournal]
		t.Run(name, func(t *testing.T) {
			h := newHost()
			path := filepath.Join(t.TempDir(), "netcfg.journal")
			spec := specs[1].spec
			spec.Table, spec.RulePriority = 0, 0
			if err := newConfig(t, h, path).Up(spec); err != nil {
				t.Fatal(err)
			}
			h.RemoveLink(dev) // the crash closes the TUN
			opts := netcfg.CleanupOptions{Device: dev, Logger: testLogger(t)}
			if withJournal {
				opts.JournalPath = path
			}
			if err := netcfg.Cleanup(h, opts); err != nil {
				t.Fatal(err)
			}
			want := netcfgtest.NewHost()
			if !withJournal {
				// Only a journal knows the sysctls' earlier values.
				want.SetSysctlValue("net/ipv4/ip_forward", "1")
				want.SetSysctlValue("net/ipv6/conf/all/forwarding", "1")
				want.SetSysctlValue("net/ipv6/conf/eth0/accept_ra", "2")
			}
			if got := h.String(); got != want.String() {
				t.Errorf("after Cleanup:\n--- got\n%s--- want\n%s", got, want.String())
			}
			// Cleanup of a clean host is a no-op.
			n := h.Changes()
			if err := netcfg.Cleanup(h, opts); err != nil || h.Changes() != n {
				t.Errorf("second Cleanup: %v, %d changes", err, h.Changes()-n)
			}
		})
	}
}

// TestAcceptRA: accept_ra=1 interfaces switch to 2 only when we are the ones turning
// IPv6 forwarding on.
func TestAcceptRA(t *testing.T) {
	spec := specs[3].spec
	h := newHost()
	h.SetSysctlValue("net/ipv6/conf/all/forwarding", "1") // the admin's own router
	c := newConfig(t, h, "")
	if err := c.Up(spec); err != nil {
		t.Fatal(err)
	}
	if v, _ := h.Sysctl("net/ipv6/conf/eth0/accept_ra"); strings.TrimSpace(v) != "1" {
		t.Errorf("accept_ra changed to %q although forwarding was already on", v)
	}
	if err := c.Down(); err != nil {
		t.Fatal(err)
	}
}

func TestSpecErrors(t *testing.T) {
	base := netcfg.Spec{Device: dev, KernelV4: pfx("10.77.9.1/24"), StackV4: addr("10.77.9.2")}
	for _, tc := range []struct {
		field string
		edit  func(*netcfg.Spec)
	}{
		{"Device", func(s *netcfg.Spec) { s.Device = "" }},
		{"Device", func(s *netcfg.Spec) { s.Device = "a-name-of-16-chr" }},
		{"Table", func(s *netcfg.Spec) { s.Table = 254 }},
		{"Table", func(s *netcfg.Spec) { s.Table = -1 }},
		{"RulePriority", func(s *netcfg.Spec) { s.RulePriority = 32766 }},
		{"KernelV4/KernelV6", func(s *netcfg.Spec) { s.KernelV4, s.StackV4 = netip.Prefix{}, netip.Addr{} }},
		{"MTU", func(s *netcfg.Spec) { s.MTU = 60 }},
		{"MTU", func(s *netcfg.Spec) { s.KernelV6 = pfx("fd00::1/64"); s.MTU = 1279 }},
		{"KernelV4", func(s *netcfg.Spec) { s.KernelV4 = pfx("fd00::1/64") }},
		{"KernelV4", func(s *netcfg.Spec) { s.KernelV4 = pfx("10.77.9.1/32") }},
		{"StackV4", func(s *netcfg.Spec) { s.StackV4 = addr("10.78.0.2") }},
		{"StackV4", func(s *netcfg.Spec) { s.StackV4 = addr("10.77.9.1") }},
		{"StackV4", func(s *netcfg.Spec) { s.StackV4 = addr("10.77.9.0") }},
		{"StackV6", func(s *netcfg.Spec) { s.StackV6 = addr("fd00::2") }},
		{"Include[0]", func(s *netcfg.Spec) { s.Include = pfxs("10.0.0.1/8") }},
		{"Include[0]", func(s *netcfg.Spec) { s.Include = pfxs("2001:db8::/32") }},
		{"Exclude[0]", func(s *netcfg.Spec) { s.Exclude = []netip.Prefix{{}} }},
		{"NAT", func(s *netcfg.Spec) { s.StackV4 = netip.Addr{}; s.NAT = true }},
		{"Services[0]", func(s *netcfg.Spec) { s.Services = []netcfg.ServiceSpec{{Addr: ap("10.1.1.1:0")}} }},
		{"Services[0]", func(s *netcfg.Spec) { s.Services = []netcfg.ServiceSpec{{Addr: ap("[fd00::1]:80")}} }},
		{"Services[0]", func(s *netcfg.Spec) { s.Services = []netcfg.ServiceSpec{{Addr: ap("127.0.0.1:80")}} }},
		{"Services[1]", func(s *netcfg.Spec) {
			s.Services = []netcfg.ServiceSpec{{Addr: ap("10.1.1.1:80"), HostPort: 80}, {Addr: ap("10.1.1.2:80"), HostPort: 80}}
		}},
	} {
		s := base
		tc.edit(&s)
		err := newConfig(t, newHost(), "").Up(s)
		var se *netcfg.SpecError
		if !errors.As(err, &se) || se.Field != tc.field {
			t.Errorf("%s: got %v, want a SpecError for %s", tc.field, err, tc.field)
		}
	}
	// A missing device is a clear error, and nothing is changed.
	h := netcfgtest.NewHost()
	if err := newConfig(t, h, "").Up(base); !errors.Is(err, netcfg.ErrNotExist) || h.Changes() != 0 {
		t.Errorf("Up without the device: %v, %d changes", err, h.Changes())
	}
}
