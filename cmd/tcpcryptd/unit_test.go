package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
)

const unitFile = "../../dist/tcpcryptd.service"

// unitSettings reads a systemd unit's settings as key → values, in file
// order (a key may repeat), ignoring sections: the keys we check are
// unique to [Service] or [Unit].
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line without '=': %q", path, line)
		}
		kv[k] = append(kv[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kv
}

// The unit and the daemon agree: the commands it runs exist, the runtime
// directory it keeps across restarts is where the default control socket
// and the journal of host changes live (tcpcryptd down after a crash needs
// that journal), and the daemon reports readiness as Type=notify expects.
func TestSystemdUnitMatchesDaemon(t *testing.T) {
	kv := unitSettings(t, unitFile)
	one := func(k string) string {
		t.Helper()
		if len(kv[k]) != 1 {
			t.Fatalf("%s: %d values, want 1", k, len(kv[k]))
		}
		return kv[k][0]
	}
	app := newApp(io.Discard, io.Discard)
	for _, k := range []string{"ExecStartPre", "ExecStart", "ExecStopPost"} {
		f := strings.Fields(one(k))
		if len(f) < 2 || filepath.Base(f[0]) != "tcpcryptd" {
			t.Fatalf("%s=%q: want /PATH/tcpcryptd COMMAND", k, one(k))
		}
		if app.Command(f[1]) == nil {
			t.Errorf("%s runs %q, which is not a tcpcryptd command", k, f[1])
		}
	}
	if one("Type") != "notify" {
		t.Errorf("Type=%s, want notify (the daemon sends READY=1)", one("Type"))
	}
	def := config.Default()
	run := filepath.Join("/run", one("RuntimeDirectory"))
	if filepath.Dir(def.Control.Socket) != run || filepath.Dir(journalPath(def)) != run {
		t.Errorf("RuntimeDirectory %s, but the default control socket is %s and the journal %s", run, def.Control.Socket, journalPath(def))
	}
	if one("RuntimeDirectoryPreserve") != "yes" {
		t.Error("RuntimeDirectoryPreserve must be yes: the journal that tcpcryptd down replays after a crash is there")
	}
	if !slices.Contains(strings.Fields(one("ReadWritePaths")), run) {
		t.Errorf("ReadWritePaths=%s does not include %s (ProtectSystem=strict)", one("ReadWritePaths"), run)
	}
}

// systemd itself accepts the unit: systemd-analyze verify, run against a
// scratch root that holds the unit, the built daemon at the unit's paths and
// this host's system units, prints nothing (an unknown or misspelt key, a
// bad value or a missing executable each print a line). It does not run
// the daemon under the unit's sandbox: that needs systemd as PID 1.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	sysUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(sysUnits); err != nil {
		sysUnits = "/lib/systemd/system"
	}
	root := t.TempDir()
	kv := unitSettings(t, unitFile)
	bin := binary(t)
	for _, k := range []string{"ExecStartPre", "ExecStart", "ExecStopPost"} {
		for _, v := range kv[k] {
			exe := strings.TrimLeft(strings.Fields(v)[0], "-@:+!")
			copyFile(t, bin, filepath.Join(root, exe), 0o755)
		}
	}
	unit := "/etc/systemd/system/tcpcryptd.service"
	copyFile(t, unitFile, filepath.Join(root, unit), 0o644)
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sysUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", sysUnits, err, out)
	}
	out, err := exec.Command(sa, "verify", "--root="+root, unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The unit's sandbox lets the daemon do its work: every system call the
// daemon makes from start to SIGTERM, with a service relaying a connection
// and the CLI asking it for its connections, is in the unit's
// SystemCallFilter (its groups expanded by systemd-analyze), and every
// socket it opens is of a family RestrictAddressFamilies allows. A call
// outside the filter would fail with EPERM under systemd
// (SystemCallErrorNumber=EPERM), which no other test would see: without
// systemd as PID 1 the sandbox cannot be applied here, so strace records
// what the daemon asks for instead.
func TestUpSyscallsWithinUnitSandbox(t *testing.T) {
	strace, sa := requireTool(t, "strace"), requireTool(t, "systemd-analyze")
	kv := unitSettings(t, unitFile)
	allowed := expandSyscallFilter(t, sa, kv["SystemCallFilter"])
	families := map[string]bool{}
	for _, v := range kv["RestrictAddressFamilies"] {
		for _, f := range strings.Fields(v) {
			families[f] = true
		}
	}

	ns := newTestNS(t)
	dir := shortTempDir(t)
	backend := ns.listenLoopback(t)
	go serveProxyEchoOnce(backend)
	cfg, sock := nsConfig(t, dir, backend.Addr().String())
	trace := filepath.Join(dir, "trace")
	d := ns.startUpUnder(t, []string{strace, "-f", "-qq", "-o", trace}, cfg)
	d.waitReady(t, sock)

	ns.exchange(t, "10.254.78.1:443", "hello").Close()
	if out, err := exec.Command(binary(t), "status", "--control-socket", sock).CombinedOutput(); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}

	// SIGTERM goes to the daemon, strace's child: strace itself would
	// detach and leave the daemon running. strace exits with its status.
	pid := tracedChild(t, d.cmd.Process.Pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, d.log.String())
	}

	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`(?m)^\d+\s+(?:<\.\.\. ([a-z0-9_]+) resumed>|([a-z0-9_]+)\()`)
	used := map[string]int{}
	for _, m := range call.FindAllSubmatch(b, -1) {
		used[string(m[1])+string(m[2])]++
	}
	for _, must := range []string{"execve", "ioctl", "writev", "readv", "sendmsg", "exit_group"} {
		if used[must] == 0 {
			t.Fatalf("trace lacks %s: not a trace of the daemon's run?\n%.2000s", must, b)
		}
	}
	for name := range used {
		if !allowed[name] {
			t.Errorf("the daemon calls %s, which the unit's SystemCallFilter does not allow", name)
		}
	}
	sockCall := regexp.MustCompile(`socket\((AF_[A-Z0-9]+)`)
	opened := map[string]bool{}
	for _, m := range sockCall.FindAllSubmatch(b, -1) {
		opened[string(m[1])] = true
	}
	for f := range opened {
		if !families[f] {
			t.Errorf("the daemon opens %s sockets, which RestrictAddressFamilies does not allow", f)
		}
	}
	t.Logf("%d distinct system calls, all allowed", len(used))
}

