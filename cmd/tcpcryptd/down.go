package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vishvananda/netlink"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:      "down",
		Usage:     "remove everything a crashed 'up' left behind (needs CAP_NET_ADMIN)",
		UsageText: "tcpcryptd down [--config FILE] [--control-socket PATH] [--device NAME]",
		Description: `Undoes the host changes of an 'up' that did not finish its own teardown
(kill -9, crash, power loss of the process): it replays the journal kept next
to the control socket (restoring sysctls such as forwarding to their earlier
values), then removes whatever still carries tcpcryptd's marks: policy rules,
routes in its table or with its route protocol, the nftables table "` + netcfg.NFTTableName + `",
addresses on the device, the TUN device itself, and a stale control socket.
It prints each thing it removed, or that there was nothing to remove; running
it again changes nothing. Give it the same --config (and overrides) as 'up'.

It refuses to run while a daemon answers on the control socket: stop that
first (systemctl stop tcpcryptd, or SIGTERM).

` + exitCodesHelp,
		Flags: []cli.Flag{configFlag(), controlSocketFlag(), deviceFlag()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, _, err := loadConfig(c)
			if err != nil {
				return err
			}
			if err := hostPreflight.check(false); err != nil {
				return err
			}
			host, err := netcfg.NewLinuxHost()
			if err != nil {
				return fmt.Errorf("netlink: %w", err)
			}
			defer host.Close()
			return runDown(cfg, host, linuxLinks{}, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// linkDeleter finds and deletes network interfaces (netlink on a host;
// a fake in tests).
type linkDeleter interface {
	// Kind returns the interface's kind ("tun", "veth"...), or
	// fs.ErrNotExist.
	Kind(name string) (string, error)
	Delete(name string) error
}

// linuxLinks is the linkDeleter of the current network namespace.
type linuxLinks struct{}

func (linuxLinks) Kind(name string) (string, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return "", fs.ErrNotExist
		}
		return "", err
	}
	return l.Type(), nil
}

func (linuxLinks) Delete(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkDel(l)
}

// runDown removes our leftovers from host and prints what it removed to
// out. Warnings (sysctls that cannot be restored) go to errw.
func runDown(cfg *config.Config, host netcfg.Host, links linkDeleter, out, errw io.Writer) error {
	sock := cfg.Control.Socket
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("a tcpcryptd answers on %s: stop it first (it undoes its own changes)", sock)
	}
	rep := &removalReport{out: out, errw: errw}
	log := slog.New(rep)
	err := netcfg.Cleanup(host, netcfg.CleanupOptions{
		Device:       cfg.Device.Name,
		Table:        cfg.Device.RouteTable,
		RulePriority: cfg.Device.RulePriority,
		JournalPath:  journalPath(cfg),
		Logger:       log,
	})
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}

	// The device: a TUN disappears with the process that opened it, unless
	// it was made persistent; never touch an interface of another kind.
	switch kind, err := links.Kind(cfg.Device.Name); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		errs = append(errs, fmt.Errorf("device %s: %w", cfg.Device.Name, err))
	case kind != "tun" && kind != "tuntap":
		fmt.Fprintf(errw, "warning: %s is a %s interface, not a TUN device; left alone\n", cfg.Device.Name, kind)
	default:
		if err := links.Delete(cfg.Device.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete device %s: %w", cfg.Device.Name, err))
		} else {
			rep.removed("device " + cfg.Device.Name)
		}
	}

	// A socket file nobody answers on (checked above).
	if fi, err := os.Lstat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if err := os.Remove(sock); err != nil {
			errs = append(errs, fmt.Errorf("stale control socket: %w", err))
		} else {
			rep.removed("stale control socket " + sock)
		}
	}

	if rep.count() == 0 && len(errs) == 0 {
		fmt.Fprintln(out, "nothing to remove")
	}
	return errors.Join(errs...)
}

// removalReport is a slog.Handler that turns netcfg's log lines about what
// it removed or undid into one plain line each on out, and warnings into
// "warning:" lines on errw.
type removalReport struct {
	out, errw io.Writer
	mu        sync.Mutex
	n         int // lines printed to out; guarded by mu
}

func (r *removalReport) removed(what string) { r.printf("removed %s\n", what) }

func (r *removalReport) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format, args...)
	r.n++
}

func (r *removalReport) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Enabled implements slog.Handler.
func (r *removalReport) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle implements slog.Handler.
func (r *removalReport) Handle(_ context.Context, rec slog.Record) error {
	msg := strings.TrimPrefix(rec.Message, "netcfg: ")
	var change string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "change" {
			change = a.Value.String()
		}
		return true
	})
	switch {
	case rec.Level >= slog.LevelWarn:
		r.mu.Lock()
		fmt.Fprintf(r.errw, "warning: %s\n", msg)
		r.mu.Unlock()
	case msg == "undone" && change != "":
		// A journal entry: "added X" is undone by removing X; others
		// ("set K, was V") by restoring.
		if what, ok := strings.CutPrefix(change, "added "); ok {
			r.removed(what)
		} else if what, ok := strings.CutPrefix(change, "created "); ok {
			r.removed(what)
		} else if kv, ok := strings.CutPrefix(change, "set "); ok && strings.Contains(kv, ", was ") {
			k, v, _ := strings.Cut(kv, ", was ")
			r.printf("restored %s to %s\n", k, v)
		} else if lv, ok := strings.CutPrefix(change, "changed "); ok && strings.Contains(lv, ", was: ") {
			l, v, _ := strings.Cut(lv, ", was: ")
			r.printf("restored %s: %s\n", l, v)
		} else {
			r.printf("undone: %s\n", change)
		}
	case strings.HasPrefix(msg, "cleanup: removed "):
		r.removed(strings.TrimPrefix(msg, "cleanup: removed "))
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (r *removalReport) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler.
func (r *removalReport) WithGroup(string) slog.Handler { return r }
