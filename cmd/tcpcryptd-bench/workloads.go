package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// client runs the workloads from the laptop namespace. Every socket is
// created on a thread inside the namespace (topo.NS.Do or inNS).
type client struct {
	ns *topo.NS
}

func (c *client) dial(ctx context.Context, target netip.AddrPort) (*net.TCPConn, error) {
	conn, err := c.ns.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// inNS runs n copies of f concurrently, each on its own OS thread inside the
// client's namespace for its whole life, so hot loops dial without entering
// the namespace per connection. It returns the first error.
func (c *client) inNS(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = topo.InNamespace(c.ns.Handle(), func() error { return f(i) })
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ping is one connection of the connection-rate figure: connect, one byte
// each way, and close after the backend has closed (so TIME_WAIT stays on the
// server side, as with a typical request/response protocol).
func ping(ctx context.Context, d *net.Dialer, target string) error {
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte{opPing}); err != nil {
		return err
	}
	var b [2]byte
	n, err := io.ReadFull(conn, b[:1])
	if err != nil {
		return err
	}
	if n != 1 || b[0] != 'p' {
		return fmt.Errorf("ping: answer %q", b[:n])
	}
	if n, err := conn.Read(b[:]); n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("ping: expected EOF, got %d bytes, %v", n, err)
	}
	return nil
}

func (c *client) ping(ctx context.Context, target netip.AddrPort) error {
	return c.inNS(1, func(int) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return ping(ctx, &net.Dialer{}, target.String())
	})
}

// bulkResult is one bulk run: application bytes delivered and the time taken.
type bulkResult struct {
	Bytes   int64
	Elapsed time.Duration
}

func (r bulkResult) MBps() float64 { return float64(r.Bytes) / r.Elapsed.Seconds() / 1e6 }

// bulk moves data over streams parallel connections for about d: up (laptop
// to server: time until the backend has confirmed every byte) or down (server
// to laptop: bytes read until d has passed). Connections are set up before
// the clock starts.
func (c *client) bulk(ctx context.Context, target netip.AddrPort, streams int, up bool, d time.Duration) (bulkResult, error) {
	conns := make([]*net.TCPConn, 0, streams)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	op := byte(opDownload)
	if up {
		op = opUpload
	}
	for range streams {
		cn, err := c.dial(ctx, target)
		if err != nil {
			return bulkResult{}, err
		}
		conns = append(conns, cn)
		if _, err := cn.Write([]byte{op}); err != nil {
			return bulkResult{}, err
		}
	}
	var total atomic.Int64
	errs := make([]error, streams)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i, cn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cn.SetDeadline(deadline.Add(60 * time.Second)) // never hang
			buf := make([]byte, bulkChunk)
			if up {
				fillPattern(buf)
				for time.Now().Before(deadline) {
					if _, err := cn.Write(buf); err != nil {
						errs[i] = err
						return
					}
				}
				if err := cn.CloseWrite(); err != nil {
					errs[i] = err
					return
				}
				var ans [8]byte
				if _, err := io.ReadFull(cn, ans[:]); err != nil {
					errs[i] = fmt.Errorf("upload answer: %w", err)
					return
				}
				total.Add(int64(binary.BigEndian.Uint64(ans[:])))
				return
			}
			cn.SetReadDeadline(deadline)
			for {
				n, err := cn.Read(buf)
				total.Add(int64(n))
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs[i] = err
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	r := bulkResult{Bytes: total.Load(), Elapsed: time.Since(start)}
	return r, errors.Join(errs...)
}

// connRate runs workers loops of ping for d and returns completed connections
// per second and the number that failed.
func (c *client) connRate(ctx context.Context, target netip.AddrPort, workers int, d time.Duration) (float64, int64, error) {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	err := c.inNS(workers, func(int) error {
		dialer := &net.Dialer{}
		for time.Now().Before(deadline) && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ping(pctx, dialer, target.String())
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				continue
			}
			ok.Add(1)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return 0, failed.Load(), err
	}
	if ok.Load() == 0 {
		return 0, failed.Load(), fmt.Errorf("no connection completed: %v", firstErr.Load())
	}
	return float64(ok.Load()) / elapsed.Seconds(), failed.Load(), nil
}

// ttfb is the time from the start of connect to the first byte of the
// response to a 100-byte request.
func (c *client) ttfb(ctx context.Context, target netip.AddrPort) (time.Duration, error) {
	var dt time.Duration
	err := c.inNS(1, func(int) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req := make([]byte, rrSize)
		req[0] = opRequest
		start := time.Now()
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", target.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(req); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, req[:1]); err != nil {
			return err
		}
		dt = time.Since(start)
		_, err = io.ReadFull(conn, req[1:])
		return err
	})
	return dt, err
}

