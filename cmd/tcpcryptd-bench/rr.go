package main

// The request/response figures (-only rr): transactions per second and
// latency of small requests answered by small responses, like netperf's
// TCP_RR, with what each transaction costs the setup's processes in CPU
// time, TUN packets and system calls.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// opTransact is the backend operation of the request/response figures: the
// first request's first byte; then a rrResponse-byte answer to every
// rrRequest-byte request until EOF.
const opTransact = 'T'

// Sizes of one transaction (netperf TCP_RR with -r 64,1024).
const (
	rrRequest  = 64
	rrResponse = 1024
)

// rrSetups are the setups measured by the request/response figures.
var rrSetups = []string{"kernel", "relay-plain", "tcpcrypt-aes128gcm", "tcpcrypt-chacha20", "wireguard-go", "tls13-relay"}

// rrConns are the concurrent connections of the two throughput figures.
const rrConnsHigh = 32

// rrFigureDefs are the request/response tables, appended to figureDefs.
func rrFigureDefs(o options) []Figure {
	tx := fmt.Sprintf("each transaction a %d-byte request answered by a %d-byte response on a connection set up before the clock starts; %v per run", rrRequest, rrResponse, o.rrDuration)
	base := []string{"kernel", "tls13-relay", "wireguard-go"}
	cost := []string{"tls13-relay", "wireguard-go", "relay-plain"}
	return []Figure{
		{ID: "rr-1", Title: "Request/response transactions per second, 1 connection", Unit: "tx/s", HigherIsBetter: true, Baselines: base,
			Method: "One connection making transactions back to back, " + tx + "."},
		{ID: "rr-32", Title: fmt.Sprintf("Request/response transactions per second, %d connections", rrConnsHigh), Unit: "tx/s", HigherIsBetter: true, Baselines: base,
			Method: fmt.Sprintf("%d connections each making transactions back to back, %s.", rrConnsHigh, tx)},
		{ID: "rr-1-p50", Title: "Request/response latency, 1 connection, median", Unit: "ms", Baselines: base,
			Method: "Median over all transactions of the rr-1 run, from the request's write to the response's last byte."},
		{ID: "rr-32-p99", Title: fmt.Sprintf("Request/response latency, %d connections, 99th percentile", rrConnsHigh), Unit: "ms", Baselines: base,
			Method: "99th percentile over all transactions of the rr-32 run, from the request's write to the response's last byte."},
		{ID: "rr-cpu", Title: "CPU time of the setup's processes per transaction", Unit: "µs", Baselines: cost,
			Method: "user+sys time of the setup's processes (both sides) during each rr-32 run, divided by its transactions; kernel TCP has no process. The syscall counter below runs at the same time and adds a little sys time per system call."},
		{ID: "rr-tun-packets", Title: "TUN device packets per transaction", Unit: "pkt/tx", Baselines: []string{"wireguard-go", "relay-plain"},
			Method: "Packets the setup's processes read from and wrote to their TUN devices (both sides, both directions) during each rr-32 run, per transaction. Each is a system call and a trip through the kernel's stack."},
		{ID: "rr-syscalls", Title: "System calls of the setup's processes per transaction", Unit: "calls/tx", Baselines: cost,
			Method: "System calls of every thread of the setup's processes (perf stat -e raw_syscalls:sys_enter -p, both sides), in the middle of each rr-32 run, as a rate divided by the run's transaction rate; all calls count (reads and writes of sockets and TUN devices, epoll, futex, nanosleep)."},
	}
}

// rrGoals are the targets for the request/response figures, checked
// like the others (benchGoals).
var rrGoals = []goalSpec{
	{Figure: "rr-32", Setup: "tcpcrypt-aes128gcm", Ref: "tls13-relay", Factor: 1.5},
	{Figure: "rr-32", Setup: "tcpcrypt-aes128gcm", Ref: "wireguard-go", Factor: 1},
	{Figure: "rr-1-p50", Setup: "tcpcrypt-aes128gcm", Ref: "wireguard-go", Factor: 1, AtMost: true, Unit: "ms"},
	{Figure: "rr-cpu", Setup: "tcpcrypt-aes128gcm", Ref: "tls13-relay", Factor: 1, AtMost: true, Unit: "µs"},
}

func init() { benchGoals = append(benchGoals, rrGoals...) }

// serveTransactions is the backend's side of opTransact; the operation byte
// was the first byte of the first request.
func serveTransactions(c net.Conn) {
	req := make([]byte, rrRequest)
	resp := make([]byte, rrResponse)
	fillPattern(resp)
	if _, err := io.ReadFull(c, req[1:]); err != nil {
		return
	}
	for {
		if _, err := c.Write(resp); err != nil {
			return
		}
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
	}
}

