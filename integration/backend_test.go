package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
)

// Plaintext markers: they travel inside HTTP requests and responses, and a
// capture of an encrypted connection must never contain them.
const (
	markerReq  = "tcpcit-PLAINTEXT-REQUEST-b7e1d04c"
	markerResp = "tcpcit-PLAINTEXT-RESPONSE-5a93f2e8"
)

// proxyV2Sig is the 12-byte signature that starts every PROXY v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// backendConn is what a backend saw of one accepted connection.
type backendConn struct {
	local, remote netip.AddrPort // the accepted socket's own addresses
	raw           []byte         // the PROXY header bytes as received
	hdr           *proxyproto.Header
	err           error
}

// webBackend is an ordinary HTTP server (kernel sockets) in a namespace,
// optionally reading a PROXY v2 header at the start of each connection.
type webBackend struct {
	srv *http.Server
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns []backendConn
}

// startWebBackend serves on addrs in ns until t's cleanup. Responses carry
// markerResp and echo the request path.
func startWebBackend(t *testing.T, ns *topo.NS, proxy bool, addrs ...string) *webBackend {
	t.Helper()
	b := &webBackend{}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s path=%s\n", markerResp, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	for _, a := range addrs {
		l, err := ns.Listen("tcp", a)
		if err != nil {
			t.Fatalf("backend listen %s: %v", a, err)
		}
		var hl net.Listener = l
		if proxy {
			hl = &proxyListener{Listener: l, b: b}
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.srv.Serve(hl)
		}()
	}
	t.Cleanup(func() {
		b.srv.Close()
		b.wg.Wait()
	})
	return b
}

// last returns the most recent connection the backend accepted.
func (b *webBackend) last(t *testing.T) backendConn {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.conns) == 0 {
		t.Fatal("backend accepted no connection")
	}
	return b.conns[len(b.conns)-1]
}

// proxyListener reads the PROXY v2 header of each accepted connection before
// handing it to the HTTP server.
type proxyListener struct {
	net.Listener
	b *webBackend
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		bc := backendConn{local: addrPort(c.LocalAddr()), remote: addrPort(c.RemoteAddr())}
		var raw bytes.Buffer
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		bc.hdr, bc.err = proxyproto.ReadHeader(io.TeeReader(c, &raw))
		c.SetReadDeadline(time.Time{})
		bc.raw = raw.Bytes()
		l.b.mu.Lock()
		l.b.conns = append(l.b.conns, bc)
		l.b.mu.Unlock()
		if bc.err != nil {
			c.Close()
			continue
		}
		return c, nil
	}
}

// webGet fetches url from ns over a fresh connection and returns the body and
// that connection's socket addresses (the application's view). The
// connection stays open (keep-alive) until t's cleanup, so daemons keep it in
// their tables.
func webGet(t *testing.T, ns *topo.NS, url string) (body string, local, remote netip.AddrPort) {
	t.Helper()
	var conn net.Conn
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := ns.DialContext(ctx, network, addr)
			conn = c
			return c, err
		},
		MaxIdleConnsPerHost: 1,
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ns.Role, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d, body %q, err %v", url, resp.StatusCode, b, err)
	}
	return string(b), addrPort(conn.LocalAddr()), addrPort(conn.RemoteAddr())
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func urlFor(a netip.Addr, port uint16, path string) string {
	return "http://" + netip.AddrPortFrom(a, port).String() + path
}

// bulkBackends serves the sink (read to EOF, answer the SHA-256) and source
// (send bulkSize bytes) backends on the server's loopback, IPv4 and IPv6.
type bulkBackends struct {
	size    int64
	sources chan [32]byte   // SHA-256 of each completed source transfer
	sinks   chan sinkResult // what each sink connection received
	wg      sync.WaitGroup
	ls      []net.Listener
}

func startBulkBackends(t *testing.T, ns *topo.NS, size int64) *bulkBackends {
	t.Helper()
	b := &bulkBackends{size: size, sources: make(chan [32]byte, 8), sinks: make(chan sinkResult, 8)}
	for _, x := range []struct {
		addr string
		fn   func(net.Conn)
	}{
		{fmt.Sprintf("127.0.0.1:%d", portSinkBack), b.sink},
		{fmt.Sprintf("[::1]:%d", portSinkBack), b.sink},
		{fmt.Sprintf("127.0.0.1:%d", portSrcBack), b.source},
		{fmt.Sprintf("[::1]:%d", portSrcBack), b.source},
	} {
		l, err := ns.Listen("tcp", x.addr)
		if err != nil {
			t.Fatal(err)
		}
		b.ls = append(b.ls, l)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				b.wg.Add(1)
				go func() {
					defer b.wg.Done()
					defer c.Close()
					c.SetDeadline(time.Now().Add(2 * time.Minute))
					x.fn(c)
				}()
			}
		}()
	}
	t.Cleanup(func() {
		for _, l := range b.ls {
			l.Close()
		}
		b.wg.Wait()
	})
	return b
}

