package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// kernelSetup is setup 1: the client reaches the backend over the routed
// veth path with nothing in between (the ceiling).
type kernelSetup struct{ env *Env }

func startKernel(env *Env) (Setup, error) { return &kernelSetup{env: env}, nil }

func (k *kernelSetup) Name() string { return "kernel" }
func (k *kernelSetup) Target() netip.AddrPort {
	return netip.AddrPortFrom(byFamily(k.env, topo.ServerIPv4, topo.ServerIPv6), k.env.BackendPort)
}
func (k *kernelSetup) Procs() []Proc { return nil }
func (k *kernelSetup) Close() error  { return nil }

// The service address the server's tcpcryptd terminates (the topology's router
// routes the service subnet to the server) and its port.
var (
	benchService     = netip.MustParseAddr("10.77.3.1")
	benchService6    = netip.MustParseAddr("fd77:3::1")
	benchServicePort = uint16(5001)
)

// daemonOptions choose how both tcpcryptd processes are configured.
type daemonOptions struct {
	name       string // setup name in the report
	policy     string // "off" (ENO off: plain relay) or "opportunistic"
	aead       string // the one AEAD offered ("aes128gcm", "chacha20poly1305")
	resumption bool
	cpus       int    // runtime.cpus; 0: the daemon's default (Env.DaemonCPUs)
	teps       string // crypto.teps as a TOML array; empty: the default
}

// daemonSetup is tcpcryptd in the laptop namespace (outbound capture of the
// service subnet) and in the server namespace (terminating the service in
// front of the backend).
type daemonSetup struct {
	o       daemonOptions
	env     *Env
	daemons []*sideProc
}

func laptopDaemonConfig(o daemonOptions, socket string) string {
	return fmt.Sprintf(`[device]
name = %q

[outbound]
include = [%q, %q]
policy = %q
`, daemonTUN, topo.ServiceNetIPv4.String(), topo.ServiceNetIPv6.String(), o.policy) + commonSections(o, socket)
}

func serverDaemonConfig(o daemonOptions, socket string, backend uint16) string {
	return fmt.Sprintf(`[device]
name = %q

[[service]]
name = "bench"
listen = %[2]q
backend = %[4]q
policy = %[5]q

[[service]]
name = "bench6"
listen = %[3]q
backend = %[4]q
policy = %[5]q
`, daemonTUN, netip.AddrPortFrom(benchService, benchServicePort).String(), netip.AddrPortFrom(benchService6, benchServicePort).String(),
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), backend).String(), o.policy) + commonSections(o, socket)
}

// commonSections are the configuration both daemons share: crypto, the
// control socket, logging and, if o.cpus > 0, runtime.cpus.
func commonSections(o daemonOptions, socket string) string {
	s := fmt.Sprintf(`
[crypto]
aeads = [%q]
resumption = %v

[control]
socket = %q

[log]
level = "info"
`, o.aead, o.resumption, socket)
	if o.teps != "" {
		s = strings.Replace(s, "[crypto]\n", "[crypto]\nteps = "+o.teps+"\n", 1)
	}
	if o.cpus > 0 {
		s += fmt.Sprintf("\n[runtime]\ncpus = %d\n", o.cpus)
	}
	return s
}

func startDaemons(env *Env, o daemonOptions) (_ Setup, err error) {
	o.cpus = env.DaemonCPUs
	s := &daemonSetup{o: o, env: env}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, side := range []struct {
		role string
		ns   *topo.NS
		cfg  func(socket string) string
	}{
		{"server", env.Topo.Server, func(sock string) string { return serverDaemonConfig(o, sock, env.BackendPort) }},
		{"laptop", env.Topo.Laptop, func(sock string) string { return laptopDaemonConfig(o, sock) }},
	} {
		d, err := startDaemon(env, side.ns, side.role, side.cfg)
		if err != nil {
			return nil, err
		}
		s.daemons = append(s.daemons, d)
	}
	return s, nil
}

// TUNs implements tunUser: both daemons use a device named tcpcb0.
func (s *daemonSetup) TUNs() []tunDevice {
	return []tunDevice{{s.env.Topo.Laptop, daemonTUN}, {s.env.Topo.Server, daemonTUN}}
}

// daemonTUN is the TUN device name in both daemons' configurations.
const daemonTUN = "tcpcb0"

// daemonStopGrace is how long tcpcryptd gets to undo its host changes
// after SIGTERM.
const daemonStopGrace = 15 * time.Second

