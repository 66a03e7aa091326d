// Command tcpcryptd-bench measures tcpcryptd side by side with kernel TCP,
// its own plain relay, WireGuard (wireguard-go) and a TLS 1.3 relay pair, on
// the same laptop -- router -- server network namespaces, one setup at a
// time, and writes a report (report.md, results.json, results.csv).
//
// It needs root (it creates namespaces, TUN devices and veth pairs, all
// removed again; the host's own networking is never touched). `make bench`
// builds the binaries and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// options are the command-line knobs.
type options struct {
	out          string
	tcpcryptd    string
	wireguardGo  string
	runs         int
	memRuns      int
	bulkDuration time.Duration
	rateDuration time.Duration
	rateWorkers  int
	idleConns    int
	ttfbSamples  int
	delay        time.Duration
	rrExchanges  int
	wireDuration time.Duration
	rrDuration   time.Duration   // one run of each request/response figure (rr.go)
	profile      string          // directory for daemon CPU/heap profiles ("" = none)
	daemonCPUs   int             // runtime.cpus of the daemons (0: their default)
	ipv6         bool            // every setup carries the traffic over IPv6
	floodRuns    int             // runs of the flood figures
	floodSYNRate int             // spoofed SYNs per second
	floodStall   int             // stalled handshakes per second
	floodWarmup  time.Duration   // flood before the flooded connection-rate run
	only         map[string]bool // figure groups; empty: all
	setups       map[string]bool // setup names; empty: all
}

const backendPort = 15001

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		if err := runBackend(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "tcpcryptd-bench backend:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "tlsrelay" {
		if err := runTLSRelay(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "tcpcryptd-bench tlsrelay:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	var only, setups string
	fs := flag.NewFlagSet("tcpcryptd-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: tcpcryptd-bench [flags]

Runs tcpcryptd, kernel TCP, tcpcryptd with ENO off, wireguard-go and a TLS 1.3
relay pair one at a time on the same network namespaces and writes report.md,
results.json and results.csv to -out. Needs root; touches only namespaces it
creates and removes.

Groups (-only): bulk (throughput and CPU per GiB), connrate, memory, wire
(bytes on the wire per application byte), ttfb (time to first byte with
-delay one-way delay), flood (connection rate under a spoofed-SYN and a
stalled-handshake flood, against the same run without them), rr
(request/response transactions: rate, latency and cost per transaction),
loss (bulk goodput and 1 MB transfer times at 0.1/1/5 %% random loss and
with reordering: loss.go).

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.out, "out", "bench-results", "directory for report.md, results.json, results.csv")
	fs.StringVar(&o.tcpcryptd, "tcpcryptd", "bin/tcpcryptd", "tcpcryptd binary under test")
	fs.StringVar(&o.wireguardGo, "wireguard-go", "bin/wireguard-go", "wireguard-go binary (go build golang.zx2c4.com/wireguard)")
	fs.IntVar(&o.runs, "runs", 5, "runs per figure (medians and spread are over these)")
	fs.IntVar(&o.memRuns, "mem-runs", 3, "runs of the idle-connection memory figure (each with fresh processes)")
	fs.DurationVar(&o.bulkDuration, "bulk-duration", 3*time.Second, "length of one bulk run")
	fs.DurationVar(&o.rateDuration, "rate-duration", 2*time.Second, "length of one connection-rate run")
	fs.IntVar(&o.rateWorkers, "rate-workers", 16, "concurrent connections in the connection-rate runs")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "idle relayed connections in the memory figure")
	fs.IntVar(&o.ttfbSamples, "ttfb-samples", 15, "connections per time-to-first-byte run (the run's value is their median)")
	fs.DurationVar(&o.delay, "delay", 10*time.Millisecond, "one-way delay on the link for the time-to-first-byte figure")
	fs.IntVar(&o.rrExchanges, "rr-exchanges", 1000, "100-byte request/response exchanges per wire-bytes run")
	fs.DurationVar(&o.wireDuration, "wire-duration", time.Second, "length of the bulk transfer of one wire-bytes run")
	fs.DurationVar(&o.rrDuration, "rr-duration", 2*time.Second, "length of one request/response run (rr-1 and rr-32 each)")
	fs.IntVar(&o.daemonCPUs, "daemon-cpus", 0, "runtime.cpus of both tcpcryptd processes (GOMAXPROCS; 0: the daemon's default)")
	fs.BoolVar(&o.ipv6, "ipv6", false, "carry every setup's traffic over IPv6 (the topology's fd77:: addresses) instead of IPv4")
	fs.IntVar(&o.floodRuns, "flood-runs", 3, "runs of the flood figures (each: a connection-rate run, the flood's warm-up, a connection-rate run under the flood)")
	fs.IntVar(&o.floodSYNRate, "flood-syn-rate", 2000, "spoofed SYNs with ENO per second in the flood figures (0: none)")
	fs.IntVar(&o.floodStall, "flood-stall-rate", 30, "stalled handshakes (ENO negotiated, no Init1 ever) per second in the flood figures (0: none)")
	fs.DurationVar(&o.floodWarmup, "flood-warmup", 40*time.Second, "how long the flood runs before the flooded connection-rate run (at 2,000 SYN/s a 65,536-entry table fills in 33 s)")
	fs.StringVar(&o.profile, "profile", "", "directory to save tcpcryptd CPU profiles (first run of each bulk and connection-rate figure) and heap profiles (memory figure) into")
	fs.StringVar(&only, "only", "", "comma-separated groups to run (bulk,connrate,memory,wire,ttfb,flood,rr,loss); default all")
	fs.StringVar(&setups, "setups", "", "comma-separated setups to run (default all): "+strings.Join(setupNames(), ","))
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tcpcryptd-bench: unexpected argument %q (see -h)\n", fs.Arg(0))
		os.Exit(2)
	}
	var err error
	if o.only, err = parseSet(only, []string{"bulk", "connrate", "memory", "wire", "ttfb", "flood", "rr", "loss"}); err != nil {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench: -only:", err)
		os.Exit(2)
	}
	if o.setups, err = parseSet(setups, setupNames()); err != nil {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench: -setups:", err)
		os.Exit(2)
	}
	if o.rrDuration <= 0 {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench: -rr-duration must be positive")
		os.Exit(2)
	}
	if o.runs < 1 || o.memRuns < 1 || o.ttfbSamples < 1 || o.idleConns < 1 || o.rateWorkers < 1 || o.floodRuns < 1 {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench: -runs, -mem-runs, -ttfb-samples, -idle-conns, -rate-workers and -flood-runs must be at least 1")
		os.Exit(2)
	}
	if o.floodSYNRate < 0 || o.floodStall < 0 || o.floodWarmup < 0 {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench: -flood-syn-rate, -flood-stall-rate and -flood-warmup must not be negative")
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	// SIGPIPE too: output piped into a reader that went away (`| head`)
	// must not kill us before the namespaces and daemons are removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "tcpcryptd-bench:", err)
		os.Exit(1)
	}
}

