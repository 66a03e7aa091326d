package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/link"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:      "up",
		Usage:     "run the daemon in the foreground (needs CAP_NET_ADMIN)",
		UsageText: "tcpcryptd up [--config FILE] [--log-level LEVEL] [--log-format FORMAT] [--key-log FILE] [--control-socket PATH] [--metrics-listen ADDR:PORT] [--device NAME]",
		Description: `Creates the TUN device, starts the userspace stack with the outbound forwarder
(when [outbound] include lists subnets) and the [[service]] listeners, then
configures the host (addresses, routing table and rules, forwarding, NAT) and
reports readiness: the control API's /v1/health answers "ok" and, under systemd
(Type=notify), READY=1 is sent. It runs until SIGINT or SIGTERM, then undoes every
host change and exits 0. A second signal during teardown kills it at once; run
'tcpcryptd down' afterwards, as after a crash.

The configuration is --config FILE, else ` + config.DefaultPath + ` if it exists, else
the embedded default. The flags below override the file's values. Host changes
are journaled next to the control socket (control.socket with .journal for .sock),
so that 'tcpcryptd down' can undo them after a crash; 'up' itself also removes the
leftovers of an earlier run.

Logs go to standard error, one line per connection outcome at info level.

` + exitCodesHelp,
		Flags: upFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, from, err := loadConfig(c)
			if err != nil {
				return err
			}
			if err := hostPreflight.check(true); err != nil {
				return err
			}
			return runUp(c.Context, cfg, from, c.App.ErrWriter)
		},
	}
}

// runUp runs the daemon until a signal, a component error or ctx ends it.
func runUp(ctx context.Context, cfg *config.Config, from string, logw io.Writer) error {
	log := newLogger(logw, cfg.Log)
	log.Info("tcpcryptd starting", "version", version, "config", from, "pid", os.Getpid())
	// Before the stack exists: gVisor sizes its TCP processor pool from
	// GOMAXPROCS when it is built.
	setCPUs(cfg.Runtime.CPUs, os.Getenv("GOMAXPROCS") != "", log)
	// Signals are caught from here on: one that arrives during start is
	// acted on once start has finished, so setup is never cut in half.
	// After the first one the default action returns (signal.Stop in
	// wait): a second signal kills the process during teardown.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	d := newDaemon(cfg, log)
	if err := d.start(); err != nil {
		log.Error("startup failed; undoing what was set up", "err", err)
		if serr := d.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return err
	}
	if sent, err := sdNotify("READY=1\nSTATUS=running"); err != nil {
		log.Warn("could not notify the service manager", "err", err)
	} else if sent {
		log.Debug("notified the service manager: READY=1")
	}

	why, runErr := d.wait(ctx, sigc)
	log.Info("shutting down", "why", why)
	if _, err := sdNotify("STOPPING=1"); err != nil {
		log.Warn("could not notify the service manager", "err", err)
	}
	stopErr := d.stop()
	if stopErr != nil {
		log.Error("teardown incomplete; run 'tcpcryptd down' to remove what is left", "err", stopErr)
	} else {
		log.Info("stopped; host configuration restored")
	}
	return errors.Join(runErr, stopErr)
}

// daemon holds the running components. start sets them up in the order
// below; stop takes them down in reverse (any prefix of them, after a
// failed start):
//
//  1. control socket: claimed first, so a second daemon with the same
//     socket stops before touching the host; serves the API (health says
//     "starting" until step 10)
//  2. netcfg journal: loaded (an earlier run's leftovers are undone by Up)
//  3. key log file (only if configured), tcpcrypt configuration
//  4. TUN device (tun/link)
//  5. stack on the device, its link endpoint wrapped by the ENO shim
//  6. outbound forwarder, dialling from the stack's egress addresses
//     with per-destination policy (only if [outbound] include is set)
//  7. service listeners relaying to their backends
//  8. host networking: netcfg Up (journaled)
//  9. optional metrics listener
//  10. ready
//
// stop: not ready, metrics listener, netcfg Down (no new traffic reaches
// the device), services, forwarder, stack (closes the device), key log,
// control socket.
type daemon struct {
	cfg  *config.Config
	log  *slog.Logger
	spec netcfg.Spec

	api   *apiSource
	obs   *connObserver
	col   *collector
	ready *atomic.Bool

	ctl        *control.Server
	host       *netcfg.LinuxHost
	net        *netcfg.Config
	keyLog     *os.File
	ep         *link.Endpoint
	st         *stack.Stack
	fwd        *stack.Forwarder
	svcs       []*stack.Service
	netUp      bool
	metricsSrv *control.Server

	errc     chan error     // first component error (buffered 1)
	quit     chan struct{}  // closed by stop: ends the watchers
	watchers sync.WaitGroup // component watchers; each exits on quit
	stopOnce sync.Once
	stopErr  error
}

