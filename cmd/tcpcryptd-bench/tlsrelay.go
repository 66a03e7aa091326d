package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// TLS relay setup: a pair of TLS 1.3 proxies, the way a TLS-terminating
// sidecar would carry the traffic. The client-side relay in the laptop
// namespace accepts plain TCP on 127.0.0.1:6001 and opens a TLS connection per
// connection to the server-side relay on 10.77.2.2:6443, which terminates it
// and opens a plain connection to the backend on 127.0.0.1:BackendPort. Both
// run as `<Self> tlsrelay ...` (runTLSRelay).

const (
	tlsRelayServerPort = 6443
	tlsRelayClientPort = 6001
)

var tlsRelayClientAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tlsRelayClientPort)

type tlsRelaySetup struct {
	env   *Env
	name  string
	procs []*sideProc // server, laptop (client relay)
}

// startTLSRelay makes a CA and a server certificate in env.Dir, starts the
// server-side and then the client-side relay, and returns once a connection
// through both reaches the backend. With resume, the client keeps a session
// cache, so every connection after the first resumes (TLS 1.3 PSK); without,
// the server issues no tickets and every connection is a full handshake.
func startTLSRelay(env *Env, resume bool) (_ Setup, err error) {
	s := &tlsRelaySetup{env: env, name: "tls13-relay"}
	if resume {
		s.name = "tls13-relay-resumed"
	}
	if env.Self == "" {
		return nil, fmt.Errorf("%s: no executable for the relays (Env.Self)", s.name)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	serverIP := byFamily(env, topo.ServerIPv4, topo.ServerIPv6)
	ca, cert, key, err := writeTLSRelayCerts(env.Dir, serverIP)
	if err != nil {
		return nil, fmt.Errorf("%s: certificates: %w", s.name, err)
	}
	serverAddr := netip.AddrPortFrom(serverIP, tlsRelayServerPort)
	backend := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), env.BackendPort)
	resumeFlag := "-resume=" + strconv.FormatBool(resume)
	for _, x := range []struct {
		role string
		ns   *topo.NS
		args []string
	}{
		{"server", env.Topo.Server, []string{"-mode", "server", "-listen", serverAddr.String(), "-connect", backend.String(), "-cert", cert, "-key", key, resumeFlag}},
		{"laptop", env.Topo.Laptop, []string{"-mode", "client", "-listen", tlsRelayClientAddr.String(), "-connect", serverAddr.String(), "-ca", ca, resumeFlag}},
	} {
		cmd := x.ns.Command(env.Self, append([]string{"tlsrelay"}, x.args...)...)
		p, err := startSideProc(cmd, "tlsrelay", x.role, "")
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, p)
	}
	if err := s.waitReady(15 * time.Second); err != nil {
		return nil, err
	}
	if env.Logf != nil {
		env.Logf("%s: client relay %s -> server relay %s -> backend %s", s.name, tlsRelayClientAddr, serverAddr, backend)
	}
	return s, nil
}

// waitReady sends one byte through the whole chain (client relay, TLS
// handshake, server relay, backend) until one byte comes back: the backend's
// ping operation answers 'P' with one byte, and an echo server does too.
func (s *tlsRelaySetup) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		for _, p := range s.procs {
			if p.exited() {
				return fmt.Errorf("%s: relay (%s) exited during start-up (%v)%s", s.name, p.role, p.err, p.tailSuffix())
			}
		}
		if last = s.ping(); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s not reachable after %v: %v%s%s", s.name, tlsRelayClientAddr, timeout, last,
		s.procs[0].tailSuffix(), s.procs[1].tailSuffix())
}

func (s *tlsRelaySetup) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := s.env.Topo.Laptop.DialContext(ctx, "tcp", tlsRelayClientAddr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte{'P'}); err != nil {
		return err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err
}

func (s *tlsRelaySetup) Name() string           { return s.name }
func (s *tlsRelaySetup) Target() netip.AddrPort { return tlsRelayClientAddr }

func (s *tlsRelaySetup) Procs() []Proc {
	var ps []Proc
	for _, p := range s.procs {
		ps = append(ps, Proc{Role: p.role, PID: p.cmd.Process.Pid})
	}
	return ps
}

