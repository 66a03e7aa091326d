package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/link"
)

type fakeTable []stack.ConnInfo

func (f fakeTable) List() []stack.ConnInfo { return f }
func (f fakeTable) Len() int               { return len(f) }

var (
	ap         = netip.MustParseAddrPort
	sessionHex = "23" + strings.Repeat("5a", 32)
)

func encryptedOutbound() stack.ConnInfo {
	sid := []byte{0x23}
	sid = append(sid, bytes.Repeat([]byte{0x5a}, 32)...)
	return stack.ConnInfo{ID: 7, Direction: stack.Outbound, State: stack.StateRelaying,
		Inner:     stack.Tuple{Local: ap("192.0.2.80:443"), Remote: ap("10.254.77.1:40000")},
		Outer:     stack.Tuple{Local: ap("10.254.77.2:51000"), Remote: ap("192.0.2.80:443")},
		Start:     time.Unix(1000, 0),
		Encrypted: true, TEP: kex.X25519, AEAD: schedule.AES256GCM, Resumed: true, SessionID: sid,
		BytesInnerToOuter: 100, BytesOuterToInner: 2000}
}

func plainInbound() stack.ConnInfo {
	return stack.ConnInfo{ID: 8, Direction: stack.Inbound, State: stack.StateClosing,
		Inner:  stack.Tuple{Local: ap("127.0.0.1:33000"), Remote: ap("127.0.0.1:8080")},
		Outer:  stack.Tuple{Local: ap("10.254.78.1:443"), Remote: ap("192.0.2.9:60000")},
		Reason: eno.ReasonNoENO, BytesInnerToOuter: 5, BytesOuterToInner: 6}
}

func TestAPIConnection(t *testing.T) {
	c := apiConnection(encryptedOutbound())
	want := control.Connection{ID: 7, Direction: "outbound", State: "relaying",
		App:   control.Tuple{Local: ap("10.254.77.1:40000"), Remote: ap("192.0.2.80:443")},
		Inner: control.Tuple{Local: ap("192.0.2.80:443"), Remote: ap("10.254.77.1:40000")},
		Outer: control.Tuple{Local: ap("10.254.77.2:51000"), Remote: ap("192.0.2.80:443")},
		Start: time.Unix(1000, 0), Encrypted: true, TEP: "x25519", AEAD: "aes256gcm", Resumed: true,
		SessionID: sessionHex, BytesToPeer: 100, BytesFromPeer: 2000}
	if c != want {
		t.Fatalf("outbound\n got %+v\nwant %+v", c, want)
	}
	p := apiConnection(plainInbound())
	if p.Encrypted || p.TEP != "" || p.SessionID != "" || p.Fallback != "no-eno" || p.App.Local != ap("127.0.0.1:8080") || p.Direction != "inbound" {
		t.Fatalf("inbound %+v", p)
	}
	// A connection still being dialled has no reason yet.
	pending := stack.ConnInfo{Direction: stack.Outbound, State: stack.StateConnecting}
	if c := apiConnection(pending); c.Fallback != "" || c.Encrypted {
		t.Fatalf("pending %+v", c)
	}

	// The whole path: control handler over the source finds it by the
	// application's view of its socket.
	src := &apiSource{device: "tc0", started: time.Now()}
	src.setTable(fakeTable{encryptedOutbound(), plainInbound()})
	if _, err := src.Health(); err == nil {
		t.Fatal("healthy before ready")
	}
	src.ready.Store(true)
	if h, err := src.Health(); err != nil || h.Connections != 2 || h.Device != "tc0" {
		t.Fatalf("health %+v %v", h, err)
	}
	got, ok := control.Find(src.Connections(), ap("10.254.77.1:40000"), ap("192.0.2.80:443"))
	if !ok || got.SessionID != sessionHex {
		t.Fatalf("find %+v %v", got, ok)
	}
	if got, ok := control.Find(src.Connections(), ap("127.0.0.1:8080"), ap("127.0.0.1:33000")); !ok || got.ID != 8 {
		t.Fatalf("backend view %+v %v", got, ok)
	}
	src.stopping.Store(true)
	if _, err := src.Health(); err == nil {
		t.Fatal("healthy while stopping")
	}
}