func newDaemon(cfg *config.Config, log *slog.Logger) *daemon {
	d := &daemon{
		cfg:  cfg,
		log:  log,
		spec: netSpec(cfg),
		api:  &apiSource{device: cfg.Device.Name, started: time.Now()},
		obs:  newConnObserver(log.With("component", "conn")),
		errc: make(chan error, 1),
		quit: make(chan struct{}),
	}
	d.ready = &d.api.ready
	d.col = newCollector(d.obs, d.ready)
	return d
}

// fail records a component error; the first one ends wait.
func (d *daemon) fail(err error) {
	select {
	case d.errc <- err:
	default:
	}
}

// watch reports the end of a server as a component error, unless the
// daemon is stopping.
func (d *daemon) watch(name string, s *control.Server) {
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		select {
		case <-s.Done():
			d.fail(fmt.Errorf("%s stopped: %v", name, s.Err()))
		case <-d.quit:
		}
	}()
}

func (d *daemon) start() error {
	cfg, log := d.cfg, d.log
	_, metricsHandler := newMetrics(d.col)

	// 1. Control socket.
	l, err := control.Listen(control.ListenOptions{Path: cfg.Control.Socket, Mode: cfg.Control.Mode, Group: cfg.Control.Group})
	if err != nil {
		return err
	}
	d.ctl = control.Serve(l, control.WithPprof(control.NewHandler(d.api, metricsHandler, log.With("component", "control"))))
	d.watch("control API", d.ctl)
	log.Info("control API listening", "socket", cfg.Control.Socket, "mode", fmt.Sprintf("%04o", cfg.Control.Mode))

	// 2. Host access and the journal of an earlier run.
	if d.host, err = netcfg.NewLinuxHost(); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	d.net, err = netcfg.New(d.host, netcfg.Options{Logger: log.With("component", "netcfg"), JournalPath: journalPath(cfg)})
	if err != nil {
		return fmt.Errorf("host configuration journal: %w (move it aside, then run 'tcpcryptd down')", err)
	}

	// 3. Key log and tcpcrypt configuration.
	var keyLog io.Writer
	if cfg.Log.KeyLog != "" {
		// No symlink, a regular file of ours, mode 0600 (created so).
		if d.keyLog, err = tcpcrypt.OpenKeyLog(cfg.Log.KeyLog); err != nil {
			return err
		}
		keyLog = d.keyLog
		log.Warn("KEY LOG IS ON: session secrets are written to a file; anyone who can read it can decrypt captured traffic. Do not use in production.",
			"file", cfg.Log.KeyLog)
	}
	tc, err := tcpcryptConfig(cfg.Crypto, cfg.Limits, keyLog)
	if err != nil {
		return err
	}
	if cfg.Crypto.Resumption && cfg.Crypto.ResumptionCacheSize == 0 {
		log.Warn("session resumption is off: crypto.resumption_cache_size is 0")
	}

	// 4. TUN device.
	d.ep, err = link.Open(cfg.Device.Name, link.Options{MTU: uint32(cfg.Device.MTU), Logger: log.With("component", "link")})
	if err != nil {
		return fmt.Errorf("TUN device %s: %w", cfg.Device.Name, err)
	}

	// 5. Stack, which wraps the device's endpoint in the ENO shim and owns
	// it from here on.
	fwd := forwarding(cfg)
	so := stack.Options{
		Link:        d.ep,
		Addresses:   stackAddresses(cfg),
		Promiscuous: fwd,
		Spoofing:    fwd,
		TCPCrypt:    tc,
		Logger:      log,
		OnConnDone:  d.obs.done,
		SACKMinRTT:  cfg.TCP.SACKMinRTT,
		MinRTO:      cfg.TCP.MinRTO,
		Relays:      relayOptions(cfg),
	}
	setLimits(&so, cfg.Limits)
	d.st, err = stack.New(so)
	if err != nil {
		return err
	}
	d.api.setTable(d.st.Table())
	ep := d.ep
	d.col.setSources(&metricSources{counters: d.st.Counters(), table: d.st.Table(), flows: d.st.Flows, halfOpen: d.st.HalfOpenFlows, link: ep.Stats,
		tcp: d.st.TCPRecoveryStats})
	d.watchers.Add(1)
	go func() {
		defer d.watchers.Done()
		ep.Wait() // returns when the reader stops: on Close, or on a device error
		if err := ep.Err(); err != nil {
			d.fail(fmt.Errorf("TUN device %s: %w", cfg.Device.Name, err))
		}
	}()

	// 6. Outbound forwarder.
	if fwd {
		d.fwd, err = d.st.StartForwarder(stack.ForwarderOptions{
			Egress4: cfg.Device.StackIPv4,
			Egress6: cfg.Device.StackIPv6,
			Policy:  outboundPolicy(cfg.Outbound),
		})
		if err != nil {
			return fmt.Errorf("outbound forwarder: %w", err)
		}
	}

	// 7. Services.
	for _, svc := range cfg.Services {
		sv, err := d.st.Serve(svc.Listen.Addr(), svc.Listen.Port(), servicePolicy(svc), backendDialer(svc, d.st.CheckBackend), 0)
		if err != nil {
			return fmt.Errorf("service %q on %v: %w", svc.Name, svc.Listen, err)
		}
		d.svcs = append(d.svcs, sv)
	}

	// 8. Host networking.
	d.netUp = true // a failed Up leaves a partial configuration: Down undoes it
	if err := d.net.Up(d.spec); err != nil {
		return fmt.Errorf("host networking: %w", err)
	}

	// 9. Metrics listener.
	if cfg.Metrics.Listen != "" {
		ml, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen: %w", err)
		}
		d.metricsSrv = control.Serve(ml, metricsOnly(metricsHandler))
		d.watch("metrics listener", d.metricsSrv)
		log.Info("metrics listening", "addr", ml.Addr().String())
	}

	// 10. Ready.
	d.ready.Store(true)
	log.Info("ready",
		"device", cfg.Device.Name,
		"stack_ipv4", cfg.Device.StackIPv4, "stack_ipv6", cfg.Device.StackIPv6,
		"outbound", fmt.Sprint(cfg.Outbound.Include), "policy", string(cfg.Outbound.Policy),
		"services", len(cfg.Services))
	for _, svc := range cfg.Services {
		log.Info("service", "name", svc.Name, "listen", svc.Listen.String(), "backend", svc.Backend,
			"proxy_protocol", svc.ProxyProtocol, "policy", string(svc.Policy), "host_port", svc.HostPort)
		if svc.HostPort != 0 && netcfg.BackendMayUse(d.spec.Services, svc.HostPort) {
			log.Warn("host_port reaches the service from other hosts only: a backend may listen on that port at one of this host's addresses, and the daemon's own dial to it would come back",
				"name", svc.Name, "host_port", svc.HostPort)
		}
	}
	return nil
}