// sinkResult is what a sink connection received before it ended.
type sinkResult struct {
	n   int64
	sum [32]byte
	err error
}

func (b *bulkBackends) sink(c net.Conn) {
	n, sum, err := topo.BulkReceive(c)
	if err == nil {
		c.Write(sum[:])
	}
	select {
	case b.sinks <- sinkResult{n, sum, err}:
	default:
	}
}

func (b *bulkBackends) source(c net.Conn) {
	sum, err := topo.BulkSend(c, b.size, 77)
	if err == nil {
		b.sources <- sum
	}
}

// upload sends n bytes from the laptop to the sink service at dst and checks
// the SHA-256 the backend computed.
func upload(t *testing.T, ns *topo.NS, dst netip.AddrPort, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	sum, err := topo.BulkSend(c, n, uint64(n))
	if err != nil {
		t.Fatalf("upload to %s: %v", dst, err)
	}
	c.(*net.TCPConn).CloseWrite()
	var got [32]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		t.Fatalf("upload to %s: reading the backend's SHA-256: %v", dst, err)
	}
	if got != sum {
		t.Fatalf("upload to %s: backend SHA-256 %x, sent %x", dst, got, sum)
	}
}

// download reads the source service at dst to EOF and checks size and
// SHA-256 against what the backend sent.
func download(t *testing.T, ns *topo.NS, b *bulkBackends, dst netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	n, sum, err := topo.BulkReceive(c)
	if err != nil {
		t.Fatalf("download from %s: %v", dst, err)
	}
	var want [32]byte
	select {
	case want = <-b.sources:
	case <-time.After(10 * time.Second):
		t.Fatal("source backend reported no completed transfer")
	}
	if n != b.size || sum != want {
		t.Fatalf("download from %s: %d bytes sha %x, backend sent %d sha %x", dst, n, sum, b.size, want)
	}
}

// routerCapture records the router's laptop-side link (both directions) until
// it is analysed or t ends.
func routerCapture(t *testing.T, tp *topo.Topology) *impair.Capture {
	t.Helper()
	var c *impair.Capture
	if err := tp.Router.Do(func() error {
		var err error
		c, err = impair.NewCapture(topo.RouterLapIface, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// handshake returns the captured SYN and SYN-ACK of the first connection from
// the laptop to dst.
func handshake(t *testing.T, segs []impair.Packet, dst netip.AddrPort) (syn, synack *impair.Packet) {
	t.Helper()
	var flow impair.FlowKey
	for i := range segs {
		p := &segs[i]
		if syn == nil && p.SYN() && p.Flow().Dst == dst {
			syn, flow = p, p.Flow()
		}
		if syn != nil && p.SYNACK() && p.Flow() == flow.Reverse() {
			synack = p
			return syn, synack
		}
	}
	t.Fatalf("capture has no complete handshake towards %v", dst)
	return nil, nil
}

// firstACK returns the first non-SYN segment of syn's flow (the third
// segment of the handshake).
func firstACK(segs []impair.Packet, syn *impair.Packet) *impair.Packet {
	for i := range segs {
		p := &segs[i]
		if p.Flow() == syn.Flow() && p.Flags&impair.FlagSYN == 0 && p.Flags&impair.FlagACK != 0 {
			return p
		}
	}
	return nil
}

// streamsTo returns the reassembled payload of both directions of every flow
// to or from dst.
func streamsTo(segs []impair.Packet, dst netip.AddrPort) map[impair.FlowKey][]byte {
	out := map[impair.FlowKey][]byte{}
	for k, b := range impair.Streams(segs) {
		if k.Dst == dst || k.Src == dst {
			out[k] = b
		}
	}
	return out
}

// errIsRefusal reports a connection refused or reset.
func errIsRefusal(err error) bool {
	return errors.Is(err, errConnRefused) || errors.Is(err, errConnReset)
}