// Close stops the client relay, then the server relay.
func (s *tlsRelaySetup) Close() error {
	var errs []error
	for i := len(s.procs) - 1; i >= 0; i-- {
		if err := s.procs[i].stop(procStopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	s.procs = nil
	return errors.Join(errs...)
}

// writeTLSRelayCerts makes an ECDSA P-256 CA and a server certificate for ip
// signed by it, and writes them to dir as PEM files.
func writeTLSRelayCerts(dir string, ip netip.Addr) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	serial := func() *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		return n
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tcpcryptd-bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: ip.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IP(ip.AsSlice())},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return "", "", "", err
	}
	caFile = filepath.Join(dir, "tlsrelay-ca.pem")
	certFile = filepath.Join(dir, "tlsrelay-cert.pem")
	keyFile = filepath.Join(dir, "tlsrelay-key.pem")
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caFile, "CERTIFICATE", caDER, 0o644},
		{certFile, "CERTIFICATE", srvDER, 0o644},
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}

// runTLSRelay is the hidden `tlsrelay` subcommand: one side of the relay pair,
// until SIGTERM or SIGINT. args are the arguments after "tlsrelay" (a leading
// "tlsrelay" is skipped too).
func runTLSRelay(args []string) error {
	if len(args) > 0 && args[0] == "tlsrelay" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("tlsrelay", flag.ContinueOnError)
	mode := fs.String("mode", "", "client (plain in, TLS out) or server (TLS in, plain out)")
	listen := fs.String("listen", "", "address to listen on")
	connect := fs.String("connect", "", "address to connect each connection to")
	certFile := fs.String("cert", "", "server: certificate (PEM)")
	keyFile := fs.String("key", "", "server: private key (PEM)")
	caFile := fs.String("ca", "", "client: CA certificate the server's is verified against (PEM)")
	resume := fs.Bool("resume", false, "server: issue session tickets; client: keep a session cache (TLS 1.3 PSK resumption)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tlsrelay: unexpected arguments %q", fs.Args())
	}
	if *listen == "" || *connect == "" {
		return errors.New("tlsrelay: -listen and -connect are required")
	}
	// X25519 like tcpcrypt's default TEP, so the handshakes compare like for
	// like (Go's default would add ML-KEM-768 to the key exchange).
	conf := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}}
	switch *mode {
	case "server":
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("tlsrelay: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
		conf.SessionTicketsDisabled = !*resume
	case "client":
		pemCA, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("tlsrelay: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemCA) {
			return fmt.Errorf("tlsrelay: no certificate in %s", *caFile)
		}
		host, _, err := net.SplitHostPort(*connect)
		if err != nil {
			return fmt.Errorf("tlsrelay: -connect: %w", err)
		}
		conf.RootCAs = pool
		conf.ServerName = host // an IP address: verified against the IP SANs
		if *resume {
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(0)
		}
	default:
		return fmt.Errorf("tlsrelay: -mode must be client or server, not %q", *mode)
	}
	raiseNoFileLimit()
	// No TCP keepalives: idle connections should cost no wake-ups.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		return fmt.Errorf("tlsrelay: %w", err)
	}
	d := &net.Dialer{KeepAlive: -1}
	r := &tlsRelay{mode: *mode, connect: *connect, conf: conf, dial: d.DialContext}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var stopping atomic.Bool
	go func() {
		<-sig
		stopping.Store(true)
		ln.Close()
	}()
	err = r.serve(ln)
	fmt.Fprintf(os.Stderr, "tlsrelay %s: %s\n", *mode, r.stats())
	if stopping.Load() {
		return nil
	}
	return err
}

// raiseNoFileLimit raises RLIMIT_NOFILE as far as the kernel allows (the Go
// runtime only raises the soft limit to the hard one): every relayed
// connection is two descriptors, and the benchmark holds thousands. Raising
// the hard limit needs CAP_SYS_RESOURCE; without it, a warning says what the
// limit stays at.
func raiseNoFileLimit() {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < want {
			want = n
		}
	}
	if lim.Cur >= want {
		return
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: max(want, lim.Max)}); err != nil {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		fmt.Fprintf(os.Stderr, "tlsrelay: open files limited to %d (raising to %d: %v)\n", lim.Cur, want, err)
	}
}

// tlsRelay is one side of the relay pair.
type tlsRelay struct {
	mode    string // "client": plain in, TLS out; "server": TLS in, plain out
	connect string
	conf    *tls.Config
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)

	conns, resumed, failed atomic.Int64
}

