package main

import (
	"bytes"
	"encoding/csv"
	"math"
	"slices"
	"testing"
	"time"
)

// The request/response figures keep exactly the names the issue asks for in
// results.csv, and their goals name figures and setups that exist.
func TestRRFigureNamesInCSV(t *testing.T) {
	o := options{rrDuration: time.Second}
	want := []string{"rr-1", "rr-32", "rr-1-p50", "rr-32-p99", "rr-cpu", "rr-tun-packets", "rr-syscalls"}
	var figs []Figure
	for _, f := range figureDefs(o) {
		if slices.Contains(want, f.ID) {
			f.Rows = []Row{{Setup: "tls13-relay", Samples: []float64{2}}, {Setup: "tcpcrypt-aes128gcm", Samples: []float64{3, math.NaN()}}}
			figs = append(figs, f)
		}
	}
	out, err := renderCSV(analyzeFigures(figs))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs[1:] {
		if !slices.Contains(got, r[0]) {
			got = append(got, r[0])
		}
		if r[0] == "rr-32" && r[1] == "tcpcrypt-aes128gcm" {
			// Ratio against tls13-relay, the second baseline: 3/2.
			if r[10] != "tls13-relay" || r[11] != "1.5" {
				t.Errorf("rr-32 ratio columns %q %q, want tls13-relay 1.5", r[10], r[11])
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("figures in results.csv %q, want %q", got, want)
	}
	for _, g := range rrGoals {
		if !slices.Contains(want, g.Figure) || !slices.Contains(rrSetups, g.Setup) || !slices.Contains(rrSetups, g.Ref) {
			t.Errorf("goal %q names a figure or setup that is not measured", g.text())
		}
	}
	for _, s := range rrSetups {
		if !slices.Contains(setupNames(), s) {
			t.Errorf("rr setup %q is not a setup", s)
		}
	}
}

func TestRRParsePerfRate(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      float64
		fail      bool
	}{
		{name: "one second", out: "6266,,raw_syscalls:sys_enter,1003839930,100.00,,\n", want: 6266 / 1.00383993},
		{name: "half second, leading noise", out: "\n# started on x\n500,,raw_syscalls:sys_enter,500000000,100.00,,\n", want: 1000},
		{name: "not counted", out: "<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n", fail: true},
		{name: "other event", out: "5,,cycles,1000,100.00,,\n", fail: true},
		{name: "zero time", out: "5,,raw_syscalls:sys_enter,0,100.00,,\n", fail: true},
		{name: "garbage", out: "x,,raw_syscalls:sys_enter,y\n", fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePerfRate(tc.out, "raw_syscalls:sys_enter")
			if tc.fail {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil || math.Abs(got-tc.want) > 1e-6 {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestRRPercentile(t *testing.T) {
	lat := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{0.5, 5}, {0.99, 10}, {0, 1}, {1, 10}, {0.1, 1}, {0.11, 2}} {
		if got := percentile(lat, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if lat[0] != 5 {
		t.Error("percentile sorted the caller's slice")
	}
	if !math.IsNaN(percentile(nil, 0.5)) {
		t.Error("percentile of nothing is not NaN")
	}
}
