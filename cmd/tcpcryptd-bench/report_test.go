package main

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var nanRun = math.NaN()

func TestReportComputeRowStats(t *testing.T) {
	for _, tc := range []struct {
		name                string
		in                  []float64
		n, failed           int
		median, lo, hi      float64
		wantNaNMedianMinMax bool
	}{
		{name: "odd", in: []float64{5, 1, 3}, n: 3, median: 3, lo: 1, hi: 5},
		{name: "even", in: []float64{4, 1, 3, 2}, n: 4, median: 2.5, lo: 1, hi: 4},
		{name: "single", in: []float64{7}, n: 1, median: 7, lo: 7, hi: 7},
		{name: "nanRun excluded", in: []float64{nanRun, 10, 30, nanRun, 20}, n: 3, failed: 2, median: 20, lo: 10, hi: 30},
		{name: "nanRun makes even", in: []float64{1, nanRun, 2}, n: 2, failed: 1, median: 1.5, lo: 1, hi: 2},
		{name: "inf excluded", in: []float64{math.Inf(1), 2}, n: 1, failed: 1, median: 2, lo: 2, hi: 2},
		{name: "all failed", in: []float64{nanRun, nanRun}, failed: 2, wantNaNMedianMinMax: true},
		{name: "empty", in: nil, wantNaNMedianMinMax: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := append([]float64(nil), tc.in...)
			st := computeRowStats(tc.in)
			if st.N != tc.n || st.Failed != tc.failed {
				t.Fatalf("n=%d failed=%d, want %d %d", st.N, st.Failed, tc.n, tc.failed)
			}
			if tc.wantNaNMedianMinMax {
				if !math.IsNaN(st.Median) || !math.IsNaN(st.Min) || !math.IsNaN(st.Max) {
					t.Fatalf("got %+v, want NaN statistics", st)
				}
				return
			}
			if st.Median != tc.median || st.Min != tc.lo || st.Max != tc.hi {
				t.Fatalf("got %+v, want median %v min %v max %v", st, tc.median, tc.lo, tc.hi)
			}
			// Sorting must not reorder the caller's samples (they are per run).
			for i := range orig {
				if !(orig[i] == tc.in[i] || math.IsNaN(orig[i]) && math.IsNaN(tc.in[i])) {
					t.Fatalf("input modified: %v -> %v", orig, tc.in)
				}
			}
		})
	}
}

