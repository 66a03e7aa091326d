package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tcpcryptd/tcpcryptd/config"
)

func checkConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-config",
		Usage:     "validate a configuration file, or print the default one",
		UsageText: "tcpcryptd check-config [--config FILE] [--print-default]",
		Description: `Validates the configuration 'up' would use (--config FILE, else
` + config.DefaultPath + ` if it exists, else the embedded default) and prints a
summary. An invalid file is reported with the key, the bad value and the fix,
and the exit status is 3. Nothing on the host is touched.

--print-default prints the embedded default file: the reference of every key,
each shown with its default value.`,
		Flags: []cli.Flag{
			configFlag(),
			&cli.BoolFlag{Name: "print-default", Usage: "print the embedded default configuration and exit"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.Bool("print-default") {
				_, err := io.WriteString(c.App.Writer, config.DefaultText())
				return err
			}
			cfg, from, err := loadConfig(c)
			if err != nil {
				return err
			}
			// The protocol package checks the crypto section once more, as
			// 'up' will.
			if _, err := tcpcryptConfig(cfg.Crypto, cfg.Limits, nil); err != nil {
				return withCode(exitConfig, err)
			}
			printSummary(c.App.Writer, cfg, from)
			return nil
		},
	}
}

// printSummary says in a few lines what the configuration will do.
func printSummary(w io.Writer, cfg *config.Config, from string) {
	d := cfg.Device
	fmt.Fprintf(w, "%s: OK\n", from)
	fmt.Fprintf(w, "device    %s, MTU %d, kernel %v %v, stack %v %v, table %d, rule priority %d\n",
		d.Name, d.MTU, d.KernelIPv4, d.KernelIPv6, d.StackIPv4, d.StackIPv6, d.RouteTable, d.RulePriority)
	if len(cfg.Outbound.Include) == 0 {
		fmt.Fprintln(w, "outbound  none (no include prefixes)")
	} else {
		nat := "masquerade"
		if !cfg.Outbound.NAT {
			nat = "routed (no NAT)"
		}
		fmt.Fprintf(w, "outbound  %s, exclude %s, policy %s, %d rules, %s\n",
			joinPrefixes(cfg), fmt.Sprint(cfg.Outbound.Exclude), cfg.Outbound.Policy, len(cfg.Outbound.Policies), nat)
		fmt.Fprintln(w, "          (connections this host opens; never loopback, link-local, multicast or the device's prefixes)")
	}
	for _, s := range cfg.Services {
		extra := ""
		if s.ProxyProtocol {
			extra += ", PROXY v2"
		}
		if s.HostPort != 0 {
			extra += fmt.Sprintf(", host port %d", s.HostPort)
		}
		fmt.Fprintf(w, "service   %q %v -> %s, policy %s%s\n", s.Name, s.Listen, s.Backend, s.Policy, extra)
	}
	cr := cfg.Crypto
	res := "off"
	if cr.Resumption && cr.ResumptionCacheSize > 0 {
		res = fmt.Sprintf("on (%d entries, %s, look-ahead %d, %d per client prefix)", cr.ResumptionCacheSize, cr.ResumptionLifetime,
			cfg.Limits.ResumptionLookAhead, cfg.Limits.ResumptionPrefixShare)
	}
	fmt.Fprintf(w, "crypto    TEPs %s, AEADs %s, resumption %s\n", strings.Join(cr.TEPs, " "), strings.Join(cr.AEADs, " "), res)
	ka := "keepalive off"
	if t := cfg.TCP; t.Keepalive {
		ka = fmt.Sprintf("keepalive after %s idle, %d probes %s apart", t.KeepaliveIdle, t.KeepaliveCount, t.KeepaliveInterval)
	}
	l := cfg.Limits
	fmt.Fprintf(w, "relays    at most %d outbound, %d inbound, %d per source; %s\n", l.RelaysOutbound, l.RelaysInbound, l.RelaysPerSource, ka)
	fmt.Fprintf(w, "control   %s (mode %04o)\n", cfg.Control.Socket, cfg.Control.Mode)
	if cfg.Metrics.Listen != "" {
		fmt.Fprintf(w, "metrics   %s\n", cfg.Metrics.Listen)
	}
	if cfg.Log.KeyLog != "" {
		fmt.Fprintf(w, "WARNING   key log on: %s (anyone who reads it can decrypt the traffic)\n", cfg.Log.KeyLog)
	}
}

func joinPrefixes(cfg *config.Config) string {
	s := make([]string, len(cfg.Outbound.Include))
	for i, p := range cfg.Outbound.Include {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}
