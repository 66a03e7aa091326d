package main

// Root tests: the built binary runs 'up' and 'down' inside a network
// namespace of the test's own, which is deleted afterwards (also on
// failure). Nothing runs in the host's namespace.
//
//   test namespace tcd-test-NNNN (ip netns add / del)
//   +--------------------------------------------------------------------+
//   |  kernel TCP client (test)     tcpcryptd up (the binary)            |
//   |  10.254.77.1 on tcdt0  ---->  TUN tcdt0 -> stack                   |
//   |                               service 10.254.78.1:443 ---------+   |
//   |  backend 127.0.0.1:PORT (test) <-- PROXY v2 header + data -----+   |
//   +--------------------------------------------------------------------+
//   control socket, journal, config: in the test's temporary directory

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

// requireRoot skips without root and the ip tool, but fails under CI=true,
// where a skip would hide the test.
func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "test needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "test needs the ip tool (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: not skipping)")
	}
	t.Skip(why)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds the command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tcpcryptd-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tcpcryptd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// testNS is a named network namespace.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("tcd-test-%d", rand.IntN(1_000_000))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &testNS{name: name, h: h}
}

// do runs f on an OS thread inside the namespace; sockets f creates stay
// in it. The thread is restored (or discarded) afterwards.
func (n *testNS) do(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("restore namespace: %w", err)
			return // locked: the thread is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// ours prints every host object of ours in the namespace (device,
// addresses, rules, routes, nftables table, forwarding sysctls): empty
// means clean, apart from the sysctls, which are compared as they were.
func (n *testNS) ours(t *testing.T, dev string, table int) string {
	t.Helper()
	h, err := netcfg.NewLinuxHostAt(n.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var b strings.Builder
	if l, err := h.Link(dev); err == nil {
		fmt.Fprintf(&b, "link %v\n", l)
		addrs, _ := h.Addrs(dev)
		for _, a := range addrs {
			if !a.Addr().IsLinkLocalUnicast() {
				fmt.Fprintf(&b, "addr %v\n", a)
			}
		}
	}
	rules, err := h.Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Proto == netcfg.RouteProtocol || r.Table == table {
			fmt.Fprintf(&b, "%v\n", r)
		}
	}
	routes, err := h.Routes(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Proto == netcfg.RouteProtocol || r.Table == table {
			fmt.Fprintf(&b, "%v\n", r)
		}
	}
	if nat, exists, err := h.NATRules(); err != nil {
		t.Fatal(err)
	} else if exists {
		fmt.Fprintf(&b, "nft table with %d rules\n", len(nat))
	}
	return b.String()
}

func (n *testNS) forwarding(t *testing.T) string {
	t.Helper()
	h, err := netcfg.NewLinuxHostAt(n.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	v4, _ := h.Sysctl("net/ipv4/ip_forward")
	v6, _ := h.Sysctl("net/ipv6/conf/all/forwarding")
	return v4 + "/" + v6
}

// daemon is a running 'up'.
type daemonProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

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

// listenLoopback listens on a free TCP port of the namespace's 127.0.0.1,
// closed at the end of the test.
func (n *testNS) listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	var l net.Listener
	n.do(t, func() (err error) {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l
}

// exchange connects from the namespace to addr, sends msg and a newline,
// and checks that the answer is the line "echo msg" (what the tests'
// backends answer). The connection, still open, is closed at the end of
// the test.
func (n *testNS) exchange(t *testing.T, addr, msg string) net.Conn {
	t.Helper()
	var c net.Conn
	n.do(t, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	})
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	if reply, err := bufio.NewReader(c).ReadString('\n'); err != nil || reply != "echo "+msg+"\n" {
		t.Fatalf("%s: reply %q %v", addr, reply, err)
	}
	return c
}

// startUp runs 'tcpcryptd up --config cfg' in the namespace. The process
// is killed at the end of the test if still running; its log is printed
// if the test failed.
func (n *testNS) startUp(t *testing.T, cfg string, env ...string) *daemonProc {
	t.Helper()
	return n.startUpUnder(t, nil, cfg, env...)
}

// startUpUnder is startUp with the daemon run by a wrapper command (such
// as a tracer), which gets the daemon's command line as its last arguments.
func (n *testNS) startUpUnder(t *testing.T, wrapper []string, cfg string, env ...string) *daemonProc {
	t.Helper()
	args := append([]string{"netns", "exec", n.name}, wrapper...)
	args = append(args, binary(t), "up", "--config", cfg, "--log-level", "debug")
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), env...)
	d := &daemonProc{cmd: cmd, log: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	return d
}

// waitReady polls /v1/health until it answers ok.
func (d *daemonProc) waitReady(t *testing.T, sock string) control.Health {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("daemon exited before ready: %v\n%s", err, d.log.String())
		default:
		}
		if c, err := control.Dial(sock); err == nil {
			h, err := c.Health()
			c.Close()
			if err == nil && h.Status == "ok" {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s\n%s", d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemonProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("wait: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit within 30s\n%s", d.log.String())
	}
	return -1
}

const nsDevice = "tcdt0"

// nsConfig writes a configuration whose socket and journal live in dir.
func nsConfig(t *testing.T, dir, backend string) (cfgPath, sock string) {
	t.Helper()
	sock = filepath.Join(dir, "control.sock")
	text := fmt.Sprintf(`
[device]
name = %q
[outbound]
include = ["198.51.100.0/24", "2001:db8:5::/64"]
[[service]]
name = "web"
listen = "10.254.78.1:443"
backend = %q
proxy_protocol = true
host_port = 8443
[control]
socket = %q
`, nsDevice, backend, sock)
	cfgPath = filepath.Join(dir, "tcpcryptd.toml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, sock
}

// shortTempDir is a temporary directory with a path short enough for unix
// sockets, removed at the end of the test.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tcd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// 'up' in a fresh namespace: ready notification, device, addresses, routes,
// rules and NAT in place, a service relaying with a PROXY header, a second
// daemon refused; SIGTERM removes everything and restores forwarding.
func TestUpAndSIGTERMInNetns(t *testing.T) {
	ns := newTestNS(t)
	dir := shortTempDir(t)
	fwdBefore := ns.forwarding(t)

	// A backend inside the namespace that reads the PROXY header.
	type seen struct {
		hdr  *proxyproto.Header
		body string
		err  error
	}
	seenc := make(chan seen, 2)
	backend := ns.listenLoopback(t)
	go func() {
		for range 2 { // the client below, then one from the host to host_port
			c, err := backend.Accept()
			if err != nil {
				seenc <- seen{err: err}
				return
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			h, err := proxyproto.ReadHeader(r)
			if err != nil {
				c.Close()
				seenc <- seen{err: err}
				return
			}
			line, err := r.ReadString('\n')
			c.Write([]byte("echo " + line))
			seenc <- seen{hdr: h, body: line, err: err}
			defer c.Close()
		}
	}()

	cfg, sock := nsConfig(t, dir, backend.Addr().String())
	notify := filepath.Join(dir, "notify")
	nl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()

	d := ns.startUp(t, cfg, "NOTIFY_SOCKET="+notify)
	h := d.waitReady(t, sock)
	if h.Device != nsDevice || h.PID == 0 {
		t.Fatalf("health %+v", h)
	}
	nl.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	if n, err := nl.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1") {
		t.Fatalf("sd_notify: %q %v", buf[:n], err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode: %v %v", fi, err)
	}

	state := ns.ours(t, nsDevice, 7701)
	for _, want := range []string{
		"link link " + nsDevice + " up mtu 1500",
		"addr 10.254.77.1/24", "addr fd7c:e770::1/64",
		"route table 7701 198.51.100.0/24 dev " + nsDevice,
		"route table 7701 2001:db8:5::/64 dev " + nsDevice,
		"route table 7701 10.254.78.1/32 dev " + nsDevice,
		"rule v4 prio 7702 ipproto tcp fwmark 0x7463a001 lookup 7701",
		"rule v6 prio 7701 from fd7c:e770::2/128 lookup main",
		// masquerade v4 + v6, DNAT of 8443 from other hosts and from this one,
		// capture of 198.51.100.0/24 and 2001:db8:5::/64, restore (out, in),
		// forward-drop v4 + v6
		"nft table with 10 rules",
	} {
		if !strings.Contains(state, want) {
			t.Errorf("namespace state lacks %q:\n%s", want, state)
		}
	}
	if got := ns.forwarding(t); got != "1/1" {
		t.Errorf("forwarding %s, want 1/1", got)
	}

	// A kernel client (no ENO) through the service: plain, relayed, with
	// a PROXY header naming it and no session ID.
	client := ns.exchange(t, "10.254.78.1:443", "hello")
	s := <-seenc
	clientAP := netip.MustParseAddrPort(client.LocalAddr().String())
	if s.err != nil || s.hdr.Source != clientAP || s.hdr.Dest != netip.MustParseAddrPort("10.254.78.1:443") {
		t.Fatalf("backend saw %+v (client %v)", s, clientAP)
	}
	if _, ok := s.hdr.SessionID(); ok {
		t.Fatal("session ID TLV on a plain connection")
	}

	// An included destination with no route outside the device: the
	// outer SYN comes back into the device; the forwarder refuses it and
	// the application sees a refusal at once, not a hang.
	ns.do(t, func() error {
		c, err := net.DialTimeout("tcp", "198.51.100.5:80", 10*time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to an unroutable destination")
		}
		// Capture is by mark, after the socket's own route lookup: here
		// that lookup already fails (no route at all). With a route, the
		// SYN would go into the device and the forwarder refuse it.
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENETUNREACH) {
			return fmt.Errorf("dial to an unroutable destination: %v, want refused or unreachable at once", err)
		}
		return nil
	})

	// The control API and the CLI see it; sessid says it is plain.
	cl, err := control.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	conns, err := cl.Connections()
	cl.Close()
	if err != nil || len(conns) != 1 || conns[0].Fallback != "no-eno" || conns[0].Outer.Remote != clientAP {
		t.Fatalf("connections %+v %v", conns, err)
	}
	out, err := exec.Command(binary(t), "status", "--control-socket", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "plain (no-eno)") || !strings.Contains(string(out), clientAP.String()) {
		t.Fatalf("status: %v\n%s", err, out)
	}
	app := conns[0].App
	sessid := exec.Command(binary(t), "sessid", "--control-socket", sock, "--local", app.Local.String(), "--remote", app.Remote.String())
	out, err = sessid.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitNotEncrypted || !strings.Contains(string(out), "no-eno") {
		t.Fatalf("sessid on a plain connection: %v\n%s", err, out)
	}
	client.Close()

	// The host's own connection to one of its addresses at host_port: DNAT
	// in the output hook sends it to the service too.
	local := ns.exchange(t, "10.254.77.1:8443", "local")
	s = <-seenc
	localAP := netip.MustParseAddrPort(local.LocalAddr().String())
	if s.err != nil || s.hdr.Source != localAP || s.hdr.Dest != netip.MustParseAddrPort("10.254.78.1:443") {
		t.Fatalf("host_port from the host: backend saw %+v (client %v)", s, localAP)
	}
	local.Close()

	// A second daemon with the same socket is refused and changes nothing.
	before := ns.ours(t, nsDevice, 7701)
	second := exec.Command("ip", "netns", "exec", ns.name, binary(t), "up", "--config", cfg, "--device", "tcdt1")
	out, err = second.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError || !strings.Contains(string(out), "another tcpcryptd") {
		t.Fatalf("second up: %v\n%s", err, out)
	}
	if after := ns.ours(t, nsDevice, 7701); after != before {
		t.Fatalf("second up changed the namespace:\n%s\n---\n%s", before, after)
	}

	// SIGTERM: clean exit, nothing of ours left, forwarding restored.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, d.log.String())
	}
	if left := ns.ours(t, nsDevice, 7701); left != "" {
		t.Fatalf("left after SIGTERM:\n%s", left)
	}
	if got := ns.forwarding(t); got != fwdBefore {
		t.Fatalf("forwarding %s, was %s", got, fwdBefore)
	}
	for _, f := range []string{sock, filepath.Join(dir, "control.journal")} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s left after SIGTERM", f)
		}
	}
	if !strings.Contains(d.log.String(), "host configuration restored") {
		t.Error("no teardown line in the log")
	}
}

