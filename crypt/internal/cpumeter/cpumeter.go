// Package cpumeter reports a benchmark's process CPU time per iteration,
// for the key-exchange and handshake benchmarks of crypt/kex and
// crypt/tcpcrypt.
package cpumeter

import (
	"testing"
	"time"
)

// Meter reports the process's CPU time (user + system, every goroutine:
// both hosts of an in-process handshake) per benchmark iteration as
// "cpu-µs/op". Unlike ns/op it does not count time the process waited for
// a CPU, so it stays meaningful on a loaded machine. Where the platform
// gives no CPU time it reports nothing.
type Meter struct {
	start time.Duration
	ok    bool
}

// Start begins a measurement.
func Start() Meter {
	d, ok := processCPU()
	return Meter{start: d, ok: ok}
}

// Report adds the CPU time since Start, per iteration, to b's metrics.
func (m Meter) Report(b *testing.B) {
	if !m.ok || b.N <= 0 {
		return
	}
	if d, ok := processCPU(); ok {
		b.ReportMetric(float64(d-m.start)/float64(b.N)/1e3, "cpu-µs/op")
	}
}
