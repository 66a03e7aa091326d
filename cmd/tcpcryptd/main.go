// Command tcpcryptd gives TCP applications opportunistic encryption with
// tcpcrypt (RFC 8548), negotiated by TCP-ENO (RFC 8547), in a userspace TCP
// stack fed by a TUN device.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args))
}

func run(args []string) int {
	app := newApp()
	if err := app.Run(args); err != nil {
		fmt.Fprintf(os.Stderr, "tcpcryptd: %v\n", err)
		if _, ok := err.(usageError); ok {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// usageError marks errors caused by how the command was called.
type usageError struct{ error }

func newApp() *cli.App {
	return &cli.App{
		Name:    "tcpcryptd",
		Usage:   "transparent tcpcrypt (RFC 8548) encryption for TCP, negotiated by TCP-ENO (RFC 8547)",
		Version: version,
		Commands: []*cli.Command{
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "tcpcryptd %s\n", version)
					return nil
				},
			},
			demoCommand(),
		},
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return usageError{err}
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(c.App.ErrWriter, "tcpcryptd: unknown command %q; see 'tcpcryptd --help'\n", name)
			os.Exit(exitUsage)
		},
	}
}
