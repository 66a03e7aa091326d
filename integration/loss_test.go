package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

const (
	// lossySize is the size of each transfer of TestLossyTransfer.
	lossySize = 4 << 20
	// lossyRuns is the number of transfers of each kind.
	lossyRuns = 5
	// lossyMedianBound bounds the median encrypted transfer. Before the fix
	// (SACK off with near peers, a 200 ms RTO floor) most 4 MB transfers
	// at 5 % loss stalled for 30 s and more: medians of five were 37 s and
	// 60 s (the deadline), against the kernel's 0.05-1 s. After it most
	// take 1.5-5 s, but gVisor still stalls now and then for 20-60 s
	// (docs/loss-recovery.md); on a loaded 2-core machine one run in six
	// had a median of 18 s. 30 s catches the old behaviour without
	// failing on the stalls that remain.
	lossyMedianBound = 30 * time.Second
	// lossyDeadline bounds any one transfer (the test's own hang guard).
	lossyDeadline = 60 * time.Second
	// portKernelSource serves lossySize bytes from the server's own
	// address with the kernel's TCP: the baseline, measured before the
	// daemons start (the laptop's daemon would relay it).
	portKernelSource = 15200
)

// TestLossyTransfer: with 5 % of the frames dropped at random in both
// directions on a sub-millisecond path, 4 MB downloads through two daemons
// recover from loss by SACK and short timeouts instead of stalling for tens
// of seconds (docs/loss-recovery.md). The kernel's TCP over the same path
// is measured first, for the log.
func TestLossyTransfer(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, true)
	if err := tp.Bridge.SetBoth(impair.Settings{Drop: 0.05}); err != nil {
		t.Fatal(err)
	}

	l, err := tp.Server.Listen("tcp", netip.AddrPortFrom(topo.ServerIPv4, portKernelSource).String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(lossyDeadline))
			topo.BulkSend(c, lossySize, 1)
			c.Close()
		}
	}()
	var kernel []time.Duration
	for range lossyRuns {
		kernel = append(kernel, timedDownload(t, tp.Laptop, netip.AddrPortFrom(topo.ServerIPv4, portKernelSource), nil))
	}
	l.Close()
	<-done

	bb := startBulkBackends(t, tp.Server, lossySize)
	srv := startDaemon(t, tp.Server, "server", serverConfig)
	startDaemon(t, tp.Laptop, "laptop", laptopConfig)
	var enc []time.Duration
	for range lossyRuns {
		enc = append(enc, timedDownload(t, tp.Laptop, netip.AddrPortFrom(svcIPv4, portSource), bb))
	}
	t.Logf("4 MB at 5 %% loss: kernel TCP %v", kernel)
	t.Logf("4 MB at 5 %% loss: tcpcrypt   %v", enc)
	m := metrics(t, srv)
	var s strings.Builder
	for _, e := range []string{"segments_sent", "retransmits", "fast_retransmit", "timeouts", "fast_recovery", "sack_recovery", "tlp_recovery", "spurious_recovery"} {
		fmt.Fprintf(&s, " %s=%v", e, m.sum("tcpcryptd_tcp_recovery_events_total", `event="`+e+`"`))
	}
	t.Logf("server's TCP recovery:%s", s.String())
	if enc := m.sum("tcpcryptd_connections_total", `outcome="encrypted"`); enc == 0 {
		t.Error("server counted no encrypted connection")
	}
	slices.Sort(enc)
	if med := enc[len(enc)/2]; med > lossyMedianBound {
		t.Errorf("median 4 MB transfer at 5 %% loss took %v, want at most %v (loss recovery stalls)", med, lossyMedianBound)
	}
}

// timedDownload reads lossySize bytes from dst and returns how long it took
// from the dial. With b, the SHA-256 is checked against what b sent.
func timedDownload(t *testing.T, ns *topo.NS, dst netip.AddrPort, b *bulkBackends) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	defer c.Close()
	c.SetDeadline(start.Add(lossyDeadline))
	n, sum, err := topo.BulkReceive(c)
	took := time.Since(start).Round(time.Millisecond)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// A stall: it counts as the deadline towards the median.
		t.Logf("download from %s: stalled, %d bytes in %v", dst, n, took)
		return took
	}
	if err != nil || n != lossySize {
		t.Fatalf("download from %s: %d bytes after %v: %v", dst, n, took, err)
	}
	if b != nil {
		select {
		case want := <-b.sources:
			if sum != want {
				t.Fatalf("download from %s: SHA-256 %x, backend sent %x", dst, sum, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("source backend reported no completed transfer")
		}
	}
	return took
}
