package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// TestENOStrippedFallsBack: a middlebox that strips the ENO option never
// breaks a connection in opportunistic mode (DESIGN "Fallback"): stripped
// from the SYN, from the SYN-ACK, or from everything the laptop sends, the
// connection falls back to plain TCP on both ends (ENO-19) and works.
func TestENOStrippedFallsBack(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, true)
	web := startWebBackend(t, tp.Server, true, fmt.Sprintf("127.0.0.1:%d", portWebBack), fmt.Sprintf("[::1]:%d", portWebBack))
	srv := startDaemon(t, tp.Server, "server", serverConfig)
	lap := startDaemon(t, tp.Laptop, "laptop", laptopConfig)

	for i, tc := range []struct {
		name  string
		dir   impair.Direction
		strip impair.Strip
	}{
		{"from SYN", impair.AtoB, impair.Strip{Kind: impair.OptENO, Which: impair.StripSYN}},
		{"from SYN-ACK", impair.BtoA, impair.Strip{Kind: impair.OptENO, Which: impair.StripSYNACK}},
		{"from every laptop segment", impair.AtoB, impair.Strip{Kind: impair.OptENO, Which: impair.StripAll}},
	} {
		fam := families[i%2]
		t.Run(tc.name+" "+fam.name, func(t *testing.T) {
			tp.Bridge.SetBoth(impair.Settings{})
			if err := tp.Bridge.Set(tc.dir, impair.Settings{Strip: tc.strip}); err != nil {
				t.Fatal(err)
			}
			stripped := tp.Bridge.Counters(tc.dir).Stripped
			body, local, remote := webGet(t, tp.Laptop, urlFor(fam.svc, portWeb, "/stripped"))
			if !strings.Contains(body, markerResp) {
				t.Fatalf("response %q", body)
			}
			if tp.Bridge.Counters(tc.dir).Stripped == stripped {
				t.Fatal("the bridge stripped nothing")
			}
			lc := lap.connection(local, remote)
			if lc.Encrypted || lc.Fallback == "" {
				t.Fatalf("laptop: %+v, want plain with a reason", lc)
			}
			bc := web.last(t)
			if bc.err != nil {
				t.Fatal(bc.err)
			}
			if _, ok := bc.hdr.SessionID(); ok {
				t.Fatal("PROXY header carries a session ID for a fallen-back connection")
			}
			sc := srv.connection(bc.local, bc.remote)
			if sc.Encrypted || sc.Fallback == "" {
				t.Fatalf("server: %+v, want plain with a reason", sc)
			}
			t.Logf("laptop fallback %q, server fallback %q", lc.Fallback, sc.Fallback)
		})
	}
}

// TestTamperDetected (TC-30, RFC 8548 §3.6): bytes altered on the wire (TCP
// checksum fixed, so only tcpcrypt's AEAD can notice) never reach the
// backend: the connection is aborted, the backend has received only an
// untouched prefix, and the server counts an authentication failure.
func TestTamperDetected(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, true)
	bb := startBulkBackends(t, tp.Server, 1<<20)
	srv := startDaemon(t, tp.Server, "server", serverConfig)
	lap := startDaemon(t, tp.Laptop, "laptop", laptopConfig)

	dst := netip.AddrPortFrom(svcIPv4, portSink)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tp.Laptop.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	const seed = 1234
	if lc := lap.connection(addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())); !lc.Encrypted {
		t.Fatalf("connection not encrypted: %+v", lc)
	}
	// A clean first part, then every data segment towards the server is
	// corrupted.
	w := &countingWriter{w: c}
	go func() {
		time.Sleep(200 * time.Millisecond)
		tp.Bridge.Set(impair.AtoB, impair.Settings{Corrupt: 1})
	}()
	_, sendErr := topo.BulkSend(slowWriter{w}, 8<<20, seed)
	var readErr error
	if sendErr == nil {
		c.(*net.TCPConn).CloseWrite()
		_, readErr = io.ReadAll(c)
	}
	t.Logf("laptop: wrote %d bytes, send error %v, read error %v", w.n, sendErr, readErr)
	if sendErr == nil && readErr == nil {
		t.Error("the application saw a clean end of a tampered connection")
	}

	var r sinkResult
	select {
	case r = <-bb.sinks:
	case <-time.After(20 * time.Second):
		t.Fatal("backend connection did not end")
	}
	// Whatever reached the backend is exactly the start of what was sent.
	if prefix, _ := topo.BulkSend(io.Discard, r.n, seed); r.sum != prefix {
		t.Fatalf("backend received %d bytes that are not the sent prefix: altered data got through", r.n)
	}
	if r.err == nil && r.n == 8<<20 {
		t.Fatal("backend received the whole stream through a tampering router")
	}
	t.Logf("backend: %d bytes (untouched prefix), end: %v", r.n, r.err)
	if n := tp.Bridge.Counters(impair.AtoB).Corrupted; n == 0 {
		t.Fatal("the bridge corrupted nothing")
	}
	deadline := time.Now().Add(5 * time.Second)
	for metrics(t, srv).sum("tcpcryptd_auth_failures_total") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("server counted no authentication failure")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// slowWriter paces writes (64 KiB every 10ms) so the corruption starts while
// the stream is still flowing.
type slowWriter struct{ w io.Writer }

func (s slowWriter) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		k := min(len(b), 64<<10)
		m, err := s.w.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
		time.Sleep(10 * time.Millisecond)
	}
	return n, nil
}
