package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
)

// The loss group: how each setup recovers from a lossy path. The router's
// userspace impairment bridge drops (or reorders) frames at random in both
// directions; for each condition every setup moves data in bulk for
// lossBulkDuration and then makes lossTransfers sequential 1 MB
// request/response transfers. Loss recovery is where tcpcrypt differs most
// from the others: its encrypted leg recovers with gVisor's TCP, theirs
// with the kernel's (docs/loss-recovery.md).

const (
	lossBulkDuration = 2 * time.Second
	lossTransfers    = 10
	lossTransferSize = 1 << 20
	// lossTransferTimeout bounds one transfer: a stall longer than this is
	// a failure, not a sample.
	lossTransferTimeout = 30 * time.Second
)

// lossCondition is one impairment of the group.
type lossCondition struct {
	id       string // figure ID part: "l1-d25ms"
	title    string
	settings impair.Settings
}

func lossConditions() []lossCondition {
	var cs []lossCondition
	for _, d := range []time.Duration{0, 25 * time.Millisecond} {
		for _, l := range []float64{0.001, 0.01, 0.05} {
			cs = append(cs, lossCondition{
				id:       fmt.Sprintf("l%g-d%v", l*100, d),
				title:    fmt.Sprintf("%g %% random loss each way, %v one-way delay", l*100, d),
				settings: impair.Settings{Drop: l, Delay: d},
			})
		}
	}
	return append(cs, lossCondition{
		id:       "reorder-d25ms",
		title:    "2 % of frames held back 5 ms (reordered), 25 ms one-way delay, no loss",
		settings: impair.Settings{Reorder: 0.02, ReorderDelay: 5 * time.Millisecond, Delay: 25 * time.Millisecond},
	})
}

// lossSetups are the setups the group compares.
var lossSetups = map[string]bool{"kernel": true, "tcpcrypt-aes128gcm": true, "tls13-relay": true, "wireguard-go": true}

// lossFigures are the group's tables: for each condition, bulk goodput and
// the median and slowest of the 1 MB transfers.
func lossFigures() []Figure {
	var fs []Figure
	base := []string{"kernel", "tls13-relay"}
	for _, c := range lossConditions() {
		fs = append(fs,
			Figure{ID: "loss-bulk-" + c.id, Title: "Bulk goodput, 1 stream, server to laptop, " + c.title, Unit: "MB/s", HigherIsBetter: true, Baselines: base,
				Method: fmt.Sprintf("Application bytes per second (10^6) read by one download connection in %v, the router's impairment bridge impairing every frame.", lossBulkDuration)},
			Figure{ID: "loss-p50-" + c.id, Title: "1 MB request/response, median time, " + c.title, Unit: "ms", Baselines: base,
				Method: fmt.Sprintf("From the start of connect until 1 MiB of the answer to a 1-byte request has been read; median of %d sequential connections.", lossTransfers)},
			Figure{ID: "loss-p99-" + c.id, Title: "1 MB request/response, p99 time, " + c.title, Unit: "ms", Baselines: base,
				Method: fmt.Sprintf("As above, the 99th percentile of the %d connections (with so few, the slowest one).", lossTransfers)},
		)
	}
	return fs
}

// phaseLoss runs the loss group on a topology of its own.
func (b *bench) phaseLoss(ctx context.Context) error {
	if !b.group("loss") {
		return nil
	}
	tp, be, err := b.newTopology(true)
	if err != nil {
		return err
	}
	defer tp.Close()
	defer be.stop(procStopGrace)
	b.eachSetup(ctx, tp, "loss recovery",
		func(spec setupSpec) bool { return lossSetups[spec.name] },
		func(spec setupSpec, s Setup, c *client) error {
			defer tp.Bridge.SetBoth(impair.Settings{})
			for _, cond := range lossConditions() {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := tp.Bridge.SetBoth(cond.settings); err != nil {
					return err
				}
				b.measureLoss(ctx, spec, s, c, cond)
			}
			return nil
		})
	return ctx.Err()
}

func (b *bench) measureLoss(ctx context.Context, spec setupSpec, s Setup, c *client, cond lossCondition) {
	res, err := c.bulk(ctx, s.Target(), 1, false, lossBulkDuration)
	if err != nil || res.Bytes == 0 {
		b.failure(fmt.Sprintf("%s loss bulk %s", spec.name, cond.id), fmt.Errorf("%d bytes: %v", res.Bytes, err))
		b.add("loss-bulk-"+cond.id, spec.name, math.NaN())
	} else {
		b.add("loss-bulk-"+cond.id, spec.name, res.MBps())
	}
	var ms []float64
	for range lossTransfers {
		if ctx.Err() != nil {
			return
		}
		d, err := c.transfer(ctx, s.Target(), lossTransferSize)
		if err != nil {
			b.failure(fmt.Sprintf("%s loss transfer %s", spec.name, cond.id), err)
			continue
		}
		ms = append(ms, float64(d)/float64(time.Millisecond))
	}
	if len(ms) == 0 {
		b.add("loss-p50-"+cond.id, spec.name, math.NaN())
		b.add("loss-p99-"+cond.id, spec.name, math.NaN())
		return
	}
	slices.Sort(ms)
	p50, p99 := quantile(ms, 0.5), quantile(ms, 0.99)
	b.add("loss-p50-"+cond.id, spec.name, p50)
	b.add("loss-p99-"+cond.id, spec.name, p99)
	b.logf("  %s: bulk %.1f MB/s, 1 MB p50 %.0f ms, p99 %.0f ms", cond.id, res.MBps(), p50, p99)
}

// quantile of sorted xs, nearest rank.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// transfer connects to target, asks for a download and reads n bytes of the
// answer: the time from the start of connect to the last byte.
func (c *client) transfer(ctx context.Context, target netip.AddrPort, n int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, lossTransferTimeout)
	defer cancel()
	start := time.Now()
	cn, err := c.dial(ctx, target)
	if err != nil {
		return 0, err
	}
	defer cn.Close()
	dl, _ := ctx.Deadline()
	cn.SetDeadline(dl)
	if _, err := cn.Write([]byte{opDownload}); err != nil {
		return 0, err
	}
	if _, err := io.CopyN(io.Discard, cn, n); err != nil {
		return 0, fmt.Errorf("1 MB transfer: %w", err)
	}
	return time.Since(start), nil
}