func TestReportFormatValue(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{1234, "1,234"},
		{1234.6, "1,235"},
		{999.4, "999"},
		{999.6, "1,000"},
		{1234567, "1,234,567"},
		{123.4, "123"},
		{12.34, "12.3"},
		{12, "12.0"},
		{1, "1.00"},
		{9.996, "10.0"},
		{99.96, "100"},
		{0.1234, "0.123"},
		{0.001, "0.00100"},
		{0.0012345, "0.00123"},
		{-12.34, "-12.3"},
		{-4321, "-4,321"},
		{nanRun, "—"},
		{math.Inf(1), "∞"},
	} {
		if got := formatValue(tc.in); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReportFormatRatio(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0.93, "0.93×"},
		{0.9349, "0.93×"},
		{2.0833, "2.08×"},
		{1, "1.00×"},
		{nanRun, "—"},
	} {
		if got := formatRatio(tc.in); got != tc.want {
			t.Errorf("formatRatio(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReportRatios(t *testing.T) {
	f := Figure{
		ID: "x", Unit: "MB/s", Baselines: []string{"kernel", "wireguard-go", "absent"},
		Rows: []Row{
			{Setup: "kernel", Samples: []float64{100, 100, 100}},
			{Setup: "wireguard-go", Samples: []float64{0, 0}},
			{Setup: "tcpcrypt", Samples: []float64{93, nanRun, 93}},
			{Setup: "broken", Samples: []float64{nanRun}},
		},
	}
	v := analyzeFigures([]Figure{f})[0]
	want := [][]string{
		{"—", "—", "—"},     // itself; zero baseline; missing
		{"0.00×", "—", "—"}, // 0/100; itself; missing
		{"0.93×", "—", "—"}, // NaN excluded from median; zero baseline; missing
		{"—", "—", "—"},     // no valid samples
	}
	for i := range f.Rows {
		for j := range f.Baselines {
			if got := formatRatio(v.Ratios[i][j]); got != want[i][j] {
				t.Errorf("row %s × %s = %q, want %q", f.Rows[i].Setup, f.Baselines[j], got, want[i][j])
			}
		}
	}
}

// medianFigure builds a figure whose rows have the given medians (one sample each).
func medianFigure(id, unit string, medians map[string]float64) Figure {
	f := Figure{ID: id, Title: id, Unit: unit}
	for s, m := range medians {
		f.Rows = append(f.Rows, Row{Setup: s, Samples: []float64{m}})
	}
	return f
}

func TestReportEvaluateGoalSpecs(t *testing.T) {
	specs := []goalSpec{
		{Figure: "bulk", Setup: "tc", Ref: "wg", Factor: 2},                               // met
		{Figure: "bulk", Setup: "tc", Ref: "relay", Factor: 0.85},                         // missed
		{Figure: "bulk", Setup: "tc", Ref: "nobody", Factor: 2},                           // ref row missing
		{Figure: "bulk", Setup: "dead", Ref: "wg", Factor: 2},                             // row failed
		{Figure: "nofig", Setup: "tc", Ref: "wg", Factor: 2},                              // figure missing
		{Figure: "ttfb", Setup: "res", Ref: "kernel", Factor: 1, Offset: 1, AtMost: true}, // met
		{Figure: "ttfb", Setup: "fresh", Ref: "kernel", Factor: 1, Offset: 11, AtMost: true},
		{Figure: "rss", Setup: "tc", Offset: 40, AtMost: true}, // absolute, missed
	}
	bulk := medianFigure("bulk", "MB/s", map[string]float64{"tc": 412, "wg": 198, "relay": 500})
	bulk.Rows = append(bulk.Rows, Row{Setup: "dead", Samples: []float64{nanRun, nanRun}})
	figs := []Figure{
		bulk,
		medianFigure("ttfb", "ms", map[string]float64{"kernel": 10.2, "res": 10.9, "fresh": 21.5}),
		medianFigure("rss", "KiB", map[string]float64{"tc": 41}),
	}
	got := evaluateGoalSpecs(specs, figs)
	want := []struct {
		known, met bool
		detail     string
	}{
		{true, true, "412 vs 2×198 = 396 MB/s: 2.08×"},
		{true, false, "412 vs 0.85×500 = 425 MB/s: 0.82×"},
		{false, false, "no nobody row"},
		{false, false, "dead failed in every run"},
		{false, false, "figure nofig not measured"},
		{true, true, "10.9 vs 10.2 + 1 = 11.2 ms: +0.700 ms"},
		{true, false, "21.5 vs 10.2 + 11 = 21.2 ms: +11.3 ms"},
		{true, false, "41.0 vs 40.0 KiB"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d goals, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Known != w.known || g.Met != w.met || g.Detail != w.detail {
			t.Errorf("goal %d (%s): known=%v met=%v %q, want %v %v %q", i, g.Text, g.Known, g.Met, g.Detail, w.known, w.met, w.detail)
		}
	}
	if r := got[2].result(); r != "not measured" {
		t.Errorf("unknown goal result %q", r)
	}
	if r := got[1].result(); r != "missed" {
		t.Errorf("missed goal result %q", r)
	}
}

func TestReportBenchGoals(t *testing.T) {
	goals := evaluateGoals(nil)
	// 4 bulk figures × 2 ciphers × 2 refs + 2 connrate + 4 ttfb + 2 rss
	// + 2 flood figures × 2 setups, and the request/response goals (rr.go).
	if want := 28 + len(rrGoals); len(goals) != want {
		t.Fatalf("%d goals, want %d", len(goals), want)
	}
	for _, g := range goals {
		if g.Known || g.result() != "not measured" {
			t.Errorf("goal %q known without figures", g.Text)
		}
	}
	wantTexts := []string{
		"bulk-1-up: tcpcrypt-aes128gcm ≥ 2× wireguard-go",
		"bulk-8-down: tcpcrypt-chacha20 ≥ 0.85× relay-plain",
		"connrate: tcpcrypt-fresh ≥ 3× tls13-relay",
		"connrate: tcpcrypt-resumed ≥ 0.8× relay-plain",
		"ttfb: tcpcrypt-resumed ≤ kernel + 1 ms (equal to plain TCP within 1 ms)",
		"ttfb: tcpcrypt-fresh ≤ kernel + 11 ms (one extra one-way delay of 10 ms, 1 ms tolerance)",
		"rss-per-conn-server: tcpcrypt-aes128gcm ≤ 40 KiB",
		"ttfb: tcpcrypt-fresh ≤ relay-plain + 21 ms (the RFC 8548 minimum: one extra round trip of 2×10 ms for Init1/Init2)",
		"flood-ratio: tcpcrypt-resumed ≥ 0.8 (the floods cost at most a fifth of the connection rate)",
		"flood-plain: every run of tcpcrypt-fresh ≤ 0 conn (no flood turns a connection that would have been encrypted into plain TCP)",
	}
	texts := map[string]bool{}
	for _, g := range goals {
		texts[g.Text] = true
	}
	for _, w := range wantTexts {
		if !texts[w] {
			t.Errorf("missing goal %q", w)
		}
	}

	// The ttfb tolerance is inclusive and uses medians.
	figs := []Figure{{ID: "ttfb", Unit: "ms", Rows: []Row{
		{Setup: "kernel", Samples: []float64{10, 10, 50}},
		{Setup: "tcpcrypt-resumed", Samples: []float64{11, 11, nanRun}},
		{Setup: "tcpcrypt-fresh", Samples: []float64{21, 20.9}}, // 20.95 ≤ 10 + 11
		{Setup: "relay-plain", Samples: []float64{10.5}},
	}}}
	for _, g := range evaluateGoals(figs) {
		if !strings.HasPrefix(g.Text, "ttfb:") {
			continue
		}
		if !g.Known || !g.Met {
			t.Errorf("%s: known=%v met=%v (%s)", g.Text, g.Known, g.Met, g.Detail)
		}
	}
}

// The flood goals: the ratio is judged by its median, the plain count by
// its worst run (one downgraded connection in any run misses it); failed
// runs are left out of both.
func TestReportFloodGoals(t *testing.T) {
	figs := []Figure{
		{ID: "flood-ratio", Unit: "×", Rows: []Row{
			{Setup: "tcpcrypt-resumed", Samples: []float64{0.9, 0.5, 0.85}},
			{Setup: "tcpcrypt-fresh", Samples: []float64{0.7, 0.79, 0.95}},
		}},
		{ID: "flood-plain", Unit: "conn", Rows: []Row{
			{Setup: "tcpcrypt-resumed", Samples: []float64{0, 0, nanRun}},
			{Setup: "tcpcrypt-fresh", Samples: []float64{0, 3, 0}},
		}},
	}
	want := map[string]bool{
		"flood-ratio: tcpcrypt-resumed":              true,  // median 0.85
		"flood-ratio: tcpcrypt-fresh":                false, // median 0.79
		"flood-plain: every run of tcpcrypt-resumed": true,
		"flood-plain: every run of tcpcrypt-fresh":   false, // median 0, worst 3
	}
	n := 0
	for _, g := range evaluateGoals(figs) {
		head, _, _ := strings.Cut(g.Text, " ≥")
		head, _, _ = strings.Cut(head, " ≤")
		met, ok := want[head]
		if !ok {
			continue
		}
		n++
		if !g.Known || g.Met != met {
			t.Errorf("%s: known=%v met=%v, want met=%v (%s)", g.Text, g.Known, g.Met, met, g.Detail)
		}
	}
	if n != len(want) {
		t.Errorf("%d flood goals evaluated, want %d", n, len(want))
	}
}

func syntheticReport() *Report {
	return &Report{
		Started:  time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Elapsed:  12*time.Minute + 34500*time.Millisecond,
		Machine:  Machine{CPUModel: "Test CPU", CPUs: 8, MemTotal: 16 << 30, Kernel: "6.1.0", OS: "Test OS"},
		Versions: map[string]string{"go": "go1.26.8", "gvisor": "v0.0.0-x"},
		Commands: []string{"tcpcryptd-bench -runs 3", "tcpcryptd -config a|b"},
		Params:   [][2]string{{"runs", "3"}, {"bulk duration", "3s"}},
		Figures: []Figure{
			{
				ID: "bulk-1-up", Title: "Bulk throughput, 1 stream, laptop to server", Unit: "MB/s",
				HigherIsBetter: true, Baselines: []string{"kernel", "wireguard-go"},
				Method: "iperf-like transfer.",
				Rows: []Row{
					{Setup: "kernel", Samples: []float64{1000, 1100, 1200}},
					{Setup: "wireguard-go", Samples: []float64{198, 200, nanRun}},
					{Setup: "tcpcrypt-aes128gcm", Samples: []float64{412, 400, 420}, Note: "no offload"},
					{Setup: "tcpcrypt-chacha20", Samples: []float64{nanRun, nanRun, nanRun}},
				},
			},
			{
				ID: "ttfb", Title: "Time to first byte", Unit: "ms", Baselines: []string{"kernel"},
				Method: "Connect and read one byte.",
				Rows: []Row{
					{Setup: "kernel", Samples: []float64{20.1, 20.3}},
					{Setup: "tcpcrypt-resumed", Samples: []float64{20.6, 20.8}},
				},
			},
		},
		Notes: []string{"profile: AES-GCM dominates", "second note"},
	}
}

func TestReportWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir") // must be created
	r := syntheticReport()
	if err := writeReport(dir, r); err != nil {
		t.Fatal(err)
	}

	// results.json round-trips into the same Report and carries the stats.
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j jsonReport
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	back, err := j.report()
	if err != nil {
		t.Fatal(err)
	}
	if !back.Started.Equal(r.Started) {
		t.Errorf("started %v, want %v", back.Started, r.Started)
	}
	back.Started = r.Started
	// NaN != NaN, so compare samples separately.
	for fi := range r.Figures {
		for ri := range r.Figures[fi].Rows {
			got, want := back.Figures[fi].Rows[ri].Samples, r.Figures[fi].Rows[ri].Samples
			if len(got) != len(want) {
				t.Fatalf("fig %d row %d: %v, want %v", fi, ri, got, want)
			}
			for k := range want {
				if !(got[k] == want[k] || math.IsNaN(got[k]) && math.IsNaN(want[k])) {
					t.Errorf("fig %d row %d: %v, want %v", fi, ri, got, want)
				}
			}
			back.Figures[fi].Rows[ri].Samples = nil
		}
	}
	wantR := *r
	wantR.Figures = append([]Figure(nil), r.Figures...)
	for fi := range wantR.Figures {
		rows := append([]Row(nil), wantR.Figures[fi].Rows...)
		for ri := range rows {
			rows[ri].Samples = nil
		}
		wantR.Figures[fi].Rows = rows
	}
	if !reflect.DeepEqual(back, wantR) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, wantR)
	}
	wg := j.Figures[0].Rows[1]
	if wg.N != 2 || wg.Failed != 1 || *wg.Median != 199 || *wg.Min != 198 || *wg.Max != 200 || wg.Samples[2] != nil {
		t.Errorf("wireguard-go row in JSON: %+v", wg)
	}
	aes := j.Figures[0].Rows[2]
	if aes.Ratios[0].Baseline != "kernel" || math.Abs(*aes.Ratios[0].Ratio-412.0/1100) > 1e-12 ||
		aes.Ratios[1].Baseline != "wireguard-go" || math.Abs(*aes.Ratios[1].Ratio-412.0/199) > 1e-12 {
		t.Errorf("aes ratios: %+v %+v", aes.Ratios[0], aes.Ratios[1])
	}
	if k := j.Figures[0].Rows[0]; k.Ratios[0].Ratio != nil {
		t.Errorf("kernel × kernel should be null, got %v", *k.Ratios[0].Ratio)
	}
	if c := j.Figures[0].Rows[3]; c.N != 0 || c.Median != nil || c.Min != nil || c.Max != nil {
		t.Errorf("failed row: %+v", c)
	}
	if len(j.Goals) != len(benchGoals) {
		t.Errorf("%d goals in JSON, want %d", len(j.Goals), len(benchGoals))
	}

	// results.csv: header and one row per (figure, setup).
	f, err := os.Open(filepath.Join(dir, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// Expected floats are computed the same way rather than hand-rounded.
	// (Through variables: constant expressions would be exact, not float64.)
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	k1, k2, r1, r2, wg1, a1 := 20.1, 20.3, 20.6, 20.8, 199.0, 412.0
	wantCSV := [][]string{
		{"figure", "setup", "unit", "n", "median", "min", "max", "samples", "ratio1_baseline", "ratio1", "ratio2_baseline", "ratio2"},
		{"bulk-1-up", "kernel", "MB/s", "3", "1100", "1000", "1200", "1000;1100;1200", "kernel", "", "wireguard-go", g(1100 / wg1)},
		{"bulk-1-up", "wireguard-go", "MB/s", "2", "199", "198", "200", "198;200;NaN", "kernel", g(wg1 / 1100), "wireguard-go", ""},
		{"bulk-1-up", "tcpcrypt-aes128gcm", "MB/s", "3", "412", "400", "420", "412;400;420", "kernel", g(a1 / 1100), "wireguard-go", g(a1 / wg1)},
		{"bulk-1-up", "tcpcrypt-chacha20", "MB/s", "0", "", "", "", "NaN;NaN;NaN", "kernel", "", "wireguard-go", ""},
		{"ttfb", "kernel", "ms", "2", g((k1 + k2) / 2), "20.1", "20.3", "20.1;20.3", "kernel", "", "", ""},
		{"ttfb", "tcpcrypt-resumed", "ms", "2", g((r1 + r2) / 2), "20.6", "20.8", "20.6;20.8", "kernel", g(((r1 + r2) / 2) / ((k1 + k2) / 2)), "", ""},
	}
	if !reflect.DeepEqual(recs, wantCSV) {
		t.Errorf("csv:\n got %q\nwant %q", recs, wantCSV)
	}

	// report.md: the pieces a reader relies on.
	b, err = os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"# tcpcryptd side-by-side benchmark\n",
		"- Date: 2026-03-04 05:06:07 UTC\n",
		"- Elapsed: 12m35s\n",
		"- CPU: Test CPU (8 CPUs)\n",
		"- Memory: 16.0 GiB\n",
		"| go | go1.26.8 |\n",
		"| bulk duration | 3s |\n",
		"```\ntcpcryptd-bench -runs 3\ntcpcryptd -config a|b\n```\n",
		"### Bulk throughput, 1 stream, laptop to server\n",
		"Method: iperf-like transfer. (`bulk-1-up`, higher is better.)\n",
		"| setup | median (MB/s) | spread (min–max) | runs | × kernel | × wireguard-go | note |\n",
		"| kernel | 1,100 | 1,000–1,200 | 3 | — | 5.53× | |\n",
		"| wireguard-go | 199 | 198–200 | 2 | 0.18× | — | 1 of 3 runs failed |\n",
		"| tcpcrypt-aes128gcm | 412 | 400–420 | 3 | 0.37× | 2.07× | no offload |\n",
		"| tcpcrypt-chacha20 | failed | — | 0 | — | — | 3 of 3 runs failed |\n",
		"| setup | median (ms) | spread (min–max) | runs | × kernel | note |\n",
		"| tcpcrypt-resumed | 20.7 | 20.6–20.8 | 2 | 1.02× | |\n",
		"## Goals\n\n| goal | result | measured |\n",
		"| bulk-1-up: tcpcrypt-aes128gcm ≥ 2× wireguard-go | met | 412 vs 2×199 = 398 MB/s: 2.07× |\n",
		"| bulk-1-up: tcpcrypt-chacha20 ≥ 2× wireguard-go | not measured | tcpcrypt-chacha20 failed in every run |\n",
		"| bulk-1-down: tcpcrypt-aes128gcm ≥ 2× wireguard-go | not measured | figure bulk-1-down not measured |\n",
		"| ttfb: tcpcrypt-resumed ≤ kernel + 1 ms (equal to plain TCP within 1 ms) | met | 20.7 vs 20.2 + 1 = 21.2 ms: +0.500 ms |\n",
		"## Notes\n\n- profile: AES-GCM dominates\n- second note\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report.md:\n%s", md)
	}
}

