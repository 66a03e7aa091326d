package link

// Namespace tests: a real TUN device in a namespace of the test's own, a gVisor stack
// on our endpoint, and the kernel's TCP as the peer.
//
//   test namespace (fresh, removed in t.Cleanup)
//   +----------------------------------------------------------------+
//   |  kernel TCP client                 gVisor stack (in process)   |
//   |  10.99.0.1/24, fd99::1/64          10.99.0.2, fd99::2          |
//   |        \                           listener :5201              |
//   |         tcpc0 (TUN, vnet hdr) <==fd==> link.Endpoint / NIC 1   |
//   +----------------------------------------------------------------+

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpcryptd/tcpcryptd/tun/internal/nstest"
)

var (
	kernel4 = netip.MustParsePrefix("10.99.0.1/24")
	kernel6 = netip.MustParsePrefix("fd99::1/64")
	gvisor4 = netip.MustParseAddr("10.99.0.2")
	gvisor6 = netip.MustParseAddr("fd99::2")
)

const (
	tunName     = "tcpc0"
	servicePort = 5201
)

// linkKind selects the endpoint under test.
type linkKind int

const (
	kindOffload linkKind = iota // this package: vnet header, host GSO, TSO in, GRO
	kindPlain                   // baseline: TUN without vnet header, gVisor fdbased, one packet per syscall
)

func (k linkKind) String() string { return [...]string{"offload", "plain"}[k] }

// tunEnv is a namespace with a TUN, a gVisor stack on it, and a transfer server.
type tunEnv struct {
	ns  *nstest.NS
	s   *stack.Stack
	ep  *Endpoint // nil for kindPlain
	srv *server
}

func newTUNEnv(tb testing.TB, kind linkKind) *tunEnv {
	tb.Helper()
	ns := nstest.New(tb)
	env := &tunEnv{ns: ns}

	var ep stack.LinkEndpoint
	err := ns.Do(func() error {
		switch kind {
		case kindOffload:
			e, err := Open(tunName, Options{MTU: 1500, Logger: nil})
			if err != nil {
				return err
			}
			env.ep, ep = e, e
		case kindPlain:
			fd, err := openPlainTUN(tunName)
			if err != nil {
				return err
			}
			tb.Cleanup(func() { unix.Close(fd) })
			if ep, err = fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: 1500}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("create TUN in test namespace: %v", err)
	}

	nl := ns.Netlink(tb)
	l, err := nl.LinkByName(tunName)
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range []netip.Prefix{kernel4, kernel6} {
		a := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(l, a); err != nil {
			tb.Fatalf("add %v: %v", p, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		tb.Fatal(err)
	}

	env.s = newGVisorStack(tb, ep)
	env.srv = startServer(tb, env.s)
	return env
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func openPlainTUN(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return fd, nil
}

func newGVisorStack(tb testing.TB, ep stack.LinkEndpoint) *stack.Stack {
	tb.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	tb.Cleanup(s.Destroy) // removes the NIC, which closes the endpoint
	opts := []tcpip.SettableTransportProtocolOption{
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20},
	}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	opts = append(opts, &mod)
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			tb.Fatalf("TCP option %T: %v", o, err)
		}
	}
	if err := s.CreateNIC(1, ep); err != nil {
		tb.Fatalf("CreateNIC: %v", err)
	}
	// Runs before Destroy (cleanups run last-registered first): the reader
	// must stop outside gVisor's stack lock (see Endpoint.Attach).
	tb.Cleanup(func() { ep.Attach(nil) })
	for _, a := range []netip.Addr{gvisor4, gvisor6} {
		proto, bits := ipv4.ProtocolNumber, 24
		if a.Is6() {
			proto, bits = ipv6.ProtocolNumber, 64
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: bits}}
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("add %v: %v", a, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}, {Destination: header.IPv6EmptySubnet, NIC: 1}})
	return s
}

// The transfer protocol: the client sends op (1 byte) and n (8 bytes, big endian).
const (
	opUpHash   = 'U' // client sends n bytes; server answers their SHA-256
	opUpCount  = 'u' // client sends n bytes; server discards them, answers the count
	opDownSeed = 'D' // server sends n bytes of the ChaCha8 stream of seed 8 bytes after n
	opDownFast = 'd' // server sends n bytes of a fixed buffer (benchmarks)
)

