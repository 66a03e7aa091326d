package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
)

// The demo's two namespaces, joined by one veth:
//
//	laptop ns                                       server ns
//	  HTTP client (kernel socket)                     HTTP server 127.0.0.1:8080, [::1]:8080
//	  tcpcryptd: outbound 10.78.1.0/24, fd78:1::/64   tcpcryptd: services 10.78.1.1:80, [fd78:1::1]:80
//	  eth0 10.78.0.1/24 fd78::1/64 ---- veth ---- eth0 10.78.0.2/24 fd78::2/64
//	  10.78.1.0/24, fd78:1::/64 via the server
//
// The capture runs on the laptop's eth0, so it shows what a router between
// the two would see.
var (
	demoLaptopV4  = netip.MustParsePrefix("10.78.0.1/24")
	demoLaptopV6  = netip.MustParsePrefix("fd78::1/64")
	demoServerV4  = netip.MustParsePrefix("10.78.0.2/24")
	demoServerV6  = netip.MustParsePrefix("fd78::2/64")
	demoServiceV4 = netip.MustParseAddr("10.78.1.1")
	demoServiceV6 = netip.MustParseAddr("fd78:1::1")
)

const (
	demoPrefix     = "tcpcdemo"
	demoBackend    = 8080
	demoIface      = "eth0"
	demoDevice     = "tcpc0"
	demoPlainReply = "hello from the server namespace; this sentence never crosses the wire in plaintext"
)

// demoLaptopConfig and demoServerConfig are the embedded demo configurations
// (%s: the control socket).
const demoLaptopConfig = `# tcpcryptd demo: the laptop upgrades connections to the server's services.
[device]
name = "` + demoDevice + `"

[outbound]
include = ["10.78.1.0/24", "fd78:1::/64"]
policy = "opportunistic"

[control]
socket = %q
`

const demoServerConfig = `# tcpcryptd demo: the server terminates tcpcrypt in front of a plain HTTP server.
[device]
name = "` + demoDevice + `"

[[service]]
name = "web4"
listen = "10.78.1.1:80"
backend = "127.0.0.1:8080"
proxy_protocol = true

[[service]]
name = "web6"
listen = "[fd78:1::1]:80"
backend = "[::1]:8080"
proxy_protocol = true

[control]
socket = %q
`

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run tcpcryptd between two network namespaces on an embedded default config (needs root)",
		Description: `Creates two network namespaces, "laptop" and "server", joined by a veth link
with IPv4 and IPv6 addresses, and starts a tcpcryptd in each (this same binary,
with an embedded demo configuration). An ordinary HTTP client in the laptop
namespace then fetches a page from an ordinary HTTP server in the server
namespace, over IPv4 and over IPv6: neither knows about tcpcrypt. The demo
prints both daemons' connection tables (the same session ID on both sides), the
PROXY header the server's backend received, and an excerpt of the wire bytes
captured between the namespaces: the TCP-ENO option (kind 69) in the SYN, and
ciphertext where the HTTP request would be. Everything it created is removed at
the end, also on error or Ctrl-C. Nothing outside the two namespaces is changed.`,
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return withCode(exitEnvironment, errors.New("demo needs root: it creates network namespaces and runs tcpcryptd in them (try: sudo tcpcryptd demo)"))
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			d := &demo{out: c.App.Writer}
			err := d.run(ctx)
			if cerr := d.cleanup(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("demo interrupted or timed out; everything it created is removed: %w", err)
			}
			return err
		},
	}
}

// demo holds what one run creates, so cleanup can remove it whatever
// happened.
type demo struct {
	out io.Writer

	dir            string
	laptop, server *topo.NS
	capture        *impair.Capture
	daemons        []*demoDaemon
	web            *http.Server
	webWG          sync.WaitGroup
	clients        []*http.Transport

	mu      sync.Mutex
	headers []*proxyproto.Header // PROXY headers the backend received
}

