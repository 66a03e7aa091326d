package main

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// runtime.cpus sets GOMAXPROCS, 0 keeps Go's default, and a GOMAXPROCS
// environment variable wins.
func TestSetCPUs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
	for _, tc := range []struct {
		name    string
		cpus    int
		fromEnv bool
		preset  int // GOMAXPROCS before the call
		want    int
		log     string
	}{
		{"config", 1, false, 3, 1, "runtime.cpus"},
		{"zero keeps the default", 0, false, 3, 3, "Go default"},
		{"environment wins", 1, true, 3, 3, "environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.preset)
			var buf bytes.Buffer
			setCPUs(tc.cpus, tc.fromEnv, slog.New(slog.NewTextHandler(&buf, nil)))
			if got := runtime.GOMAXPROCS(0); got != tc.want {
				t.Errorf("GOMAXPROCS = %d, want %d", got, tc.want)
			}
			if !strings.Contains(buf.String(), tc.log) {
				t.Errorf("log %q does not say %q", buf.String(), tc.log)
			}
		})
	}
}