func parseSet(s string, valid []string) (map[string]bool, error) {
	m := map[string]bool{}
	if s == "" {
		return m, nil
	}
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(valid, v) {
			return nil, fmt.Errorf("unknown %q (valid: %s)", v, strings.Join(valid, ", "))
		}
		m[v] = true
	}
	return m, nil
}

// setupSpec says how to start a setup and which figures it appears in, under
// which row name.
type setupSpec struct {
	name     string
	start    func(*Env) (Setup, error)
	describe string // how it is started, for the report
	bulk     bool   // bulk throughput and CPU per GiB
	connrate string // row name in "connrate" ("" = not measured)
	memory   bool
	// fdsPerConn: descriptors one relayed connection costs the process
	// that needs the most (a TLS relay holds both of its sockets), which
	// bounds the idle connections under RLIMIT_NOFILE.
	fdsPerConn int
	wire       bool
	ttfb       string // row name in "ttfb"
	flood      string // row name in the flood figures
}

func daemonStart(o daemonOptions) func(*Env) (Setup, error) {
	return func(env *Env) (Setup, error) { return startDaemons(env, o) }
}

var specs = []setupSpec{
	{name: "kernel", start: startKernel, describe: "client dials the backend's address directly; router forwards in the kernel",
		bulk: true, connrate: "kernel", wire: true, ttfb: "kernel"},
	{name: "relay-plain", start: daemonStart(daemonOptions{name: "relay-plain", policy: "off", aead: "aes128gcm", resumption: true}),
		describe: "tcpcryptd up on laptop (outbound include 10.77.3.0/24 and fd77:3::/64, policy off) and server (services 10.77.3.1:5001 and [fd77:3::1]:5001 -> 127.0.0.1:15001, policy off)",
		bulk:     true, connrate: "relay-plain", memory: true, wire: true, ttfb: "relay-plain", flood: "relay-plain"},
	{name: "tcpcrypt-aes128gcm", start: daemonStart(daemonOptions{name: "tcpcrypt-aes128gcm", policy: "opportunistic", aead: "aes128gcm", resumption: true}),
		describe: "as relay-plain with policy opportunistic, aeads = [aes128gcm], resumption on",
		bulk:     true, connrate: "tcpcrypt-resumed", memory: true, wire: true, ttfb: "tcpcrypt-resumed", flood: "tcpcrypt-resumed"},
	{name: "tcpcrypt-fresh", start: daemonStart(daemonOptions{name: "tcpcrypt-fresh", policy: "opportunistic", aead: "aes128gcm", resumption: false}),
		describe: "as tcpcrypt-aes128gcm with resumption off on both sides (every connection a fresh X25519 key exchange)",
		connrate: "tcpcrypt-fresh", ttfb: "tcpcrypt-fresh", flood: "tcpcrypt-fresh"},
	{name: "tcpcrypt-pq-fresh", start: daemonStart(daemonOptions{name: "tcpcrypt-pq-fresh", policy: "opportunistic", aead: "aes128gcm", resumption: false, teps: `["x25519mlkem768"]`}),
		describe: "as tcpcrypt-fresh with teps = [x25519mlkem768] (every connection a fresh hybrid X25519 + ML-KEM-768 key exchange)",
		connrate: "tcpcrypt-pq-fresh", ttfb: "tcpcrypt-pq-fresh"},
	{name: "tcpcrypt-pq-resumed", start: daemonStart(daemonOptions{name: "tcpcrypt-pq-resumed", policy: "opportunistic", aead: "aes128gcm", resumption: true, teps: `["x25519mlkem768"]`}),
		describe: "as tcpcrypt-aes128gcm with teps = [x25519mlkem768]",
		connrate: "tcpcrypt-pq-resumed", ttfb: "tcpcrypt-pq-resumed"},
	{name: "tcpcrypt-chacha20", start: daemonStart(daemonOptions{name: "tcpcrypt-chacha20", policy: "opportunistic", aead: "chacha20poly1305", resumption: true}),
		describe: "as tcpcrypt-aes128gcm with aeads = [chacha20poly1305]",
		bulk:     true, wire: true},
	{name: "wireguard-go", start: startWireGuard,
		describe: "wireguard-go -f in laptop and server, configured over UAPI; client dials the backend through the tunnel (10.99.0.2; with -ipv6 fd99::2, UDP over IPv6)",
		bulk:     true, connrate: "wireguard-go", memory: true, wire: true, ttfb: "wireguard-go"},
	{name: "tls13-relay", start: func(env *Env) (Setup, error) { return startTLSRelay(env, false) },
		fdsPerConn: 2,
		describe:   "tcpcryptd-bench tlsrelay client (laptop 127.0.0.1:6001) -> TLS 1.3 (X25519, ECDSA P-256 certificate, AES-128-GCM) -> server (10.77.2.2:6443; with -ipv6 [fd77:2::2]:6443) -> 127.0.0.1:15001; full handshake per connection",
		bulk:       true, connrate: "tls13-relay", memory: true, wire: true, ttfb: "tls13-relay"},
	{name: "tls13-relay-resumed", start: func(env *Env) (Setup, error) { return startTLSRelay(env, true) },
		describe: "as tls13-relay with a client session cache (TLS 1.3 PSK resumption)",
		connrate: "tls13-relay-resumed", ttfb: "tls13-relay-resumed"},
}

