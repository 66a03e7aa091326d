package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// Env is what every setup is started with: the namespaces, the executables and
// a scratch directory of its own.
type Env struct {
	Topo *topo.Topology
	// Dir is a scratch directory for this setup (configs, certificates,
	// sockets); removed by the caller after Close. Short path (unix sockets).
	Dir string
	// Backend is where the benchmark's backend server listens in the server
	// namespace, on every address (it is bound to [::]:BackendPort, dual
	// stack): setups that relay on the server dial 127.0.0.1:BackendPort.
	BackendPort uint16
	// Executables.
	Tcpcryptd   string // the daemon under test
	WireGuardGo string // wireguard-go built from golang.zx2c4.com/wireguard
	Self        string // this binary (for the hidden helper commands)
	// DaemonCPUs is runtime.cpus for both tcpcryptd processes (0: the
	// daemon's default).
	DaemonCPUs int
	// IPv6: the setups carry the traffic over IPv6 (every address the
	// client dials, and the routed path between the sides).
	IPv6 bool
	Logf func(format string, args ...any)
}

// byFamily returns v4 or v6 by the address family of the run.
func byFamily[T any](e *Env, v4, v6 T) T {
	if e.IPv6 {
		return v6
	}
	return v4
}

// Setup is one way of carrying the benchmark's TCP traffic from the laptop
// namespace to the backend in the server namespace. Only one runs at a time.
type Setup interface {
	// Name is the short identifier used in the report ("kernel", ...).
	Name() string
	// Target is the address a client in the laptop namespace dials to reach
	// the backend through this setup.
	Target() netip.AddrPort
	// Procs are the processes whose CPU time and memory are the setup's cost
	// (none for kernel TCP).
	Procs() []Proc
	// Close stops the processes and removes what the setup added to the
	// namespaces, leaving them as it found them.
	Close() error
}

// tunDevice names a TUN device a setup's processes move packets through.
type tunDevice struct {
	ns   *topo.NS
	name string
}

// tunUser is a setup that moves packets through TUN devices (tcpcryptd,
// wireguard-go): the bench counts the packets crossing them, since each is
// a system call and a trip through the kernel's stack.
type tunUser interface {
	TUNs() []tunDevice
}

// Proc is one process of a setup, e.g. the laptop-side daemon.
type Proc struct {
	Role string // "laptop", "server"
	PID  int
}

// ProcStat is what /proc says about a process at one moment.
type ProcStat struct {
	CPUTicks uint64 // utime+stime, in clock ticks (USER_HZ)
	RSSBytes uint64 // VmRSS
}

// clockTicks is USER_HZ; Linux has reported 100 on every architecture we run.
const clockTicks = 100

// readProcStat reads utime+stime and VmRSS of pid.
func readProcStat(pid int) (ProcStat, error) {
	var s ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15 of the whole line, so 12 and 13 after it (1-based: 3 is
	// the state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	s.CPUTicks = ut + st
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, rest)
			}
			s.RSSBytes = kb << 10
		}
	}
	return s, nil
}
