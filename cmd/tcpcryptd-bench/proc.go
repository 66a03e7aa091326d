package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// sideProc is a process of the benchmark in a namespace (tcpcryptd,
// wireguard-go, a TLS relay, the backend). The tail of its stdout and
// stderr is kept for error messages.
type sideProc struct {
	name, role string
	cmd        *topo.Cmd
	out        *tailBuffer
	done       chan struct{}
	err        error // of Wait, valid once done is closed
}

// startSideProc starts cmd. With logPath, the whole output also goes to
// that file (tcpcryptd's logs, which the report directory keeps).
func startSideProc(cmd *topo.Cmd, name, role, logPath string) (*sideProc, error) {
	p := &sideProc{name: name, role: role, cmd: cmd, out: &tailBuffer{max: 4096}, done: make(chan struct{})}
	var out io.Writer = p.out
	var logf *os.File
	if logPath != "" {
		var err error
		if logf, err = os.Create(logPath); err != nil {
			return nil, err
		}
		out = io.MultiWriter(logf, p.out)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s (%s): %w", name, role, err)
	}
	go func() {
		p.err = cmd.Wait() // also waits for the output copying
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// openFDs counts the process's open descriptors.
func (p *sideProc) openFDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	return len(ents), err
}

// Between memory runs the backend must be back near its idle descriptor
// count (it had one per connection of the previous run).
const (
	backendDrained      = 1000
	backendDrainTimeout = 90 * time.Second
)

// waitDrained waits until p has fewer than most open descriptors.
func waitDrained(ctx context.Context, p *sideProc, most int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := p.openFDs()
		if err != nil {
			return fmt.Errorf("%s descriptors: %w", p.name, err)
		}
		if n < most {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s still has %d descriptors open after %v", p.name, n, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (p *sideProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tailSuffix is ":\n<last output>" for error messages, or "".
func (p *sideProc) tailSuffix() string {
	if s := strings.TrimSpace(p.out.String()); s != "" {
		return ":\n" + s
	}
	return ""
}

// stop sends SIGTERM and waits, with SIGKILL after grace. An exit other than
// a clean one is an error.
func (p *sideProc) stop(grace time.Duration) error {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("%s (%s) ignored SIGTERM for %v (killed)%s", p.name, p.role, grace, p.tailSuffix())
		}
	}
	if p.err != nil {
		return fmt.Errorf("%s (%s): %v%s", p.name, p.role, p.err, p.tailSuffix())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
