package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpcryptd/tcpcryptd/control"
)

// clientFlags locate a running daemon's control socket.
func clientFlags() []cli.Flag {
	return []cli.Flag{configFlag(), controlSocketFlag()}
}

// dialDaemon connects to the control socket named by --control-socket, or
// by the configuration's control.socket.
func dialDaemon(c *cli.Context) (*control.Client, error) {
	path := c.String(flagControlSocket)
	if path == "" {
		cfg, _, err := loadConfig(c)
		if err != nil {
			return nil, err
		}
		path = cfg.Control.Socket
	}
	return control.Dial(path)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the connections the daemon relays",
		UsageText: "tcpcryptd status [--json] [--config FILE | --control-socket PATH]",
		Description: `Asks the running daemon (through its control socket) for its connection
table and prints one line per connection:

   DIR      out: a local application's connection, upgraded by the forwarder
            in:  a remote client's connection to a service
   LOCAL    out: the application's address; in: the service address
   REMOTE   out: the server; in: the client
   STATE    connecting (outer leg or backend being set up), relaying, closing
   CRYPTO   TEP/AEAD of an encrypted connection ("resumed" for RFC 8548 §3.5
            resumption), or "plain (REASON)" with the TCP-ENO fallback reason
   SESSION  the start of the session ID ('tcpcryptd sessid' prints it whole)
   SENT     plaintext bytes towards REMOTE; RECV: from REMOTE
   AGE      time since the connection arrived

--json prints the full table (control API /v1/connections) instead.

Exits 0 when the daemon is ready, 7 while it is starting or stopping (the
table is still printed), 1 when no daemon answers: 'until tcpcryptd status
>/dev/null; do sleep 0.2; done' waits for readiness.`,
		Flags: append(clientFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cl, err := dialDaemon(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			// Health first: the exit code says whether the daemon is
			// ready, so scripts and health checks can wait on it.
			h, herr := cl.Health()
			if herr != nil && !errors.Is(herr, control.ErrUnavailable) {
				return herr
			}
			conns, err := cl.Connections()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if conns == nil {
					conns = []control.Connection{}
				}
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(control.ConnectionList{Connections: conns}); err != nil {
					return err
				}
			} else {
				renderStatus(c.App.Writer, h, conns, time.Now())
			}
			if herr != nil {
				return withCode(exitNotReady, errors.New("the daemon is starting or stopping (not ready)"))
			}
			return nil
		},
	}
}

// renderStatus writes the human status: a line about the daemon, then the
// connection table and a summary.
func renderStatus(w io.Writer, h control.Health, conns []control.Connection, now time.Time) {
	if h.Status != "" {
		fmt.Fprintf(w, "tcpcryptd %s (pid %d) on %s, up %s: %s\n", h.Version, h.PID, h.Device,
			now.Sub(h.Started).Truncate(time.Second), h.Status)
	} else {
		fmt.Fprintln(w, "tcpcryptd is starting or stopping")
	}
	if len(conns) == 0 {
		fmt.Fprintln(w, "no connections")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDIR\tLOCAL\tREMOTE\tSTATE\tCRYPTO\tSESSION\tSENT\tRECV\tAGE")
	var enc, plain, pending int
	for _, c := range conns {
		dir, local, remote := "out", c.App.Local, c.Outer.Remote
		if c.Direction == control.Inbound {
			dir, local = "in", c.Outer.Local
		}
		crypto, session := "-", "-"
		switch {
		case c.Encrypted:
			enc++
			crypto = c.TEP + "/" + c.AEAD
			if c.Resumed {
				crypto += " resumed"
			}
			session = c.SessionID
			if len(session) > 16 {
				session = session[:16] + "…"
			}
		case c.Fallback != "":
			plain++
			crypto = "plain (" + c.Fallback + ")"
		default:
			pending++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, dir, addrOrDash(local), addrOrDash(remote),
			c.State, crypto, session, humanBytes(c.BytesToPeer), humanBytes(c.BytesFromPeer), age(now, c.Start))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d connections: %d encrypted, %d plain, %d being set up\n", len(conns), enc, plain, pending)
}

func addrOrDash(a netip.AddrPort) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func age(now, start time.Time) string {
	if start.IsZero() {
		return "-"
	}
	d := now.Sub(start)
	if d < 0 {
		d = 0
	}
	if d < time.Minute {
		return d.Truncate(100 * time.Millisecond).String()
	}
	return d.Truncate(time.Second).String()
}

// humanBytes prints a byte count with a binary unit.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func sessidCommand() *cli.Command {
	return &cli.Command{
		Name:      "sessid",
		Usage:     "print the session ID of one connection, for scripts",
		UsageText: "tcpcryptd sessid --local ADDR:PORT --remote ADDR:PORT [--config FILE | --control-socket PATH]",
		Description: `Prints the tcpcrypt session ID (RFC 8548 §3.4) of a relayed connection in hex.
Name the connection as the application sees its own socket: on a client host
--local is the application's address and port and --remote the server it
connected to; on a server, a backend gives its own address as --local and the
address tcpcryptd connected from as --remote. Both ends of an encrypted
connection print the same ID; comparing them out of band rules out a
man in the middle.

Exit status 5: no such connection; 6: the connection is plain TCP.`,
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "local", Usage: "the connection's local `ADDR:PORT` (e.g. 10.254.77.1:40000 or [fd00::1]:40000)"},
			&cli.StringFlag{Name: "remote", Usage: "the connection's remote `ADDR:PORT`"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			var ends [2]netip.AddrPort
			for i, name := range []string{"local", "remote"} {
				v := c.String(name)
				if v == "" {
					return usagef("--%s ADDR:PORT is required", name)
				}
				ap, err := netip.ParseAddrPort(v)
				if err != nil {
					return usagef("--%s %q: write ADDR:PORT such as 10.0.0.1:443 or [fd00::1]:443", name, v)
				}
				ends[i] = ap
			}
			cl, err := dialDaemon(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			id, err := cl.SessionID(ends[0], ends[1])
			var ae *control.APIError
			switch {
			case errors.Is(err, control.ErrNotFound):
				return withCode(exitNotFound, fmt.Errorf("no connection with local %v and remote %v goes through tcpcryptd (is its traffic routed into the device?)", ends[0], ends[1]))
			case errors.Is(err, control.ErrNotEncrypted) && errors.As(err, &ae):
				why := "it is still being set up"
				if ae.Reason != "" {
					why = "TCP-ENO fell back: " + ae.Reason
				}
				return withCode(exitNotEncrypted, fmt.Errorf("connection %v -> %v is not encrypted (%s)", ends[0], ends[1], why))
			case err != nil:
				return err
			}
			fmt.Fprintf(c.App.Writer, "%x\n", id)
			return nil
		},
	}
}
