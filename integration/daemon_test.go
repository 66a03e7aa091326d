package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// Addresses of the services a server's tcpcryptd terminates (routed to the
// server by the router, into the TUN by the daemon) and their backends.
var (
	svcIPv4 = netip.MustParseAddr("10.77.3.1")
	svcIPv6 = netip.MustParseAddr("fd77:3::1")
)

// Ports used by the tests.
const (
	portWeb      = 80   // service: HTTP with PROXY v2
	portWebBack  = 8080 // its backend on the server's loopback
	portSink     = 5001 // service: bulk upload; backend reads to EOF, answers the SHA-256
	portSinkBack = 15001
	portSource   = 5002 // service: bulk download; backend sends bulkSize bytes
	portSrcBack  = 15002
	portPlain    = 8081 // plain kernel HTTP server on the server's own address
	portRequired = 7009 // laptop policy: encryption required
)

// laptopConfig routes the server's subnet and the service subnet through the
// laptop's tcpcryptd, requiring encryption to portRequired.
func laptopConfig(socket string) string {
	return fmt.Sprintf(`# laptop: upgrade connections to the server side
[device]
name = "tcpc0"

[outbound]
include = ["10.77.2.0/24", "fd77:2::/64", "10.77.3.0/24", "fd77:3::/64"]
policy = "opportunistic"

[[outbound.rule]]
prefix = "10.77.2.0/24"
ports = [%d]
mode = "required"

[[outbound.rule]]
prefix = "fd77:2::/64"
ports = [%d]
mode = "required"

[control]
socket = %q

[log]
level = "debug"
`, portRequired, portRequired, socket)
}

// serverConfig terminates tcpcrypt for the web (with PROXY v2) and bulk
// services, IPv4 and IPv6.
func serverConfig(socket string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# server: terminate tcpcrypt in front of local backends
[device]
name = "tcpc0"

[control]
socket = %q

[log]
level = "debug"
`, socket)
	for _, s := range []struct {
		name          string
		listen        netip.AddrPort
		backend       netip.AddrPort
		proxyProtocol bool
	}{
		{"web4", netip.AddrPortFrom(svcIPv4, portWeb), netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", portWebBack)), true},
		{"web6", netip.AddrPortFrom(svcIPv6, portWeb), netip.MustParseAddrPort(fmt.Sprintf("[::1]:%d", portWebBack)), true},
		{"sink4", netip.AddrPortFrom(svcIPv4, portSink), netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", portSinkBack)), false},
		{"sink6", netip.AddrPortFrom(svcIPv6, portSink), netip.MustParseAddrPort(fmt.Sprintf("[::1]:%d", portSinkBack)), false},
		{"source4", netip.AddrPortFrom(svcIPv4, portSource), netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", portSrcBack)), false},
		{"source6", netip.AddrPortFrom(svcIPv6, portSource), netip.MustParseAddrPort(fmt.Sprintf("[::1]:%d", portSrcBack)), false},
	} {
		fmt.Fprintf(&b, "\n[[service]]\nname = %q\nlisten = %q\nbackend = %q\nproxy_protocol = %v\n",
			s.name, s.listen.String(), s.backend.String(), s.proxyProtocol)
	}
	return b.String()
}

// daemon is a tcpcryptd process running `up` in a namespace.
type daemon struct {
	t      *testing.T
	ns     *topo.NS
	role   string
	dir    string // config, control socket, journal
	cfg    string // config file path
	socket string // control socket path
	cmd    *topo.Cmd
	log    *syncBuffer
	api    *control.Client

	exited  chan struct{} // closed when the process has been waited for
	exitErr error         // valid after exited
	cleanup bool          // the stop-on-cleanup is registered
}

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// shortTempDir makes a temporary directory with a short path (unix socket
// paths are limited to 107 bytes), removed in t.Cleanup.
func shortTempDir(t *testing.T, role string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tcpcit-"+role+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// newDaemon writes the config made by mkConfig(socket) and returns a daemon
// that is not started yet.
func newDaemon(t *testing.T, ns *topo.NS, role string, mkConfig func(socket string) string) *daemon {
	t.Helper()
	dir := shortTempDir(t, role)
	d := &daemon{t: t, ns: ns, role: role, dir: dir,
		cfg: filepath.Join(dir, "tcpcryptd.toml"), socket: filepath.Join(dir, "control.sock")}
	if err := os.WriteFile(d.cfg, []byte(mkConfig(d.socket)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.api = control.NewClient(d.socket)
	t.Cleanup(func() { d.api.Close() })
	return d
}

// startDaemon starts `tcpcryptd up --config FILE` in ns and waits until its
// control API answers /v1/health. It is stopped (SIGTERM, checked for a clean
// exit) in t.Cleanup, before the namespaces are removed.
func startDaemon(t *testing.T, ns *topo.NS, role string, mkConfig func(socket string) string) *daemon {
	t.Helper()
	d := newDaemon(t, ns, role, mkConfig)
	d.start()
	return d
}

func (d *daemon) start() {
	t := d.t
	t.Helper()
	d.log = &syncBuffer{}
	d.cmd = d.ns.Command(binPath, "up", "--config", d.cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.exited = make(chan struct{})
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start tcpcryptd (%s): %v", d.role, err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	if !d.cleanup {
		d.cleanup = true
		t.Cleanup(func() {
			d.stop()
			if t.Failed() {
				t.Logf("tcpcryptd (%s) log:\n%s", d.role, d.log.String())
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := d.api.Health()
		if err == nil && h.Status == "ok" {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("tcpcryptd (%s) exited during start-up: %v\n%s", d.role, d.exitErr, d.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpcryptd (%s) not healthy after 20s: %v\n%s", d.role, err, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit within 15s (then SIGKILL and an
// error). A daemon that is already gone (killed by the test) is left alone.
func (d *daemon) stop() {
	t := d.t
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.exitErr != nil {
			t.Errorf("tcpcryptd (%s) exit after SIGTERM: %v", d.role, d.exitErr)
		}
	case <-time.After(15 * time.Second):
		// SIGQUIT first: the Go runtime writes every goroutine's stack
		// to the log, which the test prints on failure.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.exited:
		case <-time.After(3 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
		t.Errorf("tcpcryptd (%s) did not exit within 15s of SIGTERM", d.role)
	}
	if strings.Contains(d.log.String(), "panic:") {
		t.Errorf("tcpcryptd (%s) panicked:\n%s", d.role, d.log.String())
	}
}

// kill9 kills the daemon with SIGKILL and waits for it.
func (d *daemon) kill9() {
	d.cmd.Process.Kill()
	<-d.exited
}

// cliResult is the outcome of one tcpcryptd command line.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// runCLI runs tcpcryptd with args in ns (it must finish within 30s).
func runCLI(t *testing.T, ns *topo.NS, args ...string) cliResult {
	t.Helper()
	var out, errb syncBuffer
	cmd := ns.Command(binPath, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpcryptd %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("tcpcryptd %v did not finish within 30s\nstdout: %s\nstderr: %s", args, out.String(), errb.String())
	}
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("tcpcryptd %v: %v", args, err)
	}
	return r
}

// connection finds the daemon's table entry whose application-side tuple is
// (local, remote), waiting up to 5s for it to appear.
func (d *daemon) connection(local, remote netip.AddrPort) control.Connection {
	d.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conns, err := d.api.Connections()
		if err != nil {
			d.t.Fatalf("%s: /v1/connections: %v", d.role, err)
		}
		if c, ok := control.Find(conns, local, remote); ok && c.State != "connecting" {
			return c
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: no connection %v -> %v in %+v", d.role, local, remote, conns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
