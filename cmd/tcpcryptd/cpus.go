package main

import (
	"log/slog"
	"runtime"
)

// setCPUs applies runtime.cpus (config.Runtime.CPUs) as GOMAXPROCS, unless
// the GOMAXPROCS environment variable already chose (fromEnv), which wins
// as it does for any Go program. 0 keeps Go's default, every CPU.
func setCPUs(cpus int, fromEnv bool, log *slog.Logger) {
	switch {
	case fromEnv:
		log.Info("CPUs", "gomaxprocs", runtime.GOMAXPROCS(0), "from", "GOMAXPROCS environment variable")
	case cpus > 0:
		runtime.GOMAXPROCS(cpus)
		log.Info("CPUs", "gomaxprocs", cpus, "from", "runtime.cpus")
	default:
		log.Info("CPUs", "gomaxprocs", runtime.GOMAXPROCS(0), "from", "Go default (runtime.cpus = 0)")
	}
}