// kill -9, then 'down': everything is removed and reported; a second
// 'down' finds nothing; 'up' works again.
func TestKillThenDownInNetns(t *testing.T) {
	ns := newTestNS(t)
	dir := shortTempDir(t)
	fwdBefore := ns.forwarding(t)
	cfg, sock := nsConfig(t, dir, "127.0.0.1:9")

	d := ns.startUp(t, cfg)
	d.waitReady(t, sock)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.wait(t)
	left := ns.ours(t, nsDevice, 7701)
	if !strings.Contains(left, "rule v4 prio 7702") || !strings.Contains(left, "nft table") {
		t.Fatalf("kill -9 left nothing to clean? (the test would prove nothing):\n%s", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "control.journal")); err != nil {
		t.Fatalf("no journal after kill -9: %v", err)
	}

	down := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns.name, binary(t), "down", "--config", cfg).CombinedOutput()
		return string(out), err
	}
	out, err := down()
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	for _, want := range []string{"removed rule v4 prio 7702", "removed nft table inet tcpcryptd", "restored net/ipv4/ip_forward",
		"removed route table 7701 198.51.100.0/24", "removed stale control socket"} {
		if !strings.Contains(out, want) {
			t.Errorf("down output lacks %q:\n%s", want, out)
		}
	}
	if left := ns.ours(t, nsDevice, 7701); left != "" {
		t.Fatalf("left after down:\n%s", left)
	}
	if got := ns.forwarding(t); got != fwdBefore {
		t.Fatalf("forwarding %s, was %s", got, fwdBefore)
	}
	if out, err := down(); err != nil || strings.TrimSpace(out) != "nothing to remove" {
		t.Fatalf("second down: %v %q", err, out)
	}

	d2 := ns.startUp(t, cfg)
	d2.waitReady(t, sock)
	d2.cmd.Process.Signal(syscall.SIGTERM)
	if code := d2.wait(t); code != 0 {
		t.Fatalf("second up exited %d", code)
	}
	if left := ns.ours(t, nsDevice, 7701); left != "" {
		t.Fatalf("left after second up:\n%s", left)
	}
}

// A bad configuration or flag: clear error, non-zero exit, nothing
// changed in the namespace.
func TestBadConfigChangesNothingInNetns(t *testing.T) {
	ns := newTestNS(t)
	dir := shortTempDir(t)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[device]\nname = \""+nsDevice+"\"\n[outbound]\ninclude = [\"198.51.100.0/24\", \"nonsense\"]\n"), 0o600)
	good, _ := nsConfig(t, dir, "127.0.0.1:9")
	before := ns.ours(t, nsDevice, 7701) + ns.forwarding(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"up", "--config", bad}, exitConfig, "outbound.include[1]"},
		{[]string{"up", "--config", good, "--metrics-listen", "nowhere"}, exitUsage, "--metrics-listen"},
		{[]string{"down", "--config", bad}, exitConfig, "outbound.include[1]"},
	} {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, binary(t)}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.msg) {
			t.Errorf("%v: %v, want exit %d naming %q:\n%s", tc.args, err, tc.code, tc.msg, out)
		}
	}
	if after := ns.ours(t, nsDevice, 7701) + ns.forwarding(t); after != before {
		t.Fatalf("namespace changed:\n%s\n---\n%s", before, after)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("files created: %v", entries)
	}
}