// rrResult is one request/response run.
type rrResult struct {
	N       int64         // transactions completed
	Elapsed time.Duration // from the start signal to the last worker's end
	Lat     []float64     // every transaction's latency, ms, unsorted
}

func (r rrResult) rate() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// percentile of the latencies (p in [0,1]), nearest rank; NaN without any.
func percentile(lat []float64, p float64) float64 {
	if len(lat) == 0 {
		return math.NaN()
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// transactions opens conns connections, makes one transaction on each (the
// one that names the operation, not timed), then has all of them make
// transactions back to back for d. started is called once every connection
// is ready, just before the clock starts (counters are read there).
func (c *client) transactions(ctx context.Context, target netip.AddrPort, conns int, d time.Duration, started func()) (rrResult, error) {
	cs := make([]*net.TCPConn, 0, conns)
	defer func() {
		for _, cn := range cs {
			cn.Close()
		}
	}()
	req := make([]byte, rrRequest)
	req[0] = opTransact
	resp := make([]byte, rrResponse)
	for range conns {
		cn, err := c.dial(ctx, target)
		if err != nil {
			return rrResult{}, err
		}
		cs = append(cs, cn)
		cn.SetDeadline(time.Now().Add(d + 60*time.Second)) // never hang
		if _, err := cn.Write(req); err != nil {
			return rrResult{}, err
		}
		if _, err := io.ReadFull(cn, resp); err != nil {
			return rrResult{}, fmt.Errorf("first response: %w", err)
		}
	}
	if started != nil {
		started()
	}
	var n atomic.Int64
	lats := make([][]float64, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i, cn := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, rrRequest)
			resp := make([]byte, rrResponse)
			lat := make([]float64, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if _, err := cn.Write(req); err != nil {
					errs[i] = err
					break
				}
				if _, err := io.ReadFull(cn, resp); err != nil {
					errs[i] = err
					break
				}
				lat = append(lat, float64(time.Since(t0))/float64(time.Millisecond))
				n.Add(1)
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	r := rrResult{N: n.Load(), Elapsed: time.Since(start)}
	for _, l := range lats {
		r.Lat = append(r.Lat, l...)
	}
	if r.N == 0 && ctx.Err() == nil {
		errs = append(errs, errors.New("no transaction completed"))
	}
	return r, errors.Join(errs...)
}

// syscallCounter counts the system calls of a set of processes with perf
// stat (a tracepoint counter: no ptrace, so the processes run at nearly
// full speed).
type syscallCounter struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// errNoPerf: perf is not installed, so rr-syscalls is not measured (a note,
// not a failed run).
var errNoPerf = errors.New("perf not installed: system calls not counted")

// startSyscallCounter counts the system calls of pids for d; nil without
// processes.
func startSyscallCounter(pids []int, d time.Duration) (*syscallCounter, error) {
	if len(pids) == 0 {
		return nil, nil
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, errNoPerf
	}
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	sc := &syscallCounter{}
	sc.cmd = exec.Command(perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", strings.Join(ps, ","),
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	sc.cmd.Stderr = &sc.out
	if err := sc.cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf stat: %w", err)
	}
	return sc, nil
}

// wait returns the counted system calls per second of counting.
func (sc *syscallCounter) wait() (float64, error) {
	if err := sc.cmd.Wait(); err != nil {
		return 0, fmt.Errorf("perf stat: %w: %s", err, strings.TrimSpace(sc.out.String()))
	}
	return parsePerfRate(sc.out.String(), "raw_syscalls:sys_enter")
}

// parsePerfRate reads event's count and enabled time from perf stat's CSV
// output (-x,: count,unit,event,time enabled in ns,percent,...) and returns
// events per second.
func parsePerfRate(out, event string) (float64, error) {
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 4 || f[2] != event {
			continue
		}
		if strings.HasPrefix(f[0], "<not") {
			return 0, fmt.Errorf("perf stat: %s %s", event, f[0])
		}
		n, err1 := strconv.ParseFloat(f[0], 64)
		ns, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil || ns <= 0 {
			return 0, fmt.Errorf("perf stat: bad line %q", strings.TrimSpace(line))
		}
		return n / (ns / 1e9), nil
	}
	return 0, fmt.Errorf("perf stat: no %s in %q", event, strings.TrimSpace(out))
}

func pidsOf(procs []Proc) []int {
	var ps []int
	for _, p := range procs {
		ps = append(ps, p.PID)
	}
	return ps
}

// phaseRR measures the request/response figures with the router forwarding
// in the kernel, in rounds like the bulk figures (run r of every setup
// before run r+1 of any).
func (b *bench) phaseRR(ctx context.Context) error {
	if !b.group("rr") {
		return nil
	}
	tp, be, err := b.newTopology(false)
	if err != nil {
		return err
	}
	defer tp.Close()
	defer be.stop(procStopGrace)
	want := func(spec setupSpec) bool { return slices.Contains(rrSetups, spec.name) }
	for r := range b.o.runs {
		b.eachSetup(ctx, tp, fmt.Sprintf("request/response, round %d of %d", r+1, b.o.runs), want,
			func(spec setupSpec, s Setup, c *client) error {
				b.measureRR(ctx, spec, s, c, r)
				return nil
			})
	}
	return ctx.Err()
}

// measureRR makes run r (from 0) of the request/response figures on s.
func (b *bench) measureRR(ctx context.Context, spec setupSpec, s Setup, c *client, r int) {
	d := b.o.rrDuration
	res, err := c.transactions(ctx, s.Target(), 1, d, nil)
	if err != nil {
		b.failure(fmt.Sprintf("%s rr-1 run %d", spec.name, r+1), err)
		b.add("rr-1", spec.name, math.NaN())
		b.add("rr-1-p50", spec.name, math.NaN())
	} else {
		b.add("rr-1", spec.name, res.rate())
		b.add("rr-1-p50", spec.name, percentile(res.Lat, 0.5))
		b.logf("  rr-1 run %d: %.0f tx/s, p50 %.3f ms", r+1, res.rate(), percentile(res.Lat, 0.5))
	}
	b.waitQuiet(s, fmt.Sprintf("rr-1 run %d", r+1))
	if ctx.Err() != nil {
		return
	}
	var cpu0 map[string]ProcStat
	var tun0 tunStats
	var sc *syscallCounter
	var err0, scErr error
	res, err = c.transactions(ctx, s.Target(), rrConnsHigh, d, func() {
		if r == 0 {
			b.profileCPU(ctx, s, spec.name+"-rr-32", d)
		}
		var terr error
		cpu0, err0 = procsStat(s.Procs())
		if tun0, terr = readTUNs(s); err0 == nil {
			err0 = terr
		}
		// Counted in the middle of the run: no dial, no ramp, no tail.
		sc, scErr = startSyscallCounter(pidsOf(s.Procs()), d*3/5)
	})
	cpu1, err1 := procsStat(s.Procs())
	tun1, err2 := readTUNs(s)
	if err == nil {
		err = errors.Join(err0, err1, err2)
	}
	var sysRate float64
	if sc != nil {
		sysRate, scErr = sc.wait()
	}
	if err != nil {
		b.failure(fmt.Sprintf("%s rr-32 run %d", spec.name, r+1), err)
		b.add("rr-32", spec.name, math.NaN())
		b.add("rr-32-p99", spec.name, math.NaN())
		return
	}
	n := float64(res.N)
	b.add("rr-32", spec.name, res.rate())
	b.add("rr-32-p99", spec.name, percentile(res.Lat, 0.99))
	msg := fmt.Sprintf("  rr-32 run %d: %.0f tx/s, p50 %.3f ms, p99 %.3f ms", r+1, res.rate(), percentile(res.Lat, 0.5), percentile(res.Lat, 0.99))
	if len(s.Procs()) > 0 {
		us := 1e6 * float64(cpuTicks(cpu1)-cpuTicks(cpu0)) / clockTicks / n
		b.add("rr-cpu", spec.name, us)
		msg += fmt.Sprintf(", %.1f µs CPU/tx", us)
		switch {
		case errors.Is(scErr, errNoPerf):
			if note := "rr-syscalls: " + scErr.Error(); !slices.Contains(b.notes, note) {
				b.notes = append(b.notes, note)
			}
		case scErr != nil:
			b.failure(fmt.Sprintf("%s rr-syscalls run %d", spec.name, r+1), scErr)
			b.add("rr-syscalls", spec.name, math.NaN())
		case sc != nil:
			b.add("rr-syscalls", spec.name, sysRate/res.rate())
			msg += fmt.Sprintf(", %.1f syscalls/tx", sysRate/res.rate())
		}
	}
	if u, ok := s.(tunUser); ok && tun0 != nil {
		p := float64(tun1.packetsSince(tun0)) / n
		b.add("rr-tun-packets", spec.name, p)
		msg += fmt.Sprintf(", %.2f TUN pkt/tx;%s", p, tun1.describeSince(tun0, u.TUNs()))
	}
	b.logf("%s", msg)
	b.waitQuiet(s, fmt.Sprintf("rr-32 run %d", r+1))
}