// startDaemon writes the config and runs `tcpcryptd up` in ns until its
// control API reports healthy. Its log goes to <role>.log in env.Dir.
func startDaemon(env *Env, ns *topo.NS, role string, cfg func(socket string) string) (*sideProc, error) {
	sock := filepath.Join(env.Dir, role+".sock")
	path := filepath.Join(env.Dir, role+".toml")
	if err := os.WriteFile(path, []byte(cfg(sock)), 0o600); err != nil {
		return nil, err
	}
	d, err := startSideProc(ns.Command(env.Tcpcryptd, "up", "--config", path), "tcpcryptd", role, filepath.Join(env.Dir, role+".log"))
	if err != nil {
		return nil, err
	}
	api := control.NewClient(sock)
	defer api.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if h, err := api.Health(); err == nil && h.Status == "ok" {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("tcpcryptd (%s) exited during start-up (%v)%s", role, d.err, d.tailSuffix())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop(daemonStopGrace)
			return nil, fmt.Errorf("tcpcryptd (%s) not healthy after 20s%s", role, d.tailSuffix())
		}
	}
}

func (s *daemonSetup) Name() string { return s.o.name }

func (s *daemonSetup) Target() netip.AddrPort {
	return netip.AddrPortFrom(byFamily(s.env, benchService, benchService6), benchServicePort)
}

func (s *daemonSetup) Procs() []Proc {
	var ps []Proc
	for _, d := range s.daemons {
		ps = append(ps, Proc{Role: d.role, PID: d.cmd.Process.Pid})
	}
	return ps
}

// Close stops the laptop daemon first (it was started last), then the server.
func (s *daemonSetup) Close() error {
	var errs []error
	for i := len(s.daemons) - 1; i >= 0; i-- {
		if err := s.daemons[i].stop(daemonStopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	s.daemons = nil
	return errors.Join(errs...)
}

// waitReachable dials target through the setup until one ping exchange
// succeeds (routes and daemons settle), for at most 15 s.
func waitReachable(ctx context.Context, c *client, target netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if last = c.ping(ctx, target); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%v not reachable: %w", target, last)
}

// profiler is a setup whose processes can hand out Go profiles.
type profiler interface {
	// Profile writes the named profile ("profile?seconds=N" for CPU, "heap",
	// ...) of the process with role to w.
	Profile(ctx context.Context, role, name string, w io.Writer) error
}

// Profile fetches a profile from a daemon's control socket (control.PathPprof).
func (s *daemonSetup) Profile(ctx context.Context, role, name string, w io.Writer) error {
	sock := filepath.Join(s.env.Dir, role+".sock")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tcpcryptd"+control.PathPprof+name, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s profile %s: %w", role, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s profile %s: %s", role, name, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// handshakes reads the laptop daemon's tcpcryptd_handshakes_total counters:
// fresh key exchanges and resumed sessions so far. The connection-rate log
// uses them to tell how many of a "resumed" run's connections really
// resumed.
func (s *daemonSetup) handshakes() (fresh, resumed uint64, err error) {
	api := control.NewClient(filepath.Join(s.env.Dir, "laptop.sock"))
	defer api.Close()
	text, err := api.Metrics()
	if err != nil {
		return 0, 0, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return 0, 0, fmt.Errorf("metrics: %w", err)
	}
	for _, m := range fams["tcpcryptd_handshakes_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			switch v := uint64(m.GetCounter().GetValue()); {
			case l.GetName() == "kind" && l.GetValue() == "fresh":
				fresh = v
			case l.GetName() == "kind" && l.GetValue() == "resumed":
				resumed = v
			}
		}
	}
	return fresh, resumed, nil
}

// outcomes reads a daemon's tcpcryptd_connections_total: connections
// ended so far by outcome (encrypted, plain, refused, failed), summed over
// directions and reasons.
func (s *daemonSetup) outcomes(role string) (map[string]uint64, error) {
	api := control.NewClient(filepath.Join(s.env.Dir, role+".sock"))
	defer api.Close()
	text, err := api.Metrics()
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", role, err)
	}
	out, err := countersByLabel(text, "tcpcryptd_connections_total", "outcome")
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", role, err)
	}
	return out, nil
}

// countersByLabel parses Prometheus text and sums the counter family name
// by the value of one of its labels.
func countersByLabel(text []byte, name, label string) (map[string]uint64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += uint64(m.GetCounter().GetValue())
			}
		}
	}
	return out, nil
}

// relaying is how many connections each daemon relays now (control
// Health), for the log: a run that leaves connections behind shows here.
func (s *daemonSetup) relaying() string {
	var out []string
	for _, d := range s.daemons {
		api := control.NewClient(filepath.Join(s.env.Dir, d.role+".sock"))
		if h, err := api.Health(); err == nil {
			out = append(out, fmt.Sprintf("%s %d", d.role, h.Connections))
		}
		api.Close()
	}
	return strings.Join(out, ", ")
}
