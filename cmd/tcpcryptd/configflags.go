package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpcryptd/tcpcryptd/config"
)

// Flags shared by commands. Their names are part of the command line's
// stable interface (the integration tests and the systemd unit use them).
const (
	flagConfig        = "config"
	flagLogLevel      = "log-level"
	flagLogFormat     = "log-format"
	flagKeyLog        = "key-log"
	flagControlSocket = "control-socket"
	flagMetricsListen = "metrics-listen"
	flagDevice        = "device"
)

func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    flagConfig,
		Aliases: []string{"c"},
		Usage: "configuration `FILE` (default: " + config.DefaultPath +
			" if it exists, else the embedded default shown by 'check-config --print-default')",
	}
}

func controlSocketFlag() cli.Flag {
	return &cli.StringFlag{Name: flagControlSocket, Usage: "control socket `PATH` (overrides control.socket)"}
}

func deviceFlag() cli.Flag {
	return &cli.StringFlag{Name: flagDevice, Usage: "TUN device `NAME` (overrides device.name)"}
}

// upFlags are the flags of 'up': the config file and the values they may
// override.
func upFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(),
		&cli.StringFlag{Name: flagLogLevel, Usage: "log `LEVEL`: debug, info, warn or error (overrides log.level)"},
		&cli.StringFlag{Name: flagLogFormat, Usage: "log `FORMAT`: text or json (overrides log.format)"},
		&cli.StringFlag{Name: flagKeyLog, Usage: "append session secrets to `FILE` for decrypting captures; " +
			"anyone who can read it can decrypt the traffic (overrides log.key_log)"},
		controlSocketFlag(),
		&cli.StringFlag{Name: flagMetricsListen, Usage: "also serve Prometheus metrics on `ADDR:PORT` (overrides metrics.listen)"},
		deviceFlag(),
	}
}

// loadConfig loads the configuration the command line names: --config,
// else config.DefaultPath if it exists, else the embedded default. It
// returns the configuration and where it came from. Errors are exitConfig.
func loadConfig(c *cli.Context) (*config.Config, string, error) {
	path := c.String(flagConfig)
	explicit := path != ""
	if !explicit {
		if _, err := os.Stat(config.DefaultPath); err == nil {
			path = config.DefaultPath
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", withCode(exitConfig, fmt.Errorf("config: %w", err))
		}
	}
	if path == "" {
		return config.Default(), "embedded default", nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, "", withCode(exitConfig, err)
	}
	return cfg, path, nil
}

// ifnameRE is what Linux accepts as an interface name that we would create
// (IFNAMSIZ-1 bytes; no '/', ':' or whitespace).
var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// applyOverrides copies the flags that were given onto cfg, checking each
// value as the config file's validation would. Errors name the flag and
// are usage errors.
func applyOverrides(c *cli.Context, cfg *config.Config) error {
	set := func(name string) (string, bool) {
		if !c.IsSet(name) {
			return "", false
		}
		return c.String(name), true
	}
	if v, ok := set(flagLogLevel); ok {
		switch v {
		case "debug", "info", "warn", "error":
			cfg.Log.Level = v
		default:
			return usagef("--%s %q: use debug, info, warn or error", flagLogLevel, v)
		}
	}
	if v, ok := set(flagLogFormat); ok {
		switch v {
		case "text", "json":
			cfg.Log.Format = v
		default:
			return usagef("--%s %q: use text or json", flagLogFormat, v)
		}
	}
	if v, ok := set(flagKeyLog); ok {
		if v == "" {
			return usagef("--%s needs a file name", flagKeyLog)
		}
		cfg.Log.KeyLog = v
	}
	if v, ok := set(flagControlSocket); ok {
		if !filepath.IsAbs(v) {
			return usagef("--%s %q: use an absolute path such as /run/tcpcryptd/control.sock", flagControlSocket, v)
		}
		cfg.Control.Socket = v
	}
	if v, ok := set(flagMetricsListen); ok {
		if v != "" {
			if _, err := netip.ParseAddrPort(v); err != nil {
				return usagef("--%s %q: write ADDR:PORT such as 127.0.0.1:9477, or \"\" for none", flagMetricsListen, v)
			}
		}
		cfg.Metrics.Listen = v
	}
	if v, ok := set(flagDevice); ok {
		if !ifnameRE.MatchString(v) || v == "." || v == ".." {
			return usagef("--%s %q: use up to 15 letters, digits, '_', '-' or '.'", flagDevice, v)
		}
		cfg.Device.Name = v
	}
	return nil
}

// journalPath is where 'up' keeps the journal of its host changes, so that
// 'down' can undo them after a crash: beside the control socket, so that
// daemons with their own sockets (one per network namespace) have their
// own journals.
func journalPath(cfg *config.Config) string {
	return strings.TrimSuffix(cfg.Control.Socket, ".sock") + ".journal"
}
