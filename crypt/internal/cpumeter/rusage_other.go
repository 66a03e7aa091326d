//go:build !linux

package cpumeter

import "time"

// processCPU is not wired up here: Meter reports nothing.
func processCPU() (time.Duration, bool) { return 0, false }
