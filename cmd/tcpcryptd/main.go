// Command tcpcryptd gives TCP applications opportunistic encryption with
// tcpcrypt (RFC 8548), negotiated by TCP-ENO (RFC 8547), in a userspace TCP
// stack fed by a TUN device.
//
// main wires and waits (see up.go for the daemon's setup and teardown
// order); every subcommand lives in a file named after it.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes. Scripts may rely on them; keep them stable.
const (
	exitOK           = 0 // success
	exitError        = 1 // the command failed at run time
	exitUsage        = 2 // bad command line: unknown command or flag, bad flag value
	exitConfig       = 3 // the configuration file is invalid or unreadable
	exitEnvironment  = 4 // a dependency is missing: privileges, /dev/net/tun, IPv6
	exitNotFound     = 5 // sessid: no such connection
	exitNotEncrypted = 6 // sessid: the connection is plain TCP
	exitNotReady     = 7 // status: the daemon answers but is starting or stopping
)

const exitCodesHelp = `EXIT CODES:
   0  success
   1  failure at run time (see the message)
   2  usage error: unknown command or flag, bad flag value
   3  invalid or unreadable configuration file (the message names the key)
   4  missing dependency: privileges (CAP_NET_ADMIN), /dev/net/tun, IPv6
   5  sessid: no connection with that address pair
   6  sessid: the connection is not encrypted
   7  status: the daemon runs but is not ready (starting or stopping)`

// version is set at link time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code. It never calls
// os.Exit, so tests run commands in-process.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "tcpcryptd: %v\n", err)
	return exitCodeOf(err)
}

// exitCodeOf maps an error to its exit code.
func exitCodeOf(err error) int {
	var ue usageError
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return ce.code
	}
	return exitError
}

// usageError marks errors caused by how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// codeError carries an exit code other than exitError. It deliberately does
// not implement cli.ExitCoder, whose handler would call os.Exit.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codeError{code: code, err: err}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "tcpcryptd",
		Usage: "transparent tcpcrypt (RFC 8548) encryption for TCP, negotiated by TCP-ENO (RFC 8547)",
		Description: "tcpcryptd runs a userspace TCP stack behind a TUN device. On a client host it\n" +
			"upgrades TCP connections to chosen subnets (outbound); on a server it terminates\n" +
			"tcpcrypt in front of services and relays plaintext to their backends (inbound).\n" +
			"Peers that do not speak TCP-ENO get plain TCP, unless policy requires encryption.\n\n" +
			"Start with 'tcpcryptd check-config --print-default' for the configuration reference,\n" +
			"then 'tcpcryptd up'. Each command has --help.\n\n" + exitCodesHelp,
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			upCommand(),
			downCommand(),
			statusCommand(),
			sessidCommand(),
			checkConfigCommand(),
			demoCommand(),
			versionCommand(),
		},
		// Unknown commands and a missing command are usage errors.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q; see 'tcpcryptd --help'", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return usagef("no command given")
		},
		OnUsageError: onUsageError,
		// Never let urfave/cli call os.Exit: run maps errors to codes.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = onUsageError
		}
	}
	return app
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	name := "tcpcryptd"
	if c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName
	}
	return usageError{fmt.Errorf("%w (see '%s --help')", err, name)}
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("%s takes no arguments, got %q (see '%s --help')", c.Command.Name, c.Args().First(), c.Command.HelpName)
	}
	return nil
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "tcpcryptd %s\n", version)
			return nil
		},
	}
}