func TestClassify(t *testing.T) {
	enc, plain := encryptedOutbound(), plainInbound()
	tests := []struct {
		name                   string
		ci                     stack.ConnInfo
		err                    error
		outcome, reason, cause string
	}{
		{"clean encrypted", enc, nil, outcomeEncrypted, "", ""},
		{"clean plain", plain, nil, outcomePlain, "no-eno", ""},
		{"auth failure", enc, &stack.RelayError{Dir: "outer->inner", Err: fmt.Errorf("read: %w", tcpcrypt.ErrAuth)}, outcomeEncrypted, "", "auth"},
		{"truncated", enc, &stack.RelayError{Dir: "outer->inner", Err: tcpcrypt.ErrTruncated}, outcomeEncrypted, "", "truncated"},
		{"reset", enc, &stack.RelayError{Dir: "outer->inner", Err: tcpcrypt.ErrAborted}, outcomeEncrypted, "", "reset"},
		{"plain reset", plain, &stack.RelayError{Dir: "inner->outer", Err: &net.OpError{Op: "read", Err: &stack.NetError{Text: "connection reset by peer", Errno: syscall.ECONNRESET}}}, outcomePlain, "no-eno", "reset"},
		{"plain timeout", plain, &stack.RelayError{Dir: "inner->outer", Err: &net.OpError{Op: "read", Err: &stack.NetError{Text: "operation timed out", Errno: syscall.ETIMEDOUT}}}, outcomePlain, "no-eno", "timeout"},
		{"plain relay error", plain, &stack.RelayError{Dir: "inner->outer", Err: errors.New("boom")}, outcomePlain, "no-eno", "error"},
		{"refused", stack.ConnInfo{Direction: stack.Outbound}, fmt.Errorf("outer dial: %w", &stack.RefusedError{Reason: eno.ReasonStripped}), outcomeRefused, "stripped", ""},
		{"dial failed", stack.ConnInfo{Direction: stack.Outbound}, errors.New("outer dial: connection refused"), outcomeFailed, "dial", ""},
		{"handshake failed", stack.ConnInfo{Direction: stack.Outbound}, fmt.Errorf("outer dial: %w", &tcpcrypt.HandshakeError{Reason: "bad-message"}), outcomeFailed, "handshake", ""},
		{"backend failed", stack.ConnInfo{Direction: stack.Inbound}, errors.New("backend dial: refused"), outcomeFailed, "backend", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, r, c := classify(tc.ci, tc.err)
			if o != tc.outcome || r != tc.reason || c != tc.cause {
				t.Fatalf("got %q %q %q, want %q %q %q", o, r, c, tc.outcome, tc.reason, tc.cause)
			}
		})
	}
}

