package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// Built once by TestMain.
var (
	binPath  string // the tcpcryptd binary under test
	buildErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "tcpcit-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "integration:", err)
				return 1
			}
			defer os.RemoveAll(dir)
			binPath, buildErr = buildDaemon(dir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildDaemon builds ./cmd/tcpcryptd (the module root is our parent) into dir.
func buildDaemon(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "tcpcryptd")
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/tcpcryptd")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tcpcryptd: %v\n%s", err, b)
	}
	fmt.Fprintf(os.Stderr, "integration: built tcpcryptd in %v\n", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// requireRoot skips t without root, or fails it under CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if err := topo.RequireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: not skipping)", err)
		}
		t.Skip(err)
	}
}

// requireDaemon is requireRoot plus a built binary.
func requireDaemon(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// newTopo builds the namespaces for t (removed in t.Cleanup, after every
// later-registered cleanup such as the daemons' shutdown) and registers a
// goroutine leak check that runs after everything else.
func newTopo(t *testing.T, impaired bool) *topo.Topology {
	t.Helper()
	requireRoot(t)
	checkLeaks(t)
	tp, err := topo.New(topo.Options{Impair: impaired, Seed: uint64(time.Now().UnixNano()), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("remove topology: %v", err)
		}
	})
	return tp
}

// checkLeaks fails t if goroutines of this package or its helpers are still
// running after its cleanups (they get a few seconds to finish).
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaked := leakedGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutine(s) leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func leakedGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "testing.tRunner") ||
			strings.Contains(g, "testing.(*T).Run") || strings.Contains(g, "testing.runTests") {
			continue
		}
		if strings.Contains(g, "tcpcryptd/integration") || strings.Contains(g, "net/http.(*conn)") ||
			strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}
