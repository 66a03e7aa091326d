package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run tcpcryptd between two network namespaces on an embedded default config (needs root)",
		Action: func(c *cli.Context) error {
			return errors.New("demo: not yet available: the daemon (TUN, routes, namespaces) is not built yet")
		},
	}
}
