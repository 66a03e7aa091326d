package main

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/control"
)

func TestRenderStatus(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ap := netip.MustParseAddrPort
	h := control.Health{Status: "ok", Version: "1.2.3", PID: 77, Device: "tcpcrypt0", Started: now.Add(-90 * time.Minute)}
	conns := []control.Connection{
		{ID: 1, Direction: control.Outbound, State: "relaying",
			App:   control.Tuple{Local: ap("10.254.77.1:40000"), Remote: ap("192.0.2.80:443")},
			Outer: control.Tuple{Local: ap("10.254.77.2:51000"), Remote: ap("192.0.2.80:443")},
			Start: now.Add(-1500 * time.Millisecond), Encrypted: true, TEP: "x25519", AEAD: "aes128gcm", Resumed: true,
			SessionID: "2300112233445566778899aabbccddeeff", BytesToPeer: 512, BytesFromPeer: 3 << 20},
		{ID: 2, Direction: control.Inbound, State: "closing",
			App:   control.Tuple{Local: ap("127.0.0.1:8080"), Remote: ap("127.0.0.1:33000")},
			Outer: control.Tuple{Local: ap("[fd7c:e771::1]:443"), Remote: ap("[2001:db8::9]:60000")},
			Start: now.Add(-2 * time.Minute), Fallback: "no-eno", BytesToPeer: 1536},
		{ID: 3, Direction: control.Outbound, State: "connecting",
			App:   control.Tuple{Local: ap("10.254.77.1:40001"), Remote: ap("192.0.2.81:443")},
			Outer: control.Tuple{Remote: ap("192.0.2.81:443")}, Start: now},
	}
	var b bytes.Buffer
	renderStatus(&b, h, conns, now)
	want := `tcpcryptd 1.2.3 (pid 77) on tcpcrypt0, up 1h30m0s: ok
ID  DIR  LOCAL               REMOTE               STATE       CRYPTO                    SESSION            SENT     RECV     AGE
1   out  10.254.77.1:40000   192.0.2.80:443       relaying    x25519/aes128gcm resumed  2300112233445566…  512 B    3.0 MiB  1.5s
2   in   [fd7c:e771::1]:443  [2001:db8::9]:60000  closing     plain (no-eno)            -                  1.5 KiB  0 B      2m0s
3   out  10.254.77.1:40001   192.0.2.81:443       connecting  -                         -                  0 B      0 B      0s
3 connections: 1 encrypted, 1 plain, 1 being set up
`
	if b.String() != want {
		t.Fatalf("status table\n--- got\n%s--- want\n%s", b.String(), want)
	}

	b.Reset()
	renderStatus(&b, control.Health{}, nil, now)
	if got := b.String(); !strings.Contains(got, "starting or stopping") || !strings.Contains(got, "no connections") {
		t.Fatalf("empty status %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}, {1 << 60, "1024.0 PiB"}} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestStatusExitCodeTracksReadiness: status exits exitNotReady while the
// daemon answers but is starting or stopping, and 0 only once it is ready,
// so scripts can wait on it (the table is printed either way).
func TestStatusExitCodeTracksReadiness(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := control.Listen(control.ListenOptions{Path: sock})
	if err != nil {
		t.Fatal(err)
	}
	src := &apiSource{device: "tc0", started: time.Now()}
	srv := control.Serve(l, control.NewHandler(src, nil, nil))
	t.Cleanup(func() { srv.Close() })

	for _, json := range []bool{false, true} {
		args := []string{"status", "--control-socket", sock}
		if json {
			args = append(args, "--json")
		}
		src.ready.Store(false)
		src.stopping.Store(false)
		if code, out, stderr := runCLI(t, args...); code != exitNotReady || !strings.Contains(stderr, "not ready") {
			t.Fatalf("%v while starting: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
		src.ready.Store(true)
		if code, out, stderr := runCLI(t, args...); code != exitOK {
			t.Fatalf("%v when ready: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
		src.stopping.Store(true)
		if code, _, _ := runCLI(t, args...); code != exitNotReady {
			t.Fatalf("%v while stopping: exit %d", args, code)
		}
	}
}