type demoDaemon struct {
	role   string
	cmd    *topo.Cmd
	log    string // log file
	api    *control.Client
	socket string
	done   chan struct{}
	err    error
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: cannot find this binary to run the daemons: %w", err)
	}
	if _, err := topo.RemoveLeftovers(demoPrefix, 0); err != nil {
		d.printf("warning: could not remove a previous demo's namespaces: %v\n", err)
	}
	if d.dir, err = os.MkdirTemp("", "tcpcryptd-demo-"); err != nil {
		return err
	}

	d.printf("== Setting up: network namespaces \"laptop\" and \"server\", joined by a veth\n")
	if err := d.setupNetwork(); err != nil {
		return err
	}
	d.printf("   laptop %s  eth0 %s %s\n", d.laptop.Name, demoLaptopV4, demoLaptopV6)
	d.printf("   server %s  eth0 %s %s\n", d.server.Name, demoServerV4, demoServerV6)
	if err := d.laptop.Do(func() error {
		var err error
		d.capture, err = impair.NewCapture(demoIface, 16<<20)
		return err
	}); err != nil {
		return fmt.Errorf("demo: capture on the laptop's %s: %w", demoIface, err)
	}
	if err := d.startBackend(); err != nil {
		return err
	}
	srv, err := d.startDaemon(ctx, exe, d.server, "server", demoServerConfig)
	if err != nil {
		return err
	}
	lap, err := d.startDaemon(ctx, exe, d.laptop, "laptop", demoLaptopConfig)
	if err != nil {
		return err
	}
	d.printf("   tcpcryptd running in both (pids %d, %d); the server's HTTP backend listens on port %d\n\n",
		lap.cmd.Process.Pid, srv.cmd.Process.Pid, demoBackend)

	ids := map[string][2]string{}
	for _, svc := range []netip.Addr{demoServiceV4, demoServiceV6} {
		url := "http://" + netip.AddrPortFrom(svc, 80).String() + "/"
		d.printf("== laptop$ curl %s   (an ordinary HTTP client, kernel socket)\n", url)
		body, local, remote, err := d.get(ctx, url)
		if err != nil {
			return err
		}
		d.printf("   %s\n", strings.TrimSpace(body))
		lid, err := lap.api.SessionID(local, remote)
		if err != nil {
			return fmt.Errorf("demo: laptop session ID of %v -> %v: %w", local, remote, err)
		}
		var sid []byte
		if h := d.lastHeader(); h != nil {
			sid, _ = h.SessionID()
			d.printf("   the backend's PROXY v2 header: client %v, service %v, session ID TLV %x\n", h.Source, h.Dest, sid)
		}
		ids[url] = [2]string{hex.EncodeToString(lid), hex.EncodeToString(sid)}
	}

	for _, dd := range []*demoDaemon{lap, srv} {
		conns, err := dd.api.Connections()
		if err != nil {
			return fmt.Errorf("demo: %s connections: %w", dd.role, err)
		}
		h, _ := dd.api.Health()
		d.printf("\n== %s$ tcpcryptd status\n", dd.role)
		renderStatus(d.out, h, conns, time.Now())
	}

	d.printf("\n== Session IDs (RFC 8548 §3.4), compared out of band\n")
	match := true
	for url, id := range ids {
		same := id[0] != "" && id[0] == id[1]
		match = match && same
		verdict := "MATCH"
		if !same {
			verdict = "DIFFER"
		}
		d.printf("   %s\n     laptop (control API): %s\n     server (PROXY TLV):   %s\n     -> session IDs %s\n", url, id[0], id[1], verdict)
	}

	// Closing the clients ends the connections, so the capture holds them
	// whole.
	for _, tr := range d.clients {
		tr.CloseIdleConnections()
	}
	time.Sleep(200 * time.Millisecond)
	frames := d.capture.Stop()
	if err := d.showWire(frames); err != nil {
		return err
	}
	if !match {
		return errors.New("demo: the two sides disagree on a session ID")
	}
	d.printf("\nDone: both connections were encrypted end to end, and both sides hold the same session IDs.\n")
	return nil
}

