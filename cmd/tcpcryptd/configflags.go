package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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

// flagKeys maps each override flag to the configuration key it replaces.
var flagKeys = []struct{ flag, key string }{
	{flagDevice, "device.name"},
	{flagControlSocket, "control.socket"},
	{flagMetricsListen, "metrics.listen"},
	{flagLogLevel, "log.level"},
	{flagLogFormat, "log.format"},
	{flagKeyLog, "log.key_log"},
}

// overrides are the override flags given on the command line.
func overrides(c *cli.Context) []config.Override {
	var ovs []config.Override
	for _, fk := range flagKeys {
		if c.IsSet(fk.flag) {
			ovs = append(ovs, config.Override{Key: fk.key, Flag: fk.flag, Value: c.String(fk.flag)})
		}
	}
	return ovs
}

// loadConfig loads the configuration the command line names: --config,
// else config.DefaultPath if it exists, else the embedded default, with the
// override flags the command has applied before the one validation. It
// returns the configuration and where it came from. A bad value from the
// file is exitConfig; one from a flag is a usage error (exitUsage), with the
// same message naming the flag too.
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
	var cfg *config.Config
	var err error
	from := path
	if path == "" {
		from = "embedded default"
		cfg, err = config.DefaultWith(overrides(c)...)
	} else {
		cfg, err = config.LoadWith(path, overrides(c)...)
	}
	if ce := (*config.Error)(nil); errors.As(err, &ce) && ce.Flag != "" {
		return nil, "", usageError{err}
	}
	if err != nil {
		return nil, "", withCode(exitConfig, err)
	}
	return cfg, from, nil
}

// journalPath is where 'up' keeps the journal of its host changes, so that
// 'down' can undo them after a crash: beside the control socket, so that
// daemons with their own sockets (one per network namespace) have their
// own journals.
func journalPath(cfg *config.Config) string {
	return strings.TrimSuffix(cfg.Control.Socket, ".sock") + ".journal"
}