func setupNames() []string {
	var n []string
	for _, s := range specs {
		n = append(n, s.name)
	}
	return n
}

// figureDefs are the report's tables, in order.
func figureDefs(o options) []Figure {
	bulk := func(id, title string) Figure {
		return Figure{ID: id, Title: title, Unit: "MB/s", HigherIsBetter: true,
			Baselines: []string{"kernel", "wireguard-go", "relay-plain"},
			Method:    fmt.Sprintf("Application bytes per second (10^6), connections set up before the clock starts; uploads are timed until the backend confirms the byte count, downloads count bytes read in %v.", o.bulkDuration)}
	}
	return append([]Figure{
		bulk("bulk-1-up", "Bulk throughput, 1 stream, laptop to server"),
		bulk("bulk-1-down", "Bulk throughput, 1 stream, server to laptop"),
		bulk("bulk-8-up", "Bulk throughput, 8 streams, laptop to server"),
		bulk("bulk-8-down", "Bulk throughput, 8 streams, server to laptop"),
		{ID: "cpu-daemon", Title: "CPU time of the setup's processes per GiB moved", Unit: "s/GiB", Baselines: []string{"wireguard-go", "relay-plain"},
			Method: "user+sys time of the setup's processes (both sides) during each bulk run of the four above, divided by the GiB moved; kernel TCP has no process."},
		{ID: "cpu-machine", Title: "CPU time of the whole machine per GiB moved", Unit: "s/GiB", Baselines: []string{"kernel", "wireguard-go"},
			Method: "Busy time of all CPUs (/proc/stat) during each bulk run, divided by the GiB moved: includes the load generator, the backend and the kernel."},
		{ID: "tun-packets", Title: "TUN device packets per MB moved", Unit: "pkt/MB", Baselines: []string{"wireguard-go", "relay-plain"},
			Method: "Packets the setup's processes read from and wrote to their TUN devices (kernel counters, both sides, both directions; a GSO super-packet counts once) during each bulk run of the four above, per 10^6 application bytes. Each is a system call and a trip through the kernel's stack."},
		{ID: "connrate", Title: "New connections per second", Unit: "conn/s", HigherIsBetter: true, Baselines: []string{"kernel", "tls13-relay", "relay-plain"},
			Method: fmt.Sprintf("%d concurrent loops of: connect, 1 byte each way, backend closes, client closes; for %v per run.", o.rateWorkers, o.rateDuration)},
		{ID: "conn-cpu", Title: "CPU time of the setup's processes per new connection", Unit: "µs", Baselines: []string{"tls13-relay", "relay-plain"},
			Method: "user+sys time of the setup's processes (both sides) during each connection-rate run, divided by the connections made; kernel TCP has no process. Less noisy than the rate on a shared machine: it does not depend on what else runs."},
		{ID: "ttfb", Title: fmt.Sprintf("Time to first response byte, %v one-way delay", o.delay), Unit: "ms", Baselines: []string{"kernel", "tls13-relay"},
			Method: fmt.Sprintf("From the start of connect to the first byte of the answer to a 100-byte request; the router's userspace impairment bridge delays every frame by %v each way; a run's value is the median of %d sequential connections.", o.delay, o.ttfbSamples)},
		{ID: "rss-per-conn-laptop", Title: "Memory per idle relayed connection, laptop side", Unit: "KiB", Baselines: []string{"relay-plain", "tls13-relay"},
			Method: fmt.Sprintf("Growth of the laptop-side process's VmRSS with %d idle connections open (1 byte exchanged each way, then 3 s settle), divided by their number; fresh processes each run.", o.idleConns)},
		{ID: "rss-per-conn-server", Title: "Memory per idle relayed connection, server side", Unit: "KiB", Baselines: []string{"relay-plain", "tls13-relay"},
			Method: "As above, for the server-side process."},
		{ID: "wire-bulk", Title: "Bytes on the wire per application byte, bulk upload", Unit: "B/B", Baselines: []string{"kernel", "wireguard-go"},
			Method: fmt.Sprintf("IP bytes (Ethernet headers removed) both ways on the laptop's link, offloads off so every frame is a real segment, for one connection uploading for %v, handshakes included, divided by the application bytes.", o.wireDuration)},
		{ID: "flood-connrate", Title: "New encrypted connections per second under a SYN flood and a stalled-handshake flood", Unit: "conn/s", HigherIsBetter: true,
			Baselines: []string{"relay-plain"},
			Method: fmt.Sprintf("As connrate (%d loops, %v), counting only connections the laptop daemon ended encrypted (for relay-plain, policy off: plain), while an attacker namespace on the router sends the server daemon's service %d SYN/s with ENO from random spoofed addresses of %s that never answer and opens %d connections/s from random addresses of %s that negotiate ENO and never send Init1; measured after %v of flood. IPv4.",
				o.rateWorkers, o.rateDuration, o.floodSYNRate, spoofNet, o.floodStall, stallNet, o.floodWarmup)},
		{ID: "flood-ratio", Title: "Connection rate under the floods, as a share of the rate without them", Unit: "×", HigherIsBetter: true,
			Method: "flood-connrate divided by the same count in a connection-rate run of the same daemons made just before the flood started."},
		{ID: "flood-plain", Title: "Legitimate connections that ended plain under the floods", Unit: "conn",
			Method: "Connections the laptop daemon counted as ended plain (tcpcryptd_connections_total, outcome plain) during the flooded run; the laptop sees only the legitimate client's connections. Nonzero is a downgrade the attacker caused (policy off: every connection is plain, by configuration)."},
		{ID: "wire-rr", Title: "Bytes on the wire per application byte, 100-byte request/response", Unit: "B/B", Baselines: []string{"kernel", "wireguard-go"},
			Method: fmt.Sprintf("As above for one connection making %d exchanges of a 100-byte request and a 100-byte response.", o.rrExchanges)},
	}, append(rrFigureDefs(o), lossFigures()...)...)
}