// setupNetwork creates the two namespaces and the veth between them.
func (d *demo) setupNetwork() error {
	var err error
	if d.laptop, err = topo.NewNamespace(demoPrefix, "laptop"); err != nil {
		return err
	}
	if d.server, err = topo.NewNamespace(demoPrefix, "server"); err != nil {
		return err
	}
	if err := topo.Link(d.laptop, demoIface, nil, d.server, demoIface, nil); err != nil {
		return err
	}
	if err := d.laptop.AddAddrs(demoIface, demoLaptopV4, demoLaptopV6); err != nil {
		return err
	}
	if err := d.server.AddAddrs(demoIface, demoServerV4, demoServerV6); err != nil {
		return err
	}
	// The service addresses live behind the server (its tcpcryptd routes
	// them into its TUN device).
	if err := d.laptop.AddRoute(netip.MustParsePrefix("10.78.1.0/24"), demoServerV4.Addr(), demoIface); err != nil {
		return err
	}
	return d.laptop.AddRoute(netip.MustParsePrefix("fd78:1::/64"), demoServerV6.Addr(), demoIface)
}

// startBackend runs the plain HTTP server in the server namespace. It reads
// the PROXY v2 header tcpcryptd sends first, to show the session ID a
// backend receives.
func (d *demo) startBackend() error {
	d.web = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "HTTP %d from the backend: %q\n", http.StatusOK, demoPlainReply)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	for _, a := range []string{fmt.Sprintf("127.0.0.1:%d", demoBackend), fmt.Sprintf("[::1]:%d", demoBackend)} {
		l, err := d.server.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("demo: backend listener %s: %w", a, err)
		}
		d.webWG.Add(1)
		go func() {
			defer d.webWG.Done()
			d.web.Serve(&demoProxyListener{Listener: l, d: d})
		}()
	}
	return nil
}

// demoProxyListener strips (and records) the PROXY v2 header of each
// connection before the HTTP server sees it.
type demoProxyListener struct {
	net.Listener
	d *demo
}

func (l *demoProxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := proxyproto.ReadHeader(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			c.Close()
			continue
		}
		l.d.mu.Lock()
		l.d.headers = append(l.d.headers, h)
		l.d.mu.Unlock()
		return c, nil
	}
}

func (d *demo) lastHeader() *proxyproto.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.headers) == 0 {
		return nil
	}
	return d.headers[len(d.headers)-1]
}