func TestReportCodeFence(t *testing.T) {
	if got := codeFence("a ``` b"); got != "````" {
		t.Errorf("codeFence = %q", got)
	}
	if got := codeFence("plain"); got != "```" {
		t.Errorf("codeFence = %q", got)
	}
}

func TestMachineParsers(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM)  i7-8650U CPU @ 1.90GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got := parseCPUModel(cpuinfo); got != "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz" {
		t.Errorf("parseCPUModel = %q", got)
	}
	if got := parseCPUModel("processor\t: 0\nHardware\t: BCM2835\n"); got != "BCM2835" {
		t.Errorf("parseCPUModel(arm) = %q", got)
	}
	if got := parseMemTotal("MemTotal:       16318612 kB\nMemFree: 1 kB\n"); got != 16318612*1024 {
		t.Errorf("parseMemTotal = %d", got)
	}
	if got := parseMemTotal("nothing"); got != 0 {
		t.Errorf("parseMemTotal(nothing) = %d", got)
	}
	osr := "NAME=\"Debian GNU/Linux\"\n# PRETTY_NAME=wrong\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n"
	if got := parseOSPrettyName(osr); got != "Debian GNU/Linux 13 (trixie)" {
		t.Errorf("parseOSPrettyName = %q", got)
	}
	if got := parseOSPrettyName("NAME='Alpine'\n"); got != "Alpine" {
		t.Errorf("parseOSPrettyName(NAME only) = %q", got)
	}
}