// bench holds one run's state.
type bench struct {
	o       options
	rep     *Report
	figs    map[string]*Figure
	notes   []string
	tmp     string
	selfExe string
	starts  map[string]int // per setup, for log file names
	// connFailed counts failed connections per connection-rate row, over
	// all runs.
	connFailed map[string]int64
}

func (b *bench) add(fig, setup string, v float64) {
	f := b.figs[fig]
	if f == nil {
		panic("unknown figure " + fig)
	}
	for i := range f.Rows {
		if f.Rows[i].Setup == setup {
			f.Rows[i].Samples = append(f.Rows[i].Samples, v)
			return
		}
	}
	f.Rows = append(f.Rows, Row{Setup: setup, Samples: []float64{v}})
}

func (b *bench) setNote(fig, setup, note string) {
	f := b.figs[fig]
	for i := range f.Rows {
		if f.Rows[i].Setup == setup {
			if f.Rows[i].Note != "" {
				f.Rows[i].Note += "; "
			}
			f.Rows[i].Note += note
			return
		}
	}
	f.Rows = append(f.Rows, Row{Setup: setup, Note: note})
}

func (b *bench) group(g string) bool { return len(b.o.only) == 0 || b.o.only[g] }

func (b *bench) logf(format string, args ...any) {
	slog.Info(fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	if err := topo.RequireRoot(); err != nil {
		return err
	}
	for _, p := range []*string{&o.tcpcryptd, &o.wireguardGo} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w (build it first: make bench does)", err)
		}
		*p = abs
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "tcpb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, figs: map[string]*Figure{}, tmp: tmp, selfExe: self, starts: map[string]int{}, connFailed: map[string]int64{}}
	b.rep = &Report{Started: time.Now(), Machine: describeMachine()}
	defs := figureDefs(o)
	for i := range defs {
		b.figs[defs[i].ID] = &defs[i]
	}
	b.rep.Versions = versions(map[string]string{
		"tcpcryptd (binary)": firstLine(exec.Command(o.tcpcryptd, "version").Output()),
		"wireguard-go":       firstLine(exec.Command(o.wireguardGo, "--version").Output()),
	})
	b.rep.Commands = append(b.rep.Commands, strings.Join(os.Args, " "))
	for _, s := range specs {
		if b.selected(s) {
			b.rep.Commands = append(b.rep.Commands, fmt.Sprintf("# %s: %s", s.name, s.describe))
		}
	}
	b.rep.Params = [][2]string{
		{"runs", fmt.Sprint(o.runs)}, {"bulk duration", o.bulkDuration.String()},
		{"connection-rate duration", o.rateDuration.String()}, {"connection-rate workers", fmt.Sprint(o.rateWorkers)},
		{"idle connections", fmt.Sprint(o.idleConns)}, {"memory runs", fmt.Sprint(o.memRuns)},
		{"one-way delay (ttfb)", o.delay.String()}, {"ttfb samples per run", fmt.Sprint(o.ttfbSamples)},
		{"request/response exchanges (wire)", fmt.Sprint(o.rrExchanges)}, {"wire bulk duration", o.wireDuration.String()},
		{"link", "veth pairs laptop -- router -- server, MTU 1500"},
		{"address family", map[bool]string{false: "IPv4", true: "IPv6"}[o.ipv6]},
	}
	if b.group("flood") {
		b.rep.Params = append(b.rep.Params, [2]string{"flood runs", fmt.Sprint(o.floodRuns)},
			[2]string{"flood", fmt.Sprintf("%d spoofed SYN/s, %d stalled handshakes/s, %v warm-up (IPv4)", o.floodSYNRate, o.floodStall, o.floodWarmup)})
	}
	cpus := "the daemon's default (config/default.toml)"
	if o.daemonCPUs > 0 {
		cpus = fmt.Sprint(o.daemonCPUs)
	}
	b.rep.Params = append(b.rep.Params, [2]string{"tcpcryptd runtime.cpus", cpus})

	runErr := b.phaseRouted(ctx)
	if runErr == nil {
		runErr = b.phaseImpaired(ctx)
	}
	if runErr == nil {
		runErr = b.phaseFlood(ctx)
	}
	if runErr == nil {
		runErr = b.phaseRR(ctx)
	}
	if runErr == nil {
		runErr = b.phaseLoss(ctx)
	}
	b.rep.Elapsed = time.Since(b.rep.Started)
	for _, id := range figureOrder(defs) {
		if f := b.figs[id]; len(f.Rows) > 0 {
			b.rep.Figures = append(b.rep.Figures, *f)
		}
	}
	b.rep.Notes = append(b.rep.Notes, b.notes...)
	if runErr != nil {
		b.rep.Notes = append(b.rep.Notes, "run stopped early: "+runErr.Error())
	}
	if err := writeReport(o.out, b.rep); err != nil {
		return errors.Join(runErr, err)
	}
	md, _ := os.ReadFile(filepath.Join(o.out, "report.md"))
	os.Stdout.Write(md)
	fmt.Fprintf(os.Stderr, "\nwrote %s/{report.md,results.json,results.csv}\n", o.out)
	return runErr
}

