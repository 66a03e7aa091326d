package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// thisModule is the module path used to recognise the repository checkout
// when looking for go.mod and git metadata at run time.
const thisModule = "github.com/tcpcryptd/tcpcryptd"

// describeMachine reports the host a run is on. Every field is best effort:
// a missing /proc file or os-release leaves the field empty ("unknown" in the
// report) rather than failing a benchmark that has already run.
func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = parseCPUModel(string(b))
	}
	if m.CPUModel == "" {
		m.CPUModel = "unknown " + runtime.GOARCH
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = parseMemTotal(string(b))
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	// os-release(5): /etc/os-release takes precedence, /usr/lib/os-release
	// is the fallback.
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if b, err := os.ReadFile(p); err == nil {
			if m.OS = parseOSPrettyName(string(b)); m.OS != "" {
				break
			}
		}
	}
	return m
}

// parseCPUModel returns the CPU model from /proc/cpuinfo. x86 has
// "model name"; other architectures use different keys (arm: "Hardware" or
// nothing, mips: "cpu model", ppc: "cpu"), tried in that order of preference.
func parseCPUModel(cpuinfo string) string {
	found := map[string]string{}
	for line := range strings.Lines(cpuinfo) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if _, seen := found[k]; !seen && v != "" {
			found[k] = v
		}
	}
	for _, k := range []string{"model name", "Hardware", "cpu model", "cpu"} {
		if v := found[k]; v != "" {
			return strings.Join(strings.Fields(v), " ") // some models pad with runs of spaces
		}
	}
	return ""
}

// parseMemTotal returns MemTotal from /proc/meminfo in bytes (the file says
// "kB" but means KiB), or 0.
func parseMemTotal(meminfo string) uint64 {
	for line := range strings.Lines(meminfo) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0
		}
		if len(f) > 1 && strings.EqualFold(f[1], "kB") {
			n *= 1024
		}
		return n
	}
	return 0
}

// parseOSPrettyName returns PRETTY_NAME from an os-release file (falling
// back to NAME), with the shell-style quoting removed.
func parseOSPrettyName(osRelease string) string {
	vals := map[string]string{}
	for line := range strings.Lines(osRelease) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		vals[k] = unquoteOSRelease(v)
	}
	if v := vals["PRETTY_NAME"]; v != "" {
		return v
	}
	return vals["NAME"]
}

func unquoteOSRelease(v string) string {
	if len(v) >= 2 {
		switch {
		case v[0] == '"' && v[len(v)-1] == '"':
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
			return v[1 : len(v)-1]
		case v[0] == '\'' && v[len(v)-1] == '\'':
			return v[1 : len(v)-1] // single quotes: no escapes in shell
		}
	}
	return v
}

// versionModules are the dependencies whose versions decide the results,
// keyed by module path, with the name used in Report.Versions.
var versionModules = []struct{ path, key string }{
	{"gvisor.dev/gvisor", "gvisor"},
	{"golang.zx2c4.com/wireguard", "wireguard-go"},
	{"golang.org/x/crypto", "x/crypto"},
}

// versions returns the versions a run depends on: "go", the modules in
// versionModules, and "tcpcryptd (git)", merged with extra (non-empty
// values of extra win).
//
// Module versions come from the binary's build info. A module this binary
// does not link (wireguard-go is run as a separate executable) is not in the
// build info; it is then read from go.mod of the checkout we are run in, and
// marked "(go.mod)" since that is what the checkout requires rather than
// what was necessarily built. The revision comes from the vcs.* build
// settings, which `go build` stamps but `go run` and `go test` do not; then
// git is asked, if we are inside the checkout.
func versions(extra map[string]string) map[string]string {
	v := map[string]string{"go": runtime.Version()}
	var rev, modified string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			for _, m := range versionModules {
				if d.Path == m.path {
					v[m.key] = moduleVersion(d)
				}
			}
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}

	root := findModuleRoot()
	if root != "" {
		req := goModRequires(filepath.Join(root, "go.mod"))
		for _, m := range versionModules {
			if _, ok := v[m.key]; !ok && req[m.path] != "" {
				v[m.key] = req[m.path] + " (go.mod)"
			}
		}
	}

	switch {
	case rev != "":
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified == "true" {
			rev += "-dirty"
		}
		v["tcpcryptd (git)"] = rev
	case root != "":
		if r := gitRevision(root); r != "" {
			v["tcpcryptd (git)"] = r
		}
	}

	for k, x := range extra {
		// An empty value (e.g. a `--version` that failed) says nothing and
		// must not hide what was found above.
		if x != "" {
			v[k] = x
		}
	}
	return v
}

// moduleVersion is the version actually built: a replace directive wins.
func moduleVersion(m *debug.Module) string {
	if r := m.Replace; r != nil {
		if r.Version != "" {
			return r.Version + " (replaced by " + r.Path + ")"
		}
		return "replaced by " + r.Path
	}
	return m.Version
}

// findModuleRoot walks up from the working directory to the go.mod of this
// module, so that an unrelated checkout the binary happens to run in is
// never mistaken for ours. Returns "" if not found.
func findModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if goModModule(filepath.Join(dir, "go.mod")) == thisModule {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// goModModule returns the module path declared in a go.mod, or "".
func goModModule(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goModRequires returns module path → version of the require directives in
// a go.mod (single-line and block form). It is deliberately minimal: enough
// for the well-formed go.mod of this repository, no replace handling.
func goModRequires(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fs := strings.Fields(line)
		switch {
		case len(fs) == 0:
		case inBlock && fs[0] == ")":
			inBlock = false
		case inBlock && len(fs) >= 2:
			out[fs[0]] = fs[1]
		case fs[0] == "require" && len(fs) == 2 && fs[1] == "(":
			inBlock = true
		case fs[0] == "require" && len(fs) >= 3:
			out[fs[1]] = fs[2]
		}
	}
	return out
}

// gitRevision returns the short HEAD revision of the checkout at dir, with
// "-dirty" appended when there are uncommitted changes (untracked files
// included, as for Go's vcs.modified), or "" if git is unavailable. A
// timeout keeps a hung git (e.g. a stale lock on a network file system)
// from holding up the report.
func gitRevision(dir string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := git("rev-parse", "--short=12", "HEAD")
	if err != nil || rev == "" {
		return ""
	}
	if st, err := git("status", "--porcelain"); err == nil && st != "" {
		rev += "-dirty"
	}
	return rev
}