// requestResponse opens one connection and makes k 100-byte request/response
// exchanges on it (the first is the one that carries the operation byte).
func (c *client) requestResponse(ctx context.Context, target netip.AddrPort, k int) error {
	conn, err := c.dial(ctx, target)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, rrSize)
	buf[0] = opRequest
	for range k {
		if _, err := conn.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
	}
	return nil
}

// openIdle opens n connections that have exchanged one byte each way and then
// stay idle; par at a time.
func (c *client) openIdle(ctx context.Context, target netip.AddrPort, n, par int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	err := c.inNS(par, func(int) error {
		d := &net.Dialer{}
		for {
			i := int(next.Add(1) - 1)
			if i >= n || ctx.Err() != nil {
				return ctx.Err()
			}
			conn, err := d.DialContext(ctx, "tcp", target.String())
			if err != nil {
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			conns[i] = conn
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := conn.Write([]byte{opIdle}); err != nil {
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			var b [1]byte
			if _, err := io.ReadFull(conn, b[:]); err != nil {
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			conn.SetDeadline(time.Time{})
		}
	})
	if err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// linkCounters are an interface's byte and packet counters (both directions).
type linkCounters struct {
	Bytes, Packets uint64
}

// ipBytes is the traffic at the IP layer: the Ethernet header of every frame
// removed.
func (a linkCounters) ipBytesSince(b linkCounters) uint64 {
	return (a.Bytes - b.Bytes) - 14*(a.Packets-b.Packets)
}

func readLink(ns *topo.NS, iface string) (linkCounters, error) {
	s, err := linkStats(ns, iface)
	if err != nil {
		return linkCounters{}, err
	}
	return linkCounters{Bytes: s.RxBytes + s.TxBytes, Packets: s.RxPackets + s.TxPackets}, nil
}

// linkStats reads an interface's kernel counters.
func linkStats(ns *topo.NS, iface string) (netlink.LinkStatistics, error) {
	l, err := ns.Netlink().LinkByName(iface)
	if err != nil {
		return netlink.LinkStatistics{}, fmt.Errorf("%s %s: %w", ns, iface, err)
	}
	if l.Attrs().Statistics == nil {
		return netlink.LinkStatistics{}, fmt.Errorf("%s %s: no statistics", ns, iface)
	}
	return *l.Attrs().Statistics, nil
}

// tunStats are a setup's TUN devices' counters, one entry per device in
// the order of tunUser.TUNs (nil for a setup without any). From the
// kernel's side: tx is what the process read, rx what it wrote.
type tunStats []netlink.LinkStatistics

func readTUNs(s Setup) (tunStats, error) {
	u, ok := s.(tunUser)
	if !ok {
		return nil, nil
	}
	var st tunStats
	for _, d := range u.TUNs() {
		ls, err := linkStats(d.ns, d.name)
		if err != nil {
			return nil, err
		}
		st = append(st, ls)
	}
	return st, nil
}

// packetsSince is the packets through all devices since before.
func (a tunStats) packetsSince(before tunStats) uint64 {
	var n uint64
	for i := range a {
		n += a[i].RxPackets + a[i].TxPackets - before[i].RxPackets - before[i].TxPackets
	}
	return n
}

// describeSince tells, per device, how many packets the process read and
// wrote since before and their average size: the diagnosis for a
// tun-packets figure.
func (a tunStats) describeSince(before tunStats, names []tunDevice) string {
	var b strings.Builder
	avg := func(bytes, pkts uint64) uint64 {
		if pkts == 0 {
			return 0
		}
		return bytes / pkts
	}
	for i := range a {
		r := a[i].TxPackets - before[i].TxPackets
		w := a[i].RxPackets - before[i].RxPackets
		fmt.Fprintf(&b, " %s: read %d (avg %d B), wrote %d (avg %d B);", names[i].ns, r,
			avg(a[i].TxBytes-before[i].TxBytes, r), w, avg(a[i].RxBytes-before[i].RxBytes, w))
	}
	return b.String()
}

// machineBusy returns the jiffies all CPUs spent not idle (from /proc/stat).
func machineBusy() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", s, err)
		}
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest times are in user already
			continue
		}
		busy += v
	}
	return busy, nil
}

// procsStat sums CPU ticks and RSS over procs.
func procsStat(procs []Proc) (map[string]ProcStat, error) {
	m := make(map[string]ProcStat, len(procs))
	for _, p := range procs {
		s, err := readProcStat(p.PID)
		if err != nil {
			return nil, err
		}
		m[p.Role] = s
	}
	return m, nil
}

func cpuTicks(m map[string]ProcStat) uint64 {
	var t uint64
	for _, s := range m {
		t += s.CPUTicks
	}
	return t
}