func figureOrder(defs []Figure) []string {
	var ids []string
	for _, d := range defs {
		ids = append(ids, d.ID)
	}
	return ids
}

func firstLine(b []byte, err error) string {
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

func (b *bench) selected(s setupSpec) bool { return len(b.o.setups) == 0 || b.o.setups[s.name] }

// newTopology builds the namespaces, tunes their ephemeral-port sysctls (per
// namespace, the host is untouched) and starts the backend in the server.
func (b *bench) newTopology(impaired bool) (*topo.Topology, *sideProc, error) {
	tp, err := topo.New(topo.Options{Prefix: "tcpbench", Impair: impaired, Seed: 1, Logf: b.logf})
	if err != nil {
		return nil, nil, err
	}
	for _, ns := range []*topo.NS{tp.Laptop, tp.Server} {
		for k, v := range map[string]string{
			"net/ipv4/ip_local_port_range": "1024 65000",
			"net/ipv4/tcp_tw_reuse":        "1",
		} {
			if err := ns.WriteSysctl(k, v); err != nil {
				tp.Close()
				return nil, nil, err
			}
		}
	}
	be, err := startBackend(b.selfExe, tp.Server)
	if err != nil {
		tp.Close()
		return nil, nil, err
	}
	return tp, be, nil
}

// eachSetup starts every selected setup that want accepts on tp, one at a
// time, and runs f with it; a setup that fails is noted and skipped.
func (b *bench) eachSetup(ctx context.Context, tp *topo.Topology, what string, want func(setupSpec) bool, f func(setupSpec, Setup, *client) error) {
	for _, spec := range specs {
		if !b.selected(spec) || ctx.Err() != nil || !want(spec) {
			continue
		}
		b.logf("setup %s: %s", spec.name, what)
		err := b.withSetup(ctx, tp, spec, func(s Setup, c *client) error { return f(spec, s, c) })
		if err != nil {
			b.failure(spec.name, err)
		}
	}
}

// withSetup starts spec on tp, waits until the backend is reachable through
// it, runs f and stops it again.
func (b *bench) withSetup(ctx context.Context, tp *topo.Topology, spec setupSpec, f func(Setup, *client) error) error {
	dir, err := os.MkdirTemp(b.tmp, "s")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := &Env{Topo: tp, Dir: dir, BackendPort: backendPort, Tcpcryptd: b.o.tcpcryptd, DaemonCPUs: b.o.daemonCPUs,
		IPv6: b.o.ipv6, WireGuardGo: b.o.wireguardGo, Self: b.selfExe, Logf: b.logf}
	s, err := spec.start(env)
	if err != nil {
		return fmt.Errorf("start %s: %w", spec.name, err)
	}
	c := &client{ns: tp.Laptop}
	err = waitReachable(ctx, c, s.Target())
	if err == nil {
		err = f(s, c)
	}
	if cerr := s.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("stop %s: %w", spec.name, cerr))
	}
	b.keepLogs(dir, spec.name)
	return err
}

// keepLogs copies the setup's process logs (*.log in its scratch directory)
// to <out>/logs/<setup>-<n>-<file>, n counting the setup's starts.
func (b *bench) keepLogs(dir, setup string) {
	b.starts[setup]++
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil || len(data) == 0 {
			continue
		}
		dst := filepath.Join(b.o.out, "logs", fmt.Sprintf("%s-%d-%s", setup, b.starts[setup], filepath.Base(l)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			_ = os.WriteFile(dst, data, 0o644)
		}
	}
}