func TestMachineDescribeAndVersions(t *testing.T) {
	m := describeMachine()
	if m.CPUs != runtime.NumCPU() || m.CPUModel == "" {
		t.Errorf("describeMachine = %+v", m)
	}
	if runtime.GOOS == "linux" && (m.Kernel == "" || m.MemTotal == 0) {
		t.Errorf("describeMachine on linux = %+v", m)
	}
	v := versions(map[string]string{"go": "override", "tcpcryptd": "extra", "x/crypto": ""})
	if v["go"] != "override" || v["tcpcryptd"] != "extra" {
		t.Errorf("extra not merged: %v", v)
	}
	// go test runs in the package directory inside the checkout, so the
	// module versions are found (from build info or go.mod).
	for _, k := range []string{"gvisor", "wireguard-go", "x/crypto"} {
		if v[k] == "" {
			t.Errorf("versions lacks %s: %v", k, v)
		}
	}
	t.Logf("machine %+v versions %v", m, v)
}

func TestMachineGoModRequires(t *testing.T) {
	p := filepath.Join(t.TempDir(), "go.mod")
	src := "module example.com/x\n\ngo 1.26\n\nrequire a.com/b v1.2.3 // indirect\n\nrequire (\n\tc.com/d v0.1.0\n\te.com/f v2.0.0+incompatible // indirect\n)\n\ntool c.com/d\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.com/b": "v1.2.3", "c.com/d": "v0.1.0", "e.com/f": "v2.0.0+incompatible"}
	if got := goModRequires(p); !reflect.DeepEqual(got, want) {
		t.Errorf("goModRequires = %v", got)
	}
	if got := goModModule(p); got != "example.com/x" {
		t.Errorf("goModModule = %q", got)
	}
}