// startDaemon writes cfg and runs `exe up --config` in ns until healthy.
func (d *demo) startDaemon(ctx context.Context, exe string, ns *topo.NS, role, cfg string) (*demoDaemon, error) {
	dd := &demoDaemon{role: role, socket: filepath.Join(d.dir, role+".sock"), log: filepath.Join(d.dir, role+".log"),
		done: make(chan struct{})}
	path := filepath.Join(d.dir, role+".toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cfg, dd.socket)), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(dd.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	dd.cmd = ns.Command(exe, "up", "--config", path)
	dd.cmd.Stdout, dd.cmd.Stderr = logf, logf
	if err := dd.cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: start tcpcryptd in %s: %w", role, err)
	}
	d.daemons = append(d.daemons, dd)
	go func() {
		dd.err = dd.cmd.Wait()
		close(dd.done)
	}()
	dd.api = control.NewClient(dd.socket)
	for {
		if h, err := dd.api.Health(); err == nil && h.Status == "ok" {
			return dd, nil
		}
		select {
		case <-dd.done:
			return nil, fmt.Errorf("demo: tcpcryptd in %s exited during start-up (%v):\n%s", role, dd.err, tail(dd.log))
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: waiting for tcpcryptd in %s: %w", role, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// get fetches url from the laptop namespace and keeps the connection open
// (keep-alive) so both daemons still list it; it returns the body and the
// client socket's own addresses.
func (d *demo) get(ctx context.Context, url string) (string, netip.AddrPort, netip.AddrPort, error) {
	var conn net.Conn
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.laptop.DialContext(ctx, network, addr)
			conn = c
			return c, err
		},
	}
	d.clients = append(d.clients, tr)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", netip.AddrPort{}, netip.AddrPort{}, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", netip.AddrPort{}, netip.AddrPort{}, fmt.Errorf("demo: GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", netip.AddrPort{}, netip.AddrPort{}, fmt.Errorf("demo: GET %s: %w", url, err)
	}
	return string(b), tcpAddrPort(conn.LocalAddr()), tcpAddrPort(conn.RemoteAddr()), nil
}

func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// showWire prints the captured SYN with its ENO option, and the first data
// bytes the laptop sent where the plaintext request would be; it fails if
// the plaintext is anywhere on the wire.
func (d *demo) showWire(frames []impair.Captured) error {
	segs := impair.Segments(frames)
	streams := impair.Streams(segs)
	d.printf("\n== On the wire (captured on the laptop's %s: %d frames)\n", demoIface, len(frames))
	for _, svc := range []netip.Addr{demoServiceV4, demoServiceV6} {
		dst := netip.AddrPortFrom(svc, 80)
		var syn *impair.Packet
		for i := range segs {
			if p := &segs[i]; p.Flow().Dst == dst && p.SYN() {
				syn = p
				break
			}
		}
		if syn == nil {
			return fmt.Errorf("demo: the capture lacks the connection to %v", dst)
		}
		d.printf("   SYN   %s\n", impair.Describe(syn))
		opts := syn.Frame[syn.OptOff : syn.OptOff+syn.OptLen]
		d.printf("         TCP options: % x\n", opts)
		o, ok := syn.Option(impair.OptENO)
		if !ok {
			return fmt.Errorf("demo: the SYN to %v carries no ENO option", dst)
		}
		d.printf("         TCP-ENO (kind 69 = 0x45, RFC 8547): % x\n", syn.Frame[o.Off:o.Off+o.Len])
		up := streams[syn.Flow()]
		if n := init1Len(up); n > 0 {
			d.printf("   laptop -> server: tcpcrypt INIT1 (key exchange, RFC 8548 §4.1), %d bytes, then encrypted frames.\n", n)
			up = up[n:]
		}
		if len(up) == 0 {
			return fmt.Errorf("demo: no data from the laptop to %v in the capture", dst)
		}
		d.printf("   The first frame carries the HTTP request; in plaintext it would start \"GET / HTTP\" = % x:\n", []byte("GET / HTTP"))
		d.printf("%s", impair.HexDump(up[:min(64, len(up))]))
	}
	for k, b := range streams {
		for _, m := range []string{"GET / HTTP", demoPlainReply} {
			if bytes.Contains(b, []byte(m)) {
				return fmt.Errorf("demo: plaintext %q seen on the wire in %v", m, k)
			}
		}
	}
	d.printf("   neither the request nor the response text appears anywhere in the capture.\n")
	return nil
}

// init1Len returns the length of the tcpcrypt INIT1 message (RFC 8548 §4.1:
// INIT1_MAGIC 0x15101a0e, then the message length) at the start of b, or 0.
func init1Len(b []byte) int {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte{0x15, 0x10, 0x1a, 0x0e}) {
		return 0
	}
	n := int(b[4])<<24 | int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	if n < 8 || n > len(b) {
		return 0
	}
	return n
}

// cleanup stops the daemons, the backend and the capture, and removes the
// namespaces and files, whatever state run left them in.
func (d *demo) cleanup() error {
	var errs []error
	for _, tr := range d.clients {
		tr.CloseIdleConnections()
	}
	for i := len(d.daemons) - 1; i >= 0; i-- {
		dd := d.daemons[i]
		dd.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-dd.done:
		case <-time.After(10 * time.Second):
			dd.cmd.Process.Kill()
			<-dd.done
			errs = append(errs, fmt.Errorf("demo: tcpcryptd in %s did not stop within 10s:\n%s", dd.role, tail(dd.log)))
		}
		dd.api.Close()
	}
	if d.web != nil {
		d.web.Close()
		d.webWG.Wait()
	}
	if d.capture != nil {
		d.capture.Stop()
	}
	for _, n := range []*topo.NS{d.laptop, d.server} {
		if n != nil {
			if err := n.Remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	return errors.Join(errs...)
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