// phaseRouted measures bulk, connection rate and memory with the router
// forwarding in the kernel (offloads on, as on a real host).
func (b *bench) phaseRouted(ctx context.Context) error {
	if !b.group("bulk") && !b.group("connrate") && !b.group("memory") {
		return nil
	}
	tp, be, err := b.newTopology(false)
	if err != nil {
		return err
	}
	defer tp.Close()
	defer be.stop(procStopGrace)
	needBulk := func(spec setupSpec) bool { return spec.bulk && b.group("bulk") }
	needRate := func(spec setupSpec) bool { return spec.connrate != "" && b.group("connrate") }
	// Rounds: run r of every setup before run r+1 of any, each setup
	// started afresh. On a shared machine whose speed drifts by a factor
	// of two over minutes, a setup measured in one block could land
	// in a slow spell its baselines missed; interleaved, drift spreads
	// over all setups and the ratios of one report stay comparable.
	//
	// The connection rate gets processes of its own, started after the
	// bulk ones stopped: on this VM, daemons that had just moved
	// gigabytes made resumed connections slower than fresh ones (cause not
	// found; no connections or traffic were left), and one figure should
	// not carry another's aftermath.
	for r := range b.o.runs {
		round := fmt.Sprintf("round %d of %d", r+1, b.o.runs)
		b.eachSetup(ctx, tp, "bulk, "+round, needBulk, func(spec setupSpec, s Setup, c *client) error {
			b.measureBulk(ctx, spec, s, c, r)
			return nil
		})
		b.eachSetup(ctx, tp, "connection rate, "+round, needRate, func(spec setupSpec, s Setup, c *client) error {
			b.measureRate(ctx, spec, s, c, r)
			return nil
		})
	}
	// setNote appends, so each row's failures are noted once, over all runs.
	for setup, n := range b.connFailed {
		if n > 0 {
			b.setNote("connrate", setup, fmt.Sprintf("%d connections failed", n))
		}
	}
	// The memory runs come last: their tens of thousands of connections
	// leave kernel state behind (conntrack entries, the backend's TIME-WAIT
	// sockets) that would slow whichever setup ran next.
	for _, spec := range specs {
		if !b.selected(spec) || ctx.Err() != nil || !spec.memory || !b.group("memory") {
			continue
		}
		b.logf("setup %s: memory with %d idle connections", spec.name, b.idleConns(spec))
		for r := range b.o.memRuns {
			if ctx.Err() != nil {
				break
			}
			if n := b.idleConns(spec); n < b.o.idleConns && r == 0 {
				note := fmt.Sprintf("%d connections: the descriptor limit allows no more with %d per connection", n, spec.fdsPerConn)
				b.setNote("rss-per-conn-laptop", spec.name, note)
				b.setNote("rss-per-conn-server", spec.name, note)
			}
			// The backend holds a descriptor per connection until the
			// previous run's closes have reached it; under the same
			// descriptor limit, this run's connections need the room.
			if err := waitDrained(ctx, be, backendDrained, backendDrainTimeout); err != nil {
				b.logf("  %v; measuring anyway", err)
			}
			err := b.withSetup(ctx, tp, spec, func(s Setup, c *client) error { return b.measureMemory(ctx, spec, s, c, be) })
			if err != nil {
				b.failure(fmt.Sprintf("%s memory run %d", spec.name, r+1), err)
				b.add("rss-per-conn-laptop", spec.name, math.NaN())
				b.add("rss-per-conn-server", spec.name, math.NaN())
			}
		}
	}
	return ctx.Err()
}

// profileCPU starts CPU profiles of s's processes for d (when -profile is
// set and s can profile); they are written in the background while the
// caller runs the workload.
func (b *bench) profileCPU(ctx context.Context, s Setup, name string, d time.Duration) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	b.startProfiles(ctx, s, fmt.Sprintf("profile?seconds=%d", secs), name+"-%s.cpu.pprof")
}

// traceRun saves an execution trace (go tool trace) of each of s's
// processes for the next d: where a latency figure's time goes between
// goroutines, system calls and the scheduler.
func (b *bench) traceRun(ctx context.Context, s Setup, name string, d time.Duration) {
	b.startProfiles(ctx, s, fmt.Sprintf("trace?seconds=%g", d.Seconds()), name+"-%s.trace")
}

// startProfiles fetches the timed profile query from each of s's processes
// in the background (when -profile is set and s can profile), into file
// with %s the process's role, and returns once they have started.
func (b *bench) startProfiles(ctx context.Context, s Setup, query, file string) {
	p, ok := s.(profiler)
	if b.o.profile == "" || !ok {
		return
	}
	for _, proc := range s.Procs() {
		go b.saveProfile(ctx, p, proc.Role, query, fmt.Sprintf(file, proc.Role))
	}
	time.Sleep(50 * time.Millisecond) // let the profiles start
}

// profileHeap saves heap profiles of s's processes now.
func (b *bench) profileHeap(ctx context.Context, s Setup, name string) {
	p, ok := s.(profiler)
	if b.o.profile == "" || !ok {
		return
	}
	for _, proc := range s.Procs() {
		b.saveProfile(ctx, p, proc.Role, "heap", fmt.Sprintf("%s-%s.heap.pprof", name, proc.Role))
		// The text form ends with runtime.MemStats: stacks, heap in use,
		// heap idle and released, which RSS is made of.
		b.saveProfile(ctx, p, proc.Role, "heap?debug=1", fmt.Sprintf("%s-%s.heap.txt", name, proc.Role))
		b.saveProfile(ctx, p, proc.Role, "goroutine?debug=1", fmt.Sprintf("%s-%s.goroutine.txt", name, proc.Role))
	}
}

func (b *bench) saveProfile(ctx context.Context, p profiler, role, profile, file string) {
	if err := os.MkdirAll(b.o.profile, 0o755); err != nil {
		b.logf("profile: %v", err)
		return
	}
	f, err := os.Create(filepath.Join(b.o.profile, file))
	if err != nil {
		b.logf("profile: %v", err)
		return
	}
	defer f.Close()
	if err := p.Profile(ctx, role, profile, f); err != nil {
		b.logf("profile: %v", err)
	}
}

func (b *bench) failure(what string, err error) {
	b.logf("FAILED %s: %v", what, err)
	b.notes = append(b.notes, fmt.Sprintf("%s failed: %v", what, err))
}