// server accepts on both gVisor addresses; one goroutine per listener and per
// connection, all ended and waited for in Cleanup.
type server struct {
	wg        sync.WaitGroup
	listeners []*gonet.TCPListener
}

func startServer(tb testing.TB, s *stack.Stack) *server {
	tb.Helper()
	srv := &server{}
	for _, a := range []netip.Addr{gvisor4, gvisor6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		l, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: servicePort}, proto)
		if err != nil {
			tb.Fatalf("listen on %v: %v", a, err)
		}
		srv.listeners = append(srv.listeners, l)
		srv.wg.Add(1)
		go srv.accept(tb, l)
	}
	tb.Cleanup(func() {
		for _, l := range srv.listeners {
			l.Close()
		}
		srv.wg.Wait()
	})
	return srv
}

func (srv *server) accept(tb testing.TB, l *gonet.TCPListener) {
	defer srv.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			defer c.Close()
			if err := serveConn(c); err != nil {
				tb.Errorf("server: %v", err)
			}
		}()
	}
}

var fastBlock = func() []byte {
	b := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}()

func serveConn(c net.Conn) error {
	var req [9]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	n := int64(binary.BigEndian.Uint64(req[1:]))
	switch req[0] {
	case opUpHash:
		h := sha256.New()
		if _, err := io.CopyN(h, c, n); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		_, err := c.Write(h.Sum(nil))
		return err
	case opUpCount:
		got, err := io.Copy(io.Discard, io.LimitReader(c, n))
		var resp [8]byte
		binary.BigEndian.PutUint64(resp[:], uint64(got))
		if _, werr := c.Write(resp[:]); err == nil {
			err = werr
		}
		return err
	case opDownSeed:
		var seed [32]byte
		if _, err := io.ReadFull(c, seed[:8]); err != nil {
			return err
		}
		_, err := io.CopyN(c, rand.NewChaCha8(seed), n)
		return err
	case opDownFast:
		for n > 0 {
			m, err := c.Write(fastBlock[:min(int64(len(fastBlock)), n)])
			if err != nil {
				return err
			}
			n -= int64(m)
		}
		return nil
	}
	return fmt.Errorf("unknown op %q", req[0])
}

// dial connects from the kernel side of the namespace.
func (env *tunEnv) dial(tb testing.TB, dst netip.Addr) *net.TCPConn {
	tb.Helper()
	var c net.Conn
	err := env.ns.Do(func() (err error) {
		c, err = net.Dial("tcp", netip.AddrPortFrom(dst, servicePort).String())
		return err
	})
	if err != nil {
		tb.Fatalf("dial %v: %v", dst, err)
	}
	return c.(*net.TCPConn)
}

func request(op byte, n int64, extra ...byte) []byte {
	b := make([]byte, 9, 9+len(extra))
	b[0] = op
	binary.BigEndian.PutUint64(b[1:], uint64(n))
	return append(b, extra...)
}

// upload sends n bytes of a seeded stream and checks the server's SHA-256 of them.
func upload(tb testing.TB, c *net.TCPConn, n int64, seed byte) {
	tb.Helper()
	defer c.Close()
	if _, err := c.Write(request(opUpHash, n)); err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(c, h), rand.NewChaCha8([32]byte{seed}), n); err != nil {
		tb.Fatalf("upload: %v", err)
	}
	var got [sha256.Size]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		tb.Fatalf("read digest: %v", err)
	}
	if want := h.Sum(nil); string(got[:]) != string(want) {
		tb.Fatalf("server's SHA-256 %x, sent %x", got, want)
	}
}

// download receives n bytes of a seeded stream and checks them by SHA-256.
func download(tb testing.TB, c *net.TCPConn, n int64, seed byte) {
	tb.Helper()
	defer c.Close()
	if _, err := c.Write(request(opDownSeed, n, seed, 0, 0, 0, 0, 0, 0, 0)); err != nil {
		tb.Fatal(err)
	}
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil || m != n {
		tb.Fatalf("download: %d of %d bytes, %v", m, n, err)
	}
	want := sha256.New()
	io.CopyN(want, rand.NewChaCha8([32]byte{seed}), n)
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		tb.Fatal("downloaded bytes differ from the server's stream")
	}
}

