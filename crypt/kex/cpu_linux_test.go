package kex

import (
	"syscall"
	"testing"
	"time"
)

// cpuMeter reports the process's CPU time (user + system, every goroutine:
// both hosts of an in-process handshake) per benchmark iteration as
// "cpu-µs/op". Unlike ns/op it does not count time the process waited for
// a CPU, so it stays meaningful on a loaded machine.
type cpuMeter struct{ start time.Duration }

func startCPU() cpuMeter { return cpuMeter{start: processCPU()} }

func (m cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-m.start)/float64(b.N)/1e3, "cpu-µs/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