// measureBulk makes run r (from 0) of the bulk figures on s.
func (b *bench) measureBulk(ctx context.Context, spec setupSpec, s Setup, c *client, r int) {
	variants := []struct {
		fig     string
		streams int
		up      bool
	}{{"bulk-1-up", 1, true}, {"bulk-1-down", 1, false}, {"bulk-8-up", 8, true}, {"bulk-8-down", 8, false}}
	for _, v := range variants {
		if ctx.Err() != nil {
			return
		}
		if r == 0 {
			b.profileCPU(ctx, s, spec.name+"-"+v.fig, b.o.bulkDuration)
		}
		before, err1 := procsStat(s.Procs())
		busy0, err2 := machineBusy()
		tun0, err5 := readTUNs(s)
		res, err := c.bulk(ctx, s.Target(), v.streams, v.up, b.o.bulkDuration)
		after, err3 := procsStat(s.Procs())
		busy1, err4 := machineBusy()
		tun1, err6 := readTUNs(s)
		if err == nil {
			err = errors.Join(err1, err2, err3, err4, err5, err6)
		}
		if err != nil || res.Bytes == 0 {
			b.failure(fmt.Sprintf("%s %s run %d", spec.name, v.fig, r+1), fmt.Errorf("%d bytes: %v", res.Bytes, err))
			b.add(v.fig, spec.name, math.NaN())
			continue
		}
		b.add(v.fig, spec.name, res.MBps())
		gib := float64(res.Bytes) / (1 << 30)
		if len(s.Procs()) > 0 {
			b.add("cpu-daemon", spec.name, float64(cpuTicks(after)-cpuTicks(before))/clockTicks/gib)
		}
		b.add("cpu-machine", spec.name, float64(busy1-busy0)/clockTicks/gib)
		if u, ok := s.(tunUser); ok {
			b.add("tun-packets", spec.name, float64(tun1.packetsSince(tun0))/(float64(res.Bytes)/1e6))
			b.logf("  %s run %d TUN:%s", v.fig, r+1, tun1.describeSince(tun0, u.TUNs()))
		}
		b.logf("  %s run %d: %.0f MB/s", v.fig, r+1, res.MBps())
		b.waitQuiet(s, fmt.Sprintf("%s run %d", v.fig, r+1))
	}
}

// Quiet is a setup whose TUN devices moved fewer than quietPackets packets
// in quietEvery: what a run left behind (a download's backend still
// writing, a relay still draining) has ended and cannot cost the next
// run CPU.
const (
	quietEvery   = 200 * time.Millisecond
	quietPackets = 20
	quietMax     = 10 * time.Second
)

// waitQuiet waits until s is quiet, at most quietMax, and logs how long
// that took when it was not at once.
func (b *bench) waitQuiet(s Setup, after string) {
	prev, err := readTUNs(s)
	if err != nil || prev == nil {
		return
	}
	start := time.Now()
	for time.Since(start) < quietMax {
		time.Sleep(quietEvery)
		cur, err := readTUNs(s)
		if err != nil {
			return
		}
		n := cur.packetsSince(prev)
		if n < quietPackets {
			if d := time.Since(start); d > quietEvery {
				b.logf("  %s: the setup went quiet after %v", after, d.Round(time.Millisecond))
			}
			return
		}
		b.logf("  %s: still %d TUN packets in %v:%s", after, n, quietEvery, cur.describeSince(prev, s.(tunUser).TUNs()))
		prev = cur
	}
	b.logf("  %s: the setup was not quiet after %v", after, quietMax)
}

// measureRate makes run r (from 0) of the connection-rate figures on s.
func (b *bench) measureRate(ctx context.Context, spec setupSpec, s Setup, c *client, r int) {
	if ctx.Err() != nil {
		return
	}
	if r == 0 {
		b.profileCPU(ctx, s, spec.name+"-connrate", b.o.rateDuration)
	}
	tun0, terr := readTUNs(s)
	cpu0, cerr := procsStat(s.Procs())
	d, _ := s.(*daemonSetup)
	if d != nil {
		b.logf("  connrate run %d: connections relayed before it: %s", r+1, d.relaying())
	}
	var f0, r0 uint64
	var herr error
	if d != nil {
		f0, r0, herr = d.handshakes()
	}
	rate, nfail, err := c.connRate(ctx, s.Target(), b.o.rateWorkers, b.o.rateDuration)
	b.connFailed[spec.connrate] += nfail
	cpu1, cerr2 := procsStat(s.Procs())
	if n := rate * b.o.rateDuration.Seconds(); err == nil && cerr == nil && cerr2 == nil && len(s.Procs()) > 0 && n > 0 {
		b.add("conn-cpu", spec.connrate, 1e6*float64(cpuTicks(cpu1)-cpuTicks(cpu0))/clockTicks/n)
	}
	if d != nil && herr == nil && err == nil {
		if f1, r1, herr := d.handshakes(); herr == nil && f1+r1 > f0+r0 {
			b.logf("  connrate run %d: laptop handshakes %d fresh, %d resumed (%.0f%% resumed)", r+1,
				f1-f0, r1-r0, 100*float64(r1-r0)/float64(f1+r1-f0-r0))
		}
	}
	if tun1, terr2 := readTUNs(s); err == nil && terr == nil && terr2 == nil && tun1 != nil {
		// The diagnosis for the rate: packets each daemon moves through
		// its TUN device per connection (both legs).
		n := rate * b.o.rateDuration.Seconds()
		b.logf("  connrate run %d TUN: %.1f packets per connection;%s", r+1,
			float64(tun1.packetsSince(tun0))/n, tun1.describeSince(tun0, s.(tunUser).TUNs()))
	}
	if err != nil {
		b.failure(fmt.Sprintf("%s connrate run %d", spec.name, r+1), err)
		b.add("connrate", spec.connrate, math.NaN())
		return
	}
	b.add("connrate", spec.connrate, rate)
	b.logf("  connrate run %d: %.0f conn/s (%d failed)", r+1, rate, nfail)
}

// idleConns is -idle-conns, or fewer if a process of spec could not hold
// that many under the descriptor limit (the hard limit, which the Go runtime
// makes the soft one; raising it needs CAP_SYS_RESOURCE).
func (b *bench) idleConns(spec setupSpec) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || spec.fdsPerConn <= 1 {
		return b.o.idleConns
	}
	if most := int(lim.Max-256) / spec.fdsPerConn; most < b.o.idleConns {
		return most
	}
	return b.o.idleConns
}