// scrape returns the metrics text of a collector.
func scrape(t *testing.T, col *collector) string {
	t.Helper()
	_, h := newMetrics(col)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	var logBuf bytes.Buffer
	obs := newConnObserver(slog.New(slog.NewTextHandler(&logBuf, nil)))
	var ready atomic.Bool
	col := newCollector(obs, &ready)

	// Before the stack exists: build info, not ready, no panics.
	text := scrape(t, col)
	for _, want := range []string{`tcpcryptd_build_info{version="` + version + `"} 1`, "tcpcryptd_ready 0"} {
		if !strings.Contains(text, want) {
			t.Fatalf("early scrape lacks %q", want)
		}
	}

	// Connections end: one clean encrypted, one aborted by an
	// authentication failure, one plain, one refused.
	obs.done(encryptedOutbound(), nil)
	obs.done(encryptedOutbound(), &stack.RelayError{Dir: "outer->inner", Err: tcpcrypt.ErrAuth})
	obs.done(plainInbound(), nil)
	obs.done(stack.ConnInfo{Direction: stack.Outbound}, &stack.RefusedError{Reason: eno.ReasonNoENO})

	var counters stack.Counters
	counters.Handshakes.Add(5)
	counters.Resumed.Add(2)
	counters.RequiredRefusals.Add(3)
	counters.Rewrites.Add(11)
	counters.Enabled.Add(4)
	counters.ForwardLoops.Add(6)
	counters.NoSACK.Add(7)
	counters.ResumeChains.Store(12)
	counters.ResumeEvictedOther.Add(8)
	counters.RekeyFloods.Add(8)
	counters.HandshakesEvicted.Add(12)
	counters.HandshakeCPULimited.Add(13)
	live := encryptedOutbound() // still relaying: its bytes count too
	col.setSources(&metricSources{
		counters: &counters,
		table:    fakeTable{live},
		flows:    func() int { return 9 },
		link:     func() link.Stats { return link.Stats{RXPackets: 40, TXBytes: 5000, RXDropChecksum: 2, TXErrors: 1} },
		tcp:      func() stack.TCPRecoveryStats { return stack.TCPRecoveryStats{Timeouts: 5, SACKRecovery: 6} },
	})
	ready.Store(true)
	text = scrape(t, col)
	for _, want := range []string{
		"tcpcryptd_ready 1",
		`tcpcryptd_connections_total{direction="outbound",outcome="encrypted",reason=""} 2`,
		`tcpcryptd_connections_total{direction="inbound",outcome="plain",reason="no-eno"} 1`,
		`tcpcryptd_connections_total{direction="outbound",outcome="refused",reason="no-eno"} 1`,
		`tcpcryptd_connections_aborted_total{cause="auth",direction="outbound"} 1`,
		"tcpcryptd_auth_failures_total 1",
		`tcpcryptd_connections_active{direction="outbound"} 1`,
		`tcpcryptd_connections_active{direction="inbound"} 0`,
		`tcpcryptd_handshakes_total{kind="fresh"} 3`,
		`tcpcryptd_handshakes_total{kind="resumed"} 2`,
		"tcpcryptd_eno_required_refusals_total 3",
		"tcpcryptd_eno_enabled_total 4",
		"tcpcryptd_forward_loops_total 6",
		"tcpcryptd_no_sack_connections_total 7",
		`tcpcryptd_tcp_recovery_events_total{event="timeouts"} 5`,
		`tcpcryptd_tcp_recovery_events_total{event="sack_recovery"} 6`,
		"tcpcryptd_resumption_cache_chains 12",
		`tcpcryptd_resumption_cache_drops_total{reason="evicted_other"} 8`,
		"tcpcryptd_rekey_floods_total 8",
		`tcpcryptd_handshake_limit_events_total{event="evicted"} 12`,
		`tcpcryptd_handshake_limit_events_total{event="cpu_budget"} 13`,
		`tcpcryptd_handshake_limit_events_total{event="init1_timeout"} 0`,
		`tcpcryptd_shim_segments_total{event="rewritten"} 11`,
		"tcpcryptd_shim_flows 9",
		// 2 ended encrypted (100 each) + 1 plain (5) + live (100).
		`tcpcryptd_relayed_bytes_total{direction="to_peer"} 305`,
		`tcpcryptd_relayed_bytes_total{direction="from_peer"} 6006`,
		`tcpcryptd_link_packets_total{direction="rx"} 40`,
		`tcpcryptd_link_bytes_total{direction="tx"} 5000`,
		`tcpcryptd_link_drops_total{direction="rx",reason="checksum"} 2`,
		`tcpcryptd_link_errors_total{direction="tx"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	// One info line per connection, naming the ends and the outcome.
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines:\n%s", len(lines), logBuf.String())
	}
	for i, want := range []string{
		"app=10.254.77.1:40000 dst=192.0.2.80:443 outcome=encrypted tep=x25519 aead=aes256gcm resumed=true session=235a5a5a5a5a5a5a…",
		"aborted=auth",
		"client=192.0.2.9:60000 service=10.254.78.1:443 backend=127.0.0.1:8080 outcome=plain reason=no-eno",
		"outcome=refused reason=no-eno",
	} {
		if !strings.Contains(lines[i], "level=INFO") || !strings.Contains(lines[i], want) {
			t.Errorf("log line %d %q lacks %q", i, lines[i], want)
		}
	}
	if strings.Contains(logBuf.String(), sessionHex) {
		t.Error("full session ID in the info log; expected an abbreviation")
	}
}

func TestMetricsOnly(t *testing.T) {
	var ready atomic.Bool
	_, h := newMetrics(newCollector(newConnObserver(slog.New(slog.DiscardHandler)), &ready))
	m := metricsOnly(h)
	for path, code := range map[string]int{"/metrics": 200, "/v1/connections": 404, "/v1/health": 404} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != code {
			body, _ := io.ReadAll(rec.Body)
			t.Errorf("%s: %d, want %d (%s)", path, rec.Code, code, body)
		}
	}
}