// TestTransferOverTUN moves 64 MiB each way between the kernel's TCP and a gVisor
// listener over our endpoint, IPv4 and IPv6, and checks every byte by SHA-256. It
// also checks that the offloads were really used and nothing was dropped.
func TestTransferOverTUN(t *testing.T) {
	nstest.CheckLeaks(t, "tun/link.", "wireguard/tun.", "tcpip/transport/tcp.")
	env := newTUNEnv(t, kindOffload)
	const size = 64 << 20
	for i, dst := range []netip.Addr{gvisor4, gvisor6} {
		t.Run(fmt.Sprintf("%v/up", dst), func(t *testing.T) { upload(t, env.dial(t, dst), size, byte(i)) })
		t.Run(fmt.Sprintf("%v/down", dst), func(t *testing.T) { download(t, env.dial(t, dst), size, byte(10+i)) })
	}
	t.Run("both ways at once", func(t *testing.T) {
		var wg sync.WaitGroup
		for i, dst := range []netip.Addr{gvisor4, gvisor6} {
			up, down := env.dial(t, dst), env.dial(t, dst)
			wg.Go(func() { upload(t, up, size/2, byte(20+i)) })
			wg.Go(func() { download(t, down, size/2, byte(30+i)) })
		}
		wg.Wait()
	})

	s := env.ep.Stats()
	t.Logf("endpoint stats: %+v", s)
	if s.RXGSOPackets == 0 {
		t.Error("no TSO super-packet was received: the kernel did not use our offloads")
	}
	if s.TXGSOPackets == 0 {
		t.Error("no GSO super-packet was sent: gVisor did not use host GSO")
	}
	if s.RXDrops() != 0 || s.TXDrops() != 0 || s.TXErrors != 0 || s.RXReadErrors != 0 {
		t.Error("drops or errors on a clean path")
	}
	if nic := env.s.Stats(); nic.TCP.ChecksumErrors.Value() != 0 || nic.IP.MalformedPacketsReceived.Value() != 0 {
		t.Errorf("gVisor saw checksum errors %d, malformed packets %d",
			nic.TCP.ChecksumErrors.Value(), nic.IP.MalformedPacketsReceived.Value())
	}
}

// TestOpenErrors: bad options fail before any device is made.
func TestOpenErrors(t *testing.T) {
	if _, err := Open("x", Options{MTU: 10}); err == nil {
		t.Error("MTU 10 accepted")
	}
	ns := nstest.New(t)
	err := ns.Do(func() error {
		_, err := Open("this-name-is-far-too-long-for-linux", Options{MTU: 1500})
		return err
	})
	if err == nil {
		t.Error("over-long device name accepted")
	}
}

// BenchmarkTransfer measures one TCP stream through the TUN in each direction, for
// our endpoint and for the one-packet-per-syscall baseline (gVisor fdbased on a TUN
// without vnet header), in the same run. MB/s is per stream; both ends share the CPU.
//
//	go test ./tun/link -run '^$' -bench Transfer -benchtime 8x
func BenchmarkTransfer(b *testing.B) {
	const size = 64 << 20
	for _, kind := range []linkKind{kindOffload, kindPlain} {
		for _, dst := range []netip.Addr{gvisor4, gvisor6} {
			for _, dir := range []string{"up", "down"} {
				b.Run(fmt.Sprintf("%v/%v/%s", kind, ipVersion(dst), dir), func(b *testing.B) {
					env := newTUNEnv(b, kind)
					b.SetBytes(size)
					b.ResetTimer()
					for b.Loop() {
						c := env.dial(b, dst)
						if err := benchTransfer(c, dir, size); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func ipVersion(a netip.Addr) string {
	if a.Is4() {
		return "v4"
	}
	return "v6"
}

func benchTransfer(c *net.TCPConn, dir string, n int64) error {
	defer c.Close()
	if dir == "down" {
		if _, err := c.Write(request(opDownFast, n)); err != nil {
			return err
		}
		m, err := io.Copy(io.Discard, c)
		if err == nil && m != n {
			err = fmt.Errorf("received %d of %d bytes", m, n)
		}
		return err
	}
	if _, err := c.Write(request(opUpCount, n)); err != nil {
		return err
	}
	for left := n; left > 0; {
		m, err := c.Write(fastBlock[:min(int64(len(fastBlock)), left)])
		if err != nil {
			return err
		}
		left -= int64(m)
	}
	var resp [8]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		return err
	}
	if got := int64(binary.BigEndian.Uint64(resp[:])); got != n {
		return fmt.Errorf("server received %d of %d bytes", got, n)
	}
	return nil
}
