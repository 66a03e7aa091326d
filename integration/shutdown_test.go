package integration

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestStopUnderInboundTraffic: SIGTERM stops the laptop's daemon cleanly
// (within the 15 s stop allows) while uploads pour into its TUN device.
// gVisor's Stack.Wait detaches the NIC with its stack lock held, and a
// packet being delivered needs that lock: unless the daemon stops its TUN
// reader first, the two wait for each other for ever. Two CPUs, so that the
// reader delivers while the main goroutine tears the stack down.
func TestStopUnderInboundTraffic(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	startBulkBackends(t, tp.Server, bulkSize)
	startDaemon(t, tp.Server, "server", serverConfig)
	for round := range 5 {
		d := startDaemon(t, tp.Laptop, "laptop", func(sock string) string {
			return laptopConfig(sock) + "\n[runtime]\ncpus = 2\n"
		})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, dst := range []netip.Addr{svcIPv4, svcIPv6} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := tp.Laptop.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, portSink).String())
				if err != nil {
					t.Errorf("dial %v: %v", dst, err)
					return
				}
				defer c.Close()
				// A write blocked on a vanished peer ends with the round.
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				b := make([]byte, 64<<10)
				for ctx.Err() == nil {
					if _, err := c.Write(b); err != nil {
						return // the daemon went away: expected
					}
				}
			}()
		}
		for range 4 { // new connections keep coming after the daemon resets the old
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
					if c, err := tp.Laptop.DialContext(dctx, "tcp", netip.AddrPortFrom(svcIPv6, portSink).String()); err == nil {
						c.Close()
					}
					dcancel()
				}
			}()
		}
		time.Sleep(500 * time.Millisecond) // let the uploads get going
		start := time.Now()
		d.stop() // fails the test unless the daemon exits cleanly within 15 s
		t.Logf("round %d: stopped in %v", round, time.Since(start).Round(time.Millisecond))
		cancel()
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}
