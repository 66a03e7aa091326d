package integration

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
)

// bulkSize is the size of each impaired transfer.
const bulkSize = 100 << 20

// impairment is what the router does to every frame in both directions
// during the bulk transfers: moderate, so 100 MiB still moves in seconds.
var impairment = impair.Settings{
	Drop:         0.001,
	Duplicate:    0.002,
	Reorder:      0.002,
	ReorderDelay: time.Millisecond,
	Delay:        500 * time.Microsecond,
	Jitter:       10 * time.Microsecond,
}

// TestImpairedBulkTransfer: with loss, duplication, delay and reordering on
// the router, 100 MiB cross an encrypted connection byte-identical (SHA-256)
// up (IPv4) and down (IPv6). One direction at a time: data flowing both
// ways at once recovers from loss much more slowly in gVisor.
func TestImpairedBulkTransfer(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, true)
	bb := startBulkBackends(t, tp.Server, bulkSize)
	srv := startDaemon(t, tp.Server, "server", serverConfig)
	startDaemon(t, tp.Laptop, "laptop", laptopConfig)
	if err := tp.Bridge.SetBoth(impairment); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t.Logf("router laptop->server: %v", tp.Bridge.Counters(impair.AtoB))
		t.Logf("router server->laptop: %v", tp.Bridge.Counters(impair.BtoA))
	})

	t.Run("upload IPv4", func(t *testing.T) {
		start := time.Now()
		upload(t, tp.Laptop, netip.AddrPortFrom(svcIPv4, portSink), bulkSize)
		t.Logf("100 MiB up in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("download IPv6", func(t *testing.T) {
		start := time.Now()
		download(t, tp.Laptop, bb, netip.AddrPortFrom(svcIPv6, portSource))
		t.Logf("100 MiB down in %v", time.Since(start).Round(time.Millisecond))
	})

	// The transfers really were impaired, and really were encrypted.
	for _, d := range []impair.Direction{impair.AtoB, impair.BtoA} {
		c := tp.Bridge.Counters(d)
		if c.Dropped == 0 || c.Duplicated == 0 || c.Reordered == 0 || c.Forwarded < 50000/2 {
			t.Errorf("router %v: impairments not applied: %v", d, c)
		}
	}
	// Connections are counted when they end, which the server's relay may
	// still be doing.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := metrics(t, srv)
		enc, plain := m.sum("tcpcryptd_connections_total", `outcome="encrypted"`), m.sum("tcpcryptd_connections_total", `outcome="plain"`)
		if plain != 0 {
			t.Fatalf("server counted %v plain connections", plain)
		}
		if enc == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server counted %v encrypted connections, want the 2 transfers", enc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