// unitUID stands in for the unit's dedicated user, which this host need not
// have: nobody, whose only trait that matters here is not being root.
const unitUID = 65534

// The unit's privileges are what the daemon needs: it runs as a user other
// than root (User=), holding the capabilities AmbientCapabilities grants and
// nothing above CapabilityBoundingSet, which grants nothing more (no
// CAP_NET_RAW: the daemon opens no raw socket). As that user, with exactly
// those capabilities (setpriv stands in for systemd), 'up' creates the TUN
// device, routes, rules, nftables and the forwarding sysctls, relays a
// connection, undoes it all on SIGTERM, and 'down' finds nothing left;
// without them, 'up' refuses to start (exit 4).
func TestUnitUserAndCapabilitiesSufficeForUp(t *testing.T) {
	setpriv := requireTool(t, "setpriv")
	kv := unitSettings(t, unitFile)
	user := kv["User"]
	if len(user) != 1 || user[0] == "" || user[0] == "root" || user[0] == "0" {
		t.Fatalf("User=%q: the unit must name one dedicated user, not root", user)
	}
	capSet := func(k string) []string {
		var caps []string
		for _, v := range kv[k] {
			caps = append(caps, strings.Fields(v)...)
		}
		slices.Sort(caps)
		return caps
	}
	ambient, bounding := capSet("AmbientCapabilities"), capSet("CapabilityBoundingSet")
	if !slices.Equal(ambient, bounding) {
		t.Fatalf("AmbientCapabilities=%q, CapabilityBoundingSet=%q: the bounding set should grant nothing the daemon is not given", ambient, bounding)
	}
	if !slices.Contains(ambient, "CAP_NET_ADMIN") {
		t.Fatalf("AmbientCapabilities=%q lacks CAP_NET_ADMIN, which the daemon checks for", ambient)
	}
	if slices.Contains(bounding, "CAP_NET_RAW") {
		t.Fatalf("CapabilityBoundingSet=%q grants CAP_NET_RAW: the daemon opens no raw socket", bounding)
	}
	var names []string
	for _, c := range ambient {
		names = append(names, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	caps := "-all," + strings.Join(names, ",")
	// udev gives /dev/net/tun mode 0666 (TUNSETIFF then needs
	// CAP_NET_ADMIN); this host's may be 0600, so the daemon gets such a
	// node in a mount namespace of its own, leaving the host's alone.
	tunNode := `mount -t tmpfs -o mode=0755 tcpcryptd-test /dev/net && mknod -m 0666 /dev/net/tun c 10 200 && exec "$@"`
	asUser := func(caps string) []string {
		return []string{requireTool(t, "unshare"), "--mount", "--propagation", "private", "sh", "-c", tunNode, "sh",
			setpriv, "--reuid", strconv.Itoa(unitUID), "--regid", strconv.Itoa(unitUID),
			"--clear-groups", "--no-new-privs", "--inh-caps", caps, "--ambient-caps", caps, "--bounding-set", caps}
	}

	ns := newTestNS(t)
	dir := shortTempDir(t)
	fwdBefore := ns.forwarding(t)
	// The user reaches the binary and owns the runtime directory, as
	// systemd arranges with RuntimeDirectory=.
	if err := os.Chmod(filepath.Dir(binary(t)), 0o755); err != nil {
		t.Fatal(err)
	}
	backend := ns.listenLoopback(t)
	go serveProxyEchoOnce(backend)
	cfg, sock := nsConfig(t, dir, backend.Addr().String())
	for _, p := range []string{dir, cfg} {
		if err := os.Chown(p, unitUID, unitUID); err != nil {
			t.Fatal(err)
		}
	}

	// Without the capabilities: refused by the daemon's own check.
	noCaps := exec.Command("ip", append(append([]string{"netns", "exec", ns.name}, asUser("-all")...), binary(t), "up", "--config", cfg)...)
	out, err := noCaps.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitEnvironment || !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Fatalf("up without capabilities: %v, want exit %d naming CAP_NET_ADMIN\n%s", err, exitEnvironment, out)
	}

	d := ns.startUpUnder(t, asUser(caps), cfg)
	d.waitReady(t, sock)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+` + strconv.Itoa(unitUID) + `\s`).Match(status) {
		t.Fatalf("the daemon does not run as uid %d:\n%s", unitUID, status)
	}
	if got := ns.forwarding(t); got != "1/1" {
		t.Errorf("forwarding %s, want 1/1 (sysctls written without root)", got)
	}
	ns.exchange(t, "10.254.78.1:443", "hello").Close()
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
	down := exec.Command("ip", append(append([]string{"netns", "exec", ns.name}, asUser(caps)...), binary(t), "down", "--config", cfg)...)
	if out, err := down.CombinedOutput(); err != nil || string(out) != "nothing to remove\n" {
		t.Fatalf("down as the unit's user: %v\n%s", err, out)
	}
}

// tracedChild returns the one child of the tracer process pid, waiting
// for it to appear.
func tracedChild(t *testing.T, pid int) int {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children"
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("children of %d: %v", pid, err)
		}
		if f := strings.Fields(string(b)); len(f) == 1 {
			c, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			return c
		} else if len(f) > 1 || time.Now().After(deadline) {
			t.Fatalf("tracer %d has children %q, want one", pid, f)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expandSyscallFilter returns the system calls a SystemCallFilter allows:
// the allow-list entries, less those of entries starting with "~" (a
// deny-list entry removes its calls from an allow list, whatever the order),
// expanding @groups (which may hold groups) with systemd-analyze
// syscall-filter.
func expandSyscallFilter(t *testing.T, sa string, values []string) map[string]bool {
	t.Helper()
	var allow, deny []string
	for _, v := range values {
		if rest, ok := strings.CutPrefix(v, "~"); ok {
			deny = append(deny, strings.Fields(rest)...)
		} else {
			allow = append(allow, strings.Fields(v)...)
		}
	}
	if len(allow) == 0 {
		t.Fatalf("SystemCallFilter=%q: no allow list; this test checks one", values)
	}
	allowed := expandSyscalls(t, sa, allow)
	for name := range expandSyscalls(t, sa, deny) {
		delete(allowed, name)
	}
	return allowed
}

// expandSyscalls returns the system calls that items (names and @groups)
// stand for.
func expandSyscalls(t *testing.T, sa string, items []string) map[string]bool {
	t.Helper()
	calls := map[string]bool{}
	expanded := map[string]bool{}
	todo := slices.Clone(items)
	for len(todo) > 0 {
		item := todo[0]
		todo = todo[1:]
		if !strings.HasPrefix(item, "@") {
			calls[item] = true
			continue
		}
		if expanded[item] {
			continue
		}
		expanded[item] = true
		out, err := exec.Command(sa, "syscall-filter", item).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", item, err)
		}
		lines := strings.Split(string(out), "\n")
		n := 0
		for _, l := range lines[1:] { // the first line names the group
			l = strings.TrimSpace(l)
			if l == "" || l[0] == '#' {
				continue
			}
			todo = append(todo, l)
			n++
		}
		if n == 0 {
			t.Fatalf("systemd-analyze syscall-filter %s: no entries", item)
		}
	}
	return calls
}

// requireTool returns the path of an installed program, or skips t without
// it (fails it under CI=true, whose set-up installs it).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: not skipping)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// serveProxyEchoOnce accepts one connection on backend, reads the PROXY v2
// header the daemon sends, and echoes one line back ("echo " + line).
func serveProxyEchoOnce(backend net.Listener) {
	c, err := backend.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	if _, err := proxyproto.ReadHeader(r); err != nil {
		return
	}
	if line, err := r.ReadString('\n'); err == nil {
		c.Write([]byte("echo " + line))
	}
}
