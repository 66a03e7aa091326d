package topo

import (
	"bytes"
	"fmt"
	"os/exec"
	"syscall"
)

// Cmd is an external command that runs inside a namespace. It is an exec.Cmd
// whose Start forks from a thread that has entered the namespace, which is what
// `ip netns exec NS cmd` does for the network namespace (without the /sys
// remount, which nothing here needs); so it works without iproute2.
//
// The child gets SIGKILL if the thread that forked it goes away (Pdeathsig), and
// its own process group, so a terminal's Ctrl-C reaches only our process, which
// then stops the child in order.
type Cmd struct {
	*exec.Cmd
	ns *NS
}

// Command prepares name with args to run in the namespace.
func (n *NS) Command(name string, args ...string) *Cmd {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return &Cmd{Cmd: c, ns: n}
}

// Start starts the command in the namespace.
func (c *Cmd) Start() error {
	return c.ns.Do(func() error { return c.Cmd.Start() })
}

// Run starts the command in the namespace and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// CombinedOutput runs the command and returns its stdout and stderr together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}

// Output runs the command and returns its stdout; a failure's error carries
// stderr.
func (c *Cmd) Output() ([]byte, error) {
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if err != nil && errb.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), err
}
