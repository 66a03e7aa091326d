package control

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource is a Source over a fixed list.
type fakeSource struct {
	mu      sync.Mutex
	conns   []Connection
	healthy error
}

func (f *fakeSource) Connections() []Connection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Connection(nil), f.conns...)
}

func (f *fakeSource) Health() (Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healthy != nil {
		return Health{}, f.healthy
	}
	return Health{Status: "ok", Version: "test", PID: 42, Device: "tcpcrypt0", Connections: len(f.conns)}, nil
}

var sid = strings.Repeat("ab", 33)

// sampleConns: an encrypted outbound IPv4 connection, a plain inbound IPv6
// one, and an outbound one still connecting.
func sampleConns() []Connection {
	ap := netip.MustParseAddrPort
	out := Connection{ID: 1, Direction: Outbound, State: "relaying",
		App:       Tuple{Local: ap("10.254.77.1:40000"), Remote: ap("192.0.2.80:443")},
		Inner:     Tuple{Local: ap("192.0.2.80:443"), Remote: ap("10.254.77.1:40000")},
		Outer:     Tuple{Local: ap("10.254.77.2:51000"), Remote: ap("192.0.2.80:443")},
		Encrypted: true, TEP: "x25519", AEAD: "aes128gcm", SessionID: sid, BytesToPeer: 10, BytesFromPeer: 20}
	in := Connection{ID: 2, Direction: Inbound, State: "relaying",
		App:      Tuple{Local: ap("[::1]:8080"), Remote: ap("[::1]:33000")},
		Inner:    Tuple{Local: ap("[::1]:33000"), Remote: ap("[::1]:8080")},
		Outer:    Tuple{Local: ap("[fd7c:e771::1]:443"), Remote: ap("[2001:db8::9]:60000")},
		Fallback: "no-eno"}
	pending := Connection{ID: 3, Direction: Outbound, State: "connecting",
		App:   Tuple{Local: ap("10.254.77.1:40001"), Remote: ap("192.0.2.81:443")},
		Inner: Tuple{Local: ap("192.0.2.81:443"), Remote: ap("10.254.77.1:40001")},
		Outer: Tuple{Remote: ap("192.0.2.81:443")}}
	return []Connection{out, in, pending}
}