func (r *tlsRelay) stats() string {
	return fmt.Sprintf("%d connections, %d resumed, %d failed", r.conns.Load(), r.resumed.Load(), r.failed.Load())
}

// serve accepts until ln is closed.
func (r *tlsRelay) serve(ln net.Listener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			fmt.Fprintf(os.Stderr, "tlsrelay %s: accept: %v; retrying in %v\n", r.mode, err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		r.conns.Add(1)
		go r.handle(c)
	}
}

// handshakeTimeout bounds the dial and the TLS handshake of one connection.
const handshakeTimeout = 10 * time.Second

// handle sets up the other leg of connection c and starts relaying between
// them. It returns once the relay runs: the relay's two goroutines start with
// small stacks, while this one's grew during the handshake.
func (r *tlsRelay) handle(c net.Conn) {
	if a, b, err := r.connect2(c); err == nil {
		relayPair(a, b)
	}
}

// connect2 dials the other leg of c and makes the TLS handshake on the
// encrypted one. On failure, it is counted and c is closed (no close_notify:
// the peer sees the connection fail).
func (r *tlsRelay) connect2(c net.Conn) (a, b relayEnd, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	var up net.Conn
	defer func() {
		if err != nil {
			r.failed.Add(1)
			c.Close()
			if up != nil {
				up.Close()
			}
		}
	}()
	switch r.mode {
	case "server":
		tc := tls.Server(c, r.conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return a, b, err
		}
		if tc.ConnectionState().DidResume {
			r.resumed.Add(1)
		}
		if up, err = r.dial(ctx, "tcp", r.connect); err != nil {
			return a, b, err
		}
		return relayEnd{conn: tc, raw: c}, relayEnd{conn: up, raw: up}, nil
	case "client":
		if up, err = r.dial(ctx, "tcp", r.connect); err != nil {
			return a, b, err
		}
		tc := tls.Client(up, r.conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return a, b, err
		}
		if tc.ConnectionState().DidResume {
			r.resumed.Add(1)
		}
		return relayEnd{conn: c, raw: c}, relayEnd{conn: tc, raw: up}, nil
	}
	return a, b, fmt.Errorf("mode %q", r.mode)
}

// relayEnd is one connection of a relayed pair: conn carries the data (a
// *tls.Conn or the TCP connection itself), raw is the TCP connection under it.
type relayEnd struct {
	conn net.Conn
	raw  net.Conn
}

// closeWrite passes a half-close on: close_notify (TLS) and FIN.
func (e relayEnd) closeWrite() {
	if tc, ok := e.conn.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	if cw, ok := e.raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// relayPair copies both ways between a and b, each direction on a goroutine
// of its own; it does not wait for them. EOF in one direction is passed on as a
// half-close; an error ends both directions. Both connections are closed once
// both directions are done.
func relayPair(a, b relayEnd) {
	var left atomic.Int32
	left.Store(2)
	done := func() {
		if left.Add(-1) == 0 {
			a.conn.Close()
			b.conn.Close()
		}
	}
	half := func(dst, src relayEnd) {
		defer done()
		if err := relayCopy(dst.conn, src.conn); err != nil {
			// Abort: closing the TCP connections (without close_notify)
			// unblocks the other direction.
			a.raw.Close()
			b.raw.Close()
			return
		}
		dst.closeWrite()
	}
	go half(b, a)
	go half(a, b)
}

const (
	relaySmallBuf = 256      // the buffer a direction starts with
	relayBigBuf   = 32 << 10 // the pooled buffer once it carries bulk data
)

var relayBufPool = sync.Pool{New: func() any { b := make([]byte, relayBigBuf); return &b }}

// relayCopy copies src to dst until src's EOF (nil) or an error. It starts
// with a small buffer, so the thousands of idle or request/response
// connections of a benchmark cost little, and takes a pooled 32 KiB buffer
// the first time a read fills the small one.
func relayCopy(dst io.Writer, src io.Reader) error {
	buf := make([]byte, relaySmallBuf)
	var big *[]byte
	defer func() {
		if big != nil {
			relayBufPool.Put(big)
		}
	}()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
			if n == len(buf) && big == nil {
				big = relayBufPool.Get().(*[]byte)
				buf = *big
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
	}
}
