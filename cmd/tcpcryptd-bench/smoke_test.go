package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// buildTool builds a main package of this module into dir.
func buildTool(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = "../.."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// smokeTools builds the bench and the daemon into a temporary directory and
// returns them, a wireguard-go stand-in that fails (the smoke runs leave
// wireguard-go out) and the directory for results.
func smokeTools(t *testing.T) (bench, daemon, wg, out string) {
	t.Helper()
	benchRequireRoot(t)
	dir := t.TempDir()
	bench = buildTool(t, dir, "tcpcryptd-bench", "./cmd/tcpcryptd-bench")
	daemon = buildTool(t, dir, "tcpcryptd", "./cmd/tcpcryptd")
	wg = filepath.Join(dir, "wireguard-go-unused")
	if err := os.WriteFile(wg, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bench, daemon, wg, filepath.Join(dir, "results")
}

// The tool end to end, as `make bench` runs it but tiny: every figure group
// with kernel TCP and tcpcryptd (plain relay, tcpcrypt resumed and fresh;
// the floods low enough for connections to get through on any daemon);
// results.json must hold a valid sample for each row the setups belong in,
// and values that follow from the set-up (the imposed delay, header bytes).
func TestBenchSmoke(t *testing.T) {
	bench, daemon, wg, out := smokeTools(t)
	const delay = 5 * time.Millisecond
	cmd := exec.Command(bench, "-tcpcryptd", daemon, "-wireguard-go", wg, "-out", out,
		"-setups", "kernel,relay-plain,tcpcrypt-aes128gcm,tcpcrypt-fresh",
		// Every group but loss, whose 5 % loss conditions alone take minutes.
		"-only", "bulk,connrate,memory,wire,ttfb,flood,rr",
		"-runs", "1", "-mem-runs", "1", "-bulk-duration", "300ms", "-rate-duration", "300ms",
		"-idle-conns", "200", "-ttfb-samples", "3", "-delay", delay.String(),
		"-rr-exchanges", "50", "-wire-duration", "200ms", "-rr-duration", "300ms",
		"-flood-runs", "1", "-flood-warmup", "500ms", "-flood-syn-rate", "200", "-flood-stall-rate", "5")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tcpcryptd-bench: %v\n%s", err, b)
	}
	for _, f := range []string{"report.md", "results.csv"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	rep := readResults(t, out)
	median := map[string]map[string]float64{}
	for _, f := range rep.Figures {
		median[f.ID] = map[string]float64{}
		for _, r := range f.Rows {
			if r.N < 1 || r.Failed > 0 || r.Median == nil {
				t.Errorf("%s/%s: %d valid samples (%s)", f.ID, r.Setup, r.N, r.Note)
				continue
			}
			median[f.ID][r.Setup] = *r.Median
		}
	}
	want := map[string][]string{
		"bulk-1-up":           {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"bulk-8-down":         {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"cpu-daemon":          {"relay-plain", "tcpcrypt-aes128gcm"},
		"connrate":            {"kernel", "relay-plain", "tcpcrypt-resumed", "tcpcrypt-fresh"},
		"ttfb":                {"kernel", "relay-plain", "tcpcrypt-resumed", "tcpcrypt-fresh"},
		"rss-per-conn-laptop": {"relay-plain", "tcpcrypt-aes128gcm"},
		"rss-per-conn-server": {"relay-plain", "tcpcrypt-aes128gcm"},
		"wire-bulk":           {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"wire-rr":             {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"flood-connrate":      {"relay-plain", "tcpcrypt-resumed", "tcpcrypt-fresh"},
		"flood-ratio":         {"relay-plain", "tcpcrypt-resumed", "tcpcrypt-fresh"},
		// Policy off: every connection of the plain relay ends plain.
		"flood-plain":    {"relay-plain"},
		"rr-1":           {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"rr-32":          {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"rr-1-p50":       {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"rr-32-p99":      {"kernel", "relay-plain", "tcpcrypt-aes128gcm"},
		"rr-cpu":         {"relay-plain", "tcpcrypt-aes128gcm"},
		"rr-tun-packets": {"relay-plain", "tcpcrypt-aes128gcm"},
	}
	if _, err := exec.LookPath("perf"); err == nil {
		want["rr-syscalls"] = []string{"relay-plain", "tcpcrypt-aes128gcm"}
	}
	for fig, setups := range want {
		for _, s := range setups {
			if v, ok := median[fig][s]; !ok || !(v > 0) {
				t.Errorf("%s/%s: no positive value (%v)", fig, s, median[fig])
			}
		}
	}
	// Lower bounds the imposed delay guarantees (only those: the rest is
	// processing time, which a loaded machine stretches): four one-way
	// delays (SYN, SYN-ACK, request, response), and two more for a fresh
	// key exchange (Init1, Init2), which a resumed connection skips.
	for s, n := range map[string]float64{"kernel": 4, "relay-plain": 4, "tcpcrypt-resumed": 4, "tcpcrypt-fresh": 6} {
		if v := median["ttfb"][s]; v < n*ms(delay) {
			t.Errorf("ttfb %s %.1f ms < %v x %v", s, v, n, delay)
		}
	}
	// Headers make the wire carry more than the data (1.04 on an idle
	// machine), not several times it. The bound leaves room for a loaded
	// machine: CI runs this beside other packages' namespace tests, and
	// one such run counted 1.24 for the plain relay (retransmissions are
	// the likely extra; that run's packets were not kept).
	for s, v := range median["wire-bulk"] {
		if v < 1 || v > 1.5 {
			t.Errorf("wire-bulk %s = %.3f bytes per byte", s, v)
		}
	}
	if len(rep.Goals) == 0 {
		t.Error("no goals evaluated")
	}
}

// readResults reads results.json from the directory out.
func readResults(t *testing.T, out string) jsonReport {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Bad command lines are refused with exit status 2 and a message.
func TestBenchUsage(t *testing.T) {
	dir := t.TempDir()
	bench := buildTool(t, dir, "tcpcryptd-bench", "./cmd/tcpcryptd-bench")
	for _, args := range [][]string{{"-runs", "0"}, {"-only", "nonsense"}, {"-setups", "ipsec"}, {"extra"}, {"-no-such-flag"}} {
		b, err := exec.Command(bench, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || len(strings.TrimSpace(string(b))) == 0 {
			t.Errorf("%v: %v, output %q; want exit 2 with a message", args, err, b)
		}
	}
	if b, err := exec.Command(bench, "-h").CombinedOutput(); err != nil || !strings.Contains(string(b), "usage: tcpcryptd-bench") {
		t.Errorf("-h: %v\n%s", err, b)
	}
}

// With -ipv6 the same setups carry the traffic over IPv6 and the report
// says so.
func TestBenchSmokeIPv6(t *testing.T) {
	bench, daemon, wg, out := smokeTools(t)
	cmd := exec.Command(bench, "-ipv6", "-tcpcryptd", daemon, "-wireguard-go", wg, "-out", out,
		"-setups", "kernel,relay-plain,tcpcrypt-aes128gcm", "-only", "bulk,connrate",
		"-runs", "1", "-bulk-duration", "300ms", "-rate-duration", "300ms")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tcpcryptd-bench -ipv6: %v\n%s", err, b)
	}
	rep := readResults(t, out)
	family := ""
	for _, p := range rep.Params {
		if p.Name == "address family" {
			family = p.Value
		}
	}
	if family != "IPv6" {
		t.Errorf("address family in the report = %q, want IPv6", family)
	}
	for _, f := range rep.Figures {
		if f.ID != "bulk-1-up" && f.ID != "connrate" {
			continue
		}
		if len(f.Rows) != 3 {
			t.Errorf("%s: %d rows, want 3", f.ID, len(f.Rows))
		}
		for _, r := range f.Rows {
			if r.N < 1 || r.Failed > 0 || r.Median == nil || !(*r.Median > 0) {
				t.Errorf("%s/%s: no valid sample (%s)", f.ID, r.Setup, r.Note)
			}
		}
	}
}