func (b *bench) measureMemory(ctx context.Context, spec setupSpec, s Setup, c *client, be *sideProc) error {
	// A few connections first, so lazily made state (pools, caches, the
	// resumption chain) is in the baseline rather than counted per connection.
	warm, err := c.openIdle(ctx, s.Target(), 64, 8)
	if err != nil {
		return err
	}
	closeAll(warm)
	time.Sleep(time.Second)
	before, err := procsStat(s.Procs())
	if err != nil {
		return err
	}
	n := b.idleConns(spec)
	t0 := time.Now()
	conns, err := c.openIdle(ctx, s.Target(), n, 32)
	if err != nil {
		return err
	}
	b.logf("  opened %d idle connections in %v", n, time.Since(t0).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	after, err := procsStat(s.Procs())
	// Close while the setup still runs, and let the closes reach the
	// backend: torn down first, a setup would lose them in flight and the
	// backend would keep the connections (and its descriptors) for good.
	closeAll(conns)
	if werr := waitDrained(ctx, be, backendDrained, backendDrainTimeout); werr != nil {
		b.logf("  %v", werr)
	}
	if err != nil {
		return err
	}
	b.profileHeap(ctx, s, spec.name+"-idle")
	for _, role := range []string{"laptop", "server"} {
		a, ok1 := after[role]
		bb, ok2 := before[role]
		if !ok1 || !ok2 {
			continue
		}
		kib := (float64(a.RSSBytes) - float64(bb.RSSBytes)) / float64(n) / 1024
		b.add("rss-per-conn-"+role, spec.name, kib)
		b.logf("  %s: RSS %d -> %d KiB, %.1f KiB per connection", role, bb.RSSBytes>>10, a.RSSBytes>>10, kib)
	}
	return nil
}

// phaseImpaired measures bytes on the wire and time to first byte with the
// router's userspace bridge between the links (offloads off, so the link
// counters count real segments).
func (b *bench) phaseImpaired(ctx context.Context) error {
	if !b.group("wire") && !b.group("ttfb") {
		return nil
	}
	tp, be, err := b.newTopology(true)
	if err != nil {
		return err
	}
	defer tp.Close()
	defer be.stop(procStopGrace)
	needWire := func(spec setupSpec) bool { return spec.wire && b.group("wire") }
	needTTFB := func(spec setupSpec) bool { return spec.ttfb != "" && b.group("ttfb") }
	b.eachSetup(ctx, tp, "wire bytes and time to first byte",
		func(spec setupSpec) bool { return needWire(spec) || needTTFB(spec) },
		func(spec setupSpec, s Setup, c *client) error {
			if needWire(spec) {
				b.measureWire(ctx, tp, spec, s, c)
			}
			if needTTFB(spec) {
				if err := tp.Bridge.SetBoth(impair.Settings{Delay: b.o.delay}); err != nil {
					return err
				}
				b.measureTTFB(ctx, spec, s, c)
				return tp.Bridge.SetBoth(impair.Settings{})
			}
			return nil
		})
	return ctx.Err()
}

func (b *bench) measureWire(ctx context.Context, tp *topo.Topology, spec setupSpec, s Setup, c *client) {
	for r := range b.o.runs {
		if ctx.Err() != nil {
			return
		}
		c0, err := readLink(tp.Laptop, topo.HostIface)
		if err != nil {
			b.failure("wire counters", err)
			return
		}
		res, err := c.bulk(ctx, s.Target(), 1, true, b.o.wireDuration)
		time.Sleep(200 * time.Millisecond) // the last ACKs and FINs
		c1, err2 := readLink(tp.Laptop, topo.HostIface)
		if err == nil {
			err = err2
		}
		if err != nil || res.Bytes == 0 {
			b.failure(fmt.Sprintf("%s wire-bulk run %d", spec.name, r+1), fmt.Errorf("%d bytes: %v", res.Bytes, err))
			b.add("wire-bulk", spec.name, math.NaN())
		} else {
			b.add("wire-bulk", spec.name, float64(c1.ipBytesSince(c0))/float64(res.Bytes))
		}
		c0, _ = readLink(tp.Laptop, topo.HostIface)
		err = c.requestResponse(ctx, s.Target(), b.o.rrExchanges)
		time.Sleep(200 * time.Millisecond)
		c1, err2 = readLink(tp.Laptop, topo.HostIface)
		if err == nil {
			err = err2
		}
		if err != nil {
			b.failure(fmt.Sprintf("%s wire-rr run %d", spec.name, r+1), err)
			b.add("wire-rr", spec.name, math.NaN())
		} else {
			b.add("wire-rr", spec.name, float64(c1.ipBytesSince(c0))/float64(b.o.rrExchanges*2*rrSize))
		}
	}
}

func (b *bench) measureTTFB(ctx context.Context, spec setupSpec, s Setup, c *client) {
	// One connection at the new delay first: it warms caches (resumption) the
	// way a user's earlier connection would have.
	c.ttfb(ctx, s.Target())
	for r := range b.o.runs {
		if r == 0 {
			b.traceRun(ctx, s, spec.name+"-ttfb", time.Second)
		}
		var ds []float64
		for range b.o.ttfbSamples {
			if ctx.Err() != nil {
				return
			}
			d, err := c.ttfb(ctx, s.Target())
			if err != nil {
				b.failure(fmt.Sprintf("%s ttfb run %d", spec.name, r+1), err)
				continue
			}
			ds = append(ds, float64(d)/float64(time.Millisecond))
		}
		if len(ds) == 0 {
			b.add("ttfb", spec.ttfb, math.NaN())
			continue
		}
		slices.Sort(ds)
		m := ds[len(ds)/2]
		if len(ds)%2 == 0 {
			m = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
		b.add("ttfb", spec.ttfb, m)
		b.logf("  ttfb run %d: %.1f ms", r+1, m)
	}
}
