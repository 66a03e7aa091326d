package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestRequiredPolicyRefused: the laptop requires encryption to port
// portRequired of the server subnet, and the server does not run tcpcryptd.
// The application sees the connection refused (or reset), promptly, not a
// hang; opportunistic connections to the same server keep working.
func TestRequiredPolicyRefused(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	var accepted atomic.Int64
	l, err := tp.Server.Listen("tcp", fmt.Sprintf("[::]:%d", portRequired))
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
			accepted.Add(1)
			// Hold it open: the server itself never refuses.
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				c.Read(make([]byte, 1))
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	startWebBackend(t, tp.Server, false, fmt.Sprintf("[::]:%d", portPlain))
	lap := startDaemon(t, tp.Laptop, "laptop", laptopConfig)

	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(fam.server, portRequired)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			c, err := tp.Laptop.DialContext(ctx, "tcp", dst.String())
			if err == nil {
				// Accept either refusal at connect or a reset right after.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			elapsed := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("connection to %v hung (%v after %v), want a refusal", dst, err, elapsed)
			}
			if !errIsRefusal(err) {
				t.Fatalf("connection to %v: %v after %v, want connection refused or reset", dst, err, elapsed)
			}
			t.Logf("refused after %v: %v", elapsed.Round(time.Millisecond), err)

			// Opportunistic traffic to the same host is unaffected.
			body, _, _ := webGet(t, tp.Laptop, urlFor(fam.server, portPlain, "/ok"))
			if body == "" {
				t.Fatal("plain request failed")
			}
		})
	}
	if n := metrics(t, lap).sum("tcpcryptd_eno_required_refusals_total"); n < 2 {
		t.Errorf("laptop counted %v required-policy refusals, want 2", n)
	}
}