func TestFind(t *testing.T) {
	conns := sampleConns()
	ap := netip.MustParseAddrPort
	tests := []struct {
		name          string
		local, remote string
		want          uint64 // 0: not found
	}{
		{"application view, outbound", "10.254.77.1:40000", "192.0.2.80:443", 1},
		{"ipv4-mapped query", "[::ffff:10.254.77.1]:40000", "[::ffff:192.0.2.80]:443", 1},
		{"daemon view of inner leg", "192.0.2.80:443", "10.254.77.1:40000", 1},
		{"outer leg", "10.254.77.2:51000", "192.0.2.80:443", 1},
		{"outer leg as the server sees it", "192.0.2.80:443", "10.254.77.2:51000", 1},
		{"backend view, inbound", "[::1]:8080", "[::1]:33000", 2},
		{"client view, inbound", "[2001:db8::9]:60000", "[fd7c:e771::1]:443", 2},
		{"connecting", "10.254.77.1:40001", "192.0.2.81:443", 3},
		{"wrong port", "10.254.77.1:40002", "192.0.2.80:443", 0},
		{"half match", "10.254.77.1:40000", "192.0.2.81:443", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := Find(conns, ap(tc.local), ap(tc.remote))
			if tc.want == 0 {
				if ok {
					t.Fatalf("found %d, want none", c.ID)
				}
				return
			}
			if !ok || c.ID != tc.want {
				t.Fatalf("found %d (%v), want %d", c.ID, ok, tc.want)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, method, target string) (*httptest.ResponseRecorder, errorBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	var eb errorBody
	if rec.Code != http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
			t.Fatalf("%s %s: error body is not JSON: %q", method, target, rec.Body)
		}
	}
	return rec, eb
}

func TestHandler(t *testing.T) {
	src := &fakeSource{conns: sampleConns()}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tcpcryptd_up 1\n")) })
	h := NewHandler(src, metrics, nil)

	tests := []struct {
		name     string
		method   string
		target   string
		status   int
		code     string
		contains string
	}{
		{"health", "GET", "/v1/health", 200, "", `"status": "ok"`},
		{"connections", "GET", "/v1/connections", 200, "", `"session_id": "` + sid + `"`},
		{"sessid outbound", "GET", "/v1/sessid?local=10.254.77.1:40000&remote=192.0.2.80:443", 200, "", `"session_id": "` + sid + `"`},
		{"sessid ipv6 escaped", "GET", "/v1/sessid?local=%5B%3A%3A1%5D%3A8080&remote=%5B%3A%3A1%5D%3A33000", 409, CodeNotEncrypted, "no-eno"},
		{"sessid connecting", "GET", "/v1/sessid?local=10.254.77.1:40001&remote=192.0.2.81:443", 409, CodeNotEncrypted, "not encrypted (yet)"},
		{"sessid unknown", "GET", "/v1/sessid?local=10.254.77.1:1&remote=192.0.2.80:443", 404, CodeNotFound, "no relayed connection"},
		{"sessid missing remote", "GET", "/v1/sessid?local=10.254.77.1:1", 400, CodeBadRequest, "parameter remote"},
		{"sessid bad local", "GET", "/v1/sessid?local=nonsense&remote=192.0.2.80:443", 400, CodeBadRequest, "parameter local"},
		{"metrics", "GET", "/metrics", 200, "", "tcpcryptd_up 1"},
		{"post", "POST", "/v1/connections", 405, CodeMethodNotAllowed, "POST"},
		{"unknown path", "GET", "/v2/stuff", 404, CodeNotFound, "/v1/health"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, eb := get(t, h, tc.method, tc.target)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if eb.Code != tc.code {
				t.Fatalf("code %q, want %q", eb.Code, tc.code)
			}
			if !strings.Contains(rec.Body.String(), tc.contains) {
				t.Fatalf("body %s does not contain %q", rec.Body, tc.contains)
			}
		})
	}

	src.mu.Lock()
	src.healthy = errors.New("device gone")
	src.mu.Unlock()
	if rec, eb := get(t, h, "GET", "/v1/health"); rec.Code != 503 || eb.Code != CodeUnavailable || !strings.Contains(eb.Error, "device gone") {
		t.Fatalf("unhealthy: %d %+v", rec.Code, eb)
	}
	if rec, _ := get(t, NewHandler(src, nil, nil), "GET", "/metrics"); rec.Code != 404 {
		t.Fatalf("no metrics handler: %d", rec.Code)
	}
}

func TestConnectionsEmptyIsList(t *testing.T) {
	rec, _ := get(t, NewHandler(&fakeSource{}, nil, nil), "GET", "/v1/connections")
	if !strings.Contains(rec.Body.String(), `"connections": []`) {
		t.Fatalf("empty table: %s", rec.Body)
	}
}

func TestConnectionJSONRoundTrip(t *testing.T) {
	in := sampleConns()
	in[0].Start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := json.Marshal(ConnectionList{Connections: in})
	if err != nil {
		t.Fatal(err)
	}
	var out ConnectionList
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Connections) != 3 || out.Connections[0].App != in[0].App || out.Connections[1].Outer != in[1].Outer ||
		!out.Connections[0].Start.Equal(in[0].Start) || out.Connections[2].Outer.Local.IsValid() {
		t.Fatalf("round trip:\n%+v\n%+v", in, out.Connections)
	}
	if !bytes.Contains(b, []byte(`"local":"[fd7c:e771::1]:443"`)) {
		t.Fatalf("addresses are not written as text: %s", b)
	}
}