// wait blocks until a signal on sigc, a component error or ctx, and says
// which. It stops signal delivery to sigc before returning.
func (d *daemon) wait(ctx context.Context, sigc chan os.Signal) (string, error) {
	defer signal.Stop(sigc)
	select {
	case s := <-sigc:
		return "signal " + s.String(), nil
	case err := <-d.errc:
		return "component failed", err
	case <-ctx.Done():
		return "done", nil
	}
}

// stop tears down whatever start set up, in reverse order. It goes on
// after errors and returns them all. Idempotent.
func (d *daemon) stop() error {
	d.stopOnce.Do(func() {
		var errs []error
		d.ready.Store(false)
		d.api.stopping.Store(true)
		close(d.quit)
		if d.metricsSrv != nil {
			d.metricsSrv.Close()
		}
		if d.netUp {
			if err := d.net.Down(); err != nil {
				errs = append(errs, fmt.Errorf("host networking: %w", err))
			}
		}
		for _, sv := range d.svcs {
			sv.Close()
		}
		if d.fwd != nil {
			d.fwd.Close()
		}
		if d.st != nil {
			d.st.Close()
		}
		if d.ep != nil {
			d.ep.Close() // idempotent; needed when stack.New failed
		}
		d.watchers.Wait()
		if d.host != nil {
			d.host.Close()
		}
		if d.keyLog != nil {
			if err := d.keyLog.Close(); err != nil {
				errs = append(errs, fmt.Errorf("key log: %w", err))
			}
		}
		if d.ctl != nil {
			d.ctl.Close()
		}
		d.stopErr = errors.Join(errs...)
	})
	return d.stopErr
}