// shortDir returns a directory whose socket paths fit sun_path (108 bytes).
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func serve(t *testing.T, path string, src Source) *Server {
	t.Helper()
	l, err := Listen(ListenOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(l, NewHandler(src, nil, nil))
	t.Cleanup(func() { s.Close() })
	return s
}

// checkGoroutines fails t if more goroutines run at its end than at
// this call (after a grace period for ones that are stopping).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines leaked:\n%s", runtime.NumGoroutine()-before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestClientOverSocket(t *testing.T) {
	checkGoroutines(t)
	path := filepath.Join(shortDir(t), "run", "control.sock")
	srv := serve(t, path, &fakeSource{conns: sampleConns()})

	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Health()
	if err != nil || h.Status != "ok" || h.PID != 42 {
		t.Fatalf("health %+v %v", h, err)
	}
	conns, err := c.Connections()
	if err != nil || len(conns) != 3 || conns[1].Fallback != "no-eno" {
		t.Fatalf("connections %+v %v", conns, err)
	}
	ap := netip.MustParseAddrPort
	id, err := c.SessionID(ap("10.254.77.1:40000"), ap("192.0.2.80:443"))
	if err != nil || hex.EncodeToString(id) != sid {
		t.Fatalf("session ID %x %v", id, err)
	}
	_, err = c.SessionID(ap("[::1]:8080"), ap("[::1]:33000"))
	var ae *APIError
	if !errors.Is(err, ErrNotEncrypted) || !errors.As(err, &ae) || ae.Reason != "no-eno" || errors.Is(err, ErrNotFound) {
		t.Fatalf("plain connection: %v", err)
	}
	if _, err := c.SessionID(ap("10.0.0.1:1"), ap("10.0.0.2:2")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown connection: %v", err)
	}
	if cn, err := c.Lookup(ap("10.254.77.1:40000"), ap("192.0.2.80:443")); err != nil || cn.ID != 1 {
		t.Fatalf("lookup %+v %v", cn, err)
	}
	if _, err := c.Metrics(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("metrics without handler: %v", err)
	}

	srv.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
	if _, err := Dial(path); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Fatalf("dial after close: %v", err)
	}
}

func TestListenModeAndDirectory(t *testing.T) {
	dir := filepath.Join(shortDir(t), "new")
	path := filepath.Join(dir, "c.sock")
	l, err := Listen(ListenOptions{Path: path, Mode: 0o660, Group: currentGroup(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v", fi.Mode())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o755 {
		t.Fatalf("directory mode %v", di.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if _, err := Listen(ListenOptions{Path: filepath.Join(dir, "d.sock"), Group: "no-such-group-tcpcryptd"}); err == nil {
		t.Fatal("unknown group accepted")
	}
}

func currentGroup(t *testing.T) string {
	t.Helper()
	// Group names need a lookup; the numeric gid of the process is enough
	// to prove the chown works when the name resolves.
	if _, err := os.Stat("/etc/group"); err != nil {
		return ""
	}
	if os.Getgid() == 0 {
		return "root"
	}
	return ""
}

func TestListenStaleAndInUse(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "c.sock")

	// A socket nobody answers on: bound, then the listener dropped without
	// removing the file, as after a crash.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	l, err := Listen(ListenOptions{Path: path})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}

	// A socket someone answers on is left alone.
	if _, err := Listen(ListenOptions{Path: path}); !errors.Is(err, ErrInUse) {
		t.Fatalf("live socket: %v", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("live socket was disturbed: %v", err)
	} else {
		c.Close()
	}
	l.Close()

	// A regular file is never removed.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenOptions{Path: path}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("regular file changed")
	}
	if _, err := Listen(ListenOptions{Path: "relative.sock"}); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestCloseKeepsReplacedSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "c.sock")
	l, err := Listen(ListenOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	// Another process takes the path over (e.g. after removing ours).
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed a socket that was not ours: %v", err)
	}
}
