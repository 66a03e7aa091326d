package stack

import (
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// Spoofed sources of the flood tests: b's answers to them vanish.
var (
	spoofed4 = netip.MustParsePrefix("198.18.0.0/15")
	spoofed6 = netip.MustParsePrefix("2001:db8:bad::/48")
)

// enoSYNOpts are the options of a forged SYN offering ENO: MSS, SACK-permitted,
// timestamps, window scale, then NOP and an ENO option with one TEP
// suboption (X25519, 0x23).
var enoSYNOpts = append(append([]byte{}, synOpts...), 1, 69, 3, 0x23)

// forgeTCP builds an IPv4 or IPv6 TCP packet from src to dst with valid
// checksums.
func forgeTCP(src, dst netip.AddrPort, flags header.TCPFlags, seq, ack uint32, opts []byte) []byte {
	if len(opts)%4 != 0 {
		panic("options must be padded")
	}
	v6 := src.Addr().Is6()
	tcpLen := header.TCPMinimumSize + len(opts)
	ipHdr := header.IPv4MinimumSize
	if v6 {
		ipHdr = header.IPv6MinimumSize
	}
	b := make([]byte, ipHdr+tcpLen)
	s, d := addrFrom(src.Addr()), addrFrom(dst.Addr())
	if v6 {
		header.IPv6(b).Encode(&header.IPv6Fields{
			PayloadLength: uint16(tcpLen), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: s, DstAddr: d,
		})
	} else {
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: s, DstAddr: d,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	th := header.TCP(b[ipHdr:])
	th.Encode(&header.TCPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: seq, AckNum: ack,
		DataOffset: uint8(tcpLen), Flags: flags, WindowSize: 65535,
	})
	copy(th[header.TCPMinimumSize:], opts)
	seg := segment{v6: v6, ipHdrLen: ipHdr, tcpHdrLen: tcpLen, ipLen: len(b), src: s, dst: d}
	th.SetChecksum(^tcpChecksum(b[ipHdr:], &seg))
	return b
}

// spoofedSource returns the i-th spoofed source: alternately IPv4 and IPv6,
// every one a different address (IPv6: a different /64).
func spoofedSource(i int) netip.AddrPort {
	port := uint16(1024 + i%60000)
	if i%2 == 0 {
		a := spoofed4.Addr().As4()
		binary.BigEndian.PutUint16(a[2:], uint16(i/2))
		return netip.AddrPortFrom(netip.AddrFrom4(a), port)
	}
	a := spoofed6.Addr().As16()
	binary.BigEndian.PutUint16(a[6:], uint16(i/2)) // the /64 varies
	a[15] = 1
	return netip.AddrPortFrom(netip.AddrFrom16(a), port)
}

// isn of the i-th spoofed SYN.
func spoofedISN(i int) uint32 { return 0x1000_0000 + uint32(i)*7919 }

// toSpoofed drops what b sends to the spoofed sources: they never answer.
func toSpoofed(pk *wiretest.Packet) wiretest.Verdict {
	if len(pk.Data) < header.IPv4MinimumSize {
		return wiretest.Verdict{}
	}
	var dst netip.Addr
	if pk.Data[0]>>4 == 6 && len(pk.Data) >= header.IPv6MinimumSize {
		dst = netip.AddrFrom16([16]byte(pk.Data[24:40]))
	} else {
		dst = netip.AddrFrom4([4]byte(pk.Data[16:20]))
	}
	return wiretest.Verdict{Drop: spoofed4.Contains(dst) || spoofed6.Contains(dst)}
}

// echoListener serves echo on l until the test ends; it records whether
// every accepted connection was encrypted.
func echoListener(t *testing.T, l *Listener, plain *atomic.Int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				return
			}
			if !c.Encrypted() {
				plain.Add(1)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.CloseWrite()
			}()
		}
	}()
}

// echoOnce dials dst from s, checks the connection is encrypted and that
// an echo comes back. A connection refused or reset is tried again, a few
// times: under a flood faster than the inbound share divided by the
// round-trip time, a legitimate flow may be evicted before its handshake
// completes, and the connection is then reset (never plain).
func echoOnce(t *testing.T, s *Stack, dst netip.AddrPort) {
	t.Helper()
	var errs []error
	for range 3 {
		c, err := s.Dial(ctxT(t), netip.AddrPort{}, dst, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer c.Close()
		if !c.Encrypted() {
			t.Fatalf("dial %v during the flood: connection is plain: %+v", dst, c.Negotiation())
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "ping" {
			t.Fatalf("echo %q %v", got, err)
		}
		if len(errs) > 0 {
			t.Logf("dial %v: %d attempts refused first: %v", dst, len(errs), errs)
		}
		return
	}
	t.Fatalf("dial %v during the flood: %v", dst, errs)
}

// A flood of spoofed SYNs offering ENO, from many sources that never
// answer, at a listener whose flow table is small: legitimate clients of
// the listener still get encrypted connections (never plain), the stack's
// own dials still get flow entries, an in-window RST from a spoofed source
// frees its entry, and the table returns to baseline afterwards.
func TestSpoofedSYNFlood(t *testing.T) {
	const maxFlows = 256
	p := newPair(t, pairOpts{
		b: func(o *Options) {
			o.MaxFlows = maxFlows
			o.OutboundFlowReserve = 32
			o.HalfOpenPerSource = 4
			o.InboundHalfOpenTimeout = 2 * time.Second
			o.SweepInterval = 50 * time.Millisecond
		},
		hookBA: toSpoofed,
	})
	var plainB, plainA atomic.Int64
	lb, err := p.b.Listen(netip.Addr{}, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	echoListener(t, lb, &plainB)
	la, err := p.a.Listen(netip.Addr{}, 81, nil)
	if err != nil {
		t.Fatal(err)
	}
	echoListener(t, la, &plainA)

	// Fill the table first, then keep flooding while legitimate
	// connections are made.
	var sent atomic.Int64
	flood := func(n int) {
		for range n {
			i := int(sent.Add(1)) - 1
			src := spoofedSource(i)
			dst := netip.AddrPortFrom(addrB4, 80)
			if src.Addr().Is6() {
				dst = netip.AddrPortFrom(addrB6, 80)
			}
			p.hub.Inject(p.pb, forgeTCP(src, dst, header.TCPFlagSyn, spoofedISN(i), 0, enoSYNOpts))
		}
	}
	flood(4 * maxFlows)
	if n := p.b.Flows(); n < maxFlows/2 {
		t.Fatalf("the flood made only %d flows", n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopFlood := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopFlood) // before the pair's cleanup, even on failure
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				flood(2)
			}
		}
	}()
	for i := range 10 {
		dstB := netip.AddrPortFrom(addrB4, 80)
		dstA := netip.AddrPortFrom(addrA4, 81)
		if i%2 == 1 {
			dstB, dstA = netip.AddrPortFrom(addrB6, 80), netip.AddrPortFrom(addrA6, 81)
		}
		echoOnce(t, p.a, dstB) // a legitimate client of b's listener
		echoOnce(t, p.b, dstA) // b's own dial (the forwarder's outer leg)
	}
	stopFlood()
	c := p.b.Counters()
	t.Logf("%d spoofed SYNs; b's counters: %v", sent.Load(), c.Snapshot())
	if plainB.Load() != 0 || plainA.Load() != 0 {
		t.Fatalf("plain connections accepted: b %d, a %d", plainB.Load(), plainA.Load())
	}
	if h := p.b.HalfOpenFlows(); h > maxFlows-32 {
		t.Fatalf("%d half-open inbound flows, inbound share %d", h, maxFlows-32)
	}
	if c.NoFlowAtAccept.Load() != 0 {
		t.Fatalf("%d connections accepted without ENO state", c.NoFlowAtAccept.Load())
	}
	if c.FlowsEvicted.Load() == 0 {
		t.Fatal("no half-open flow evicted")
	}

	// One source (here one IPv6 /64, many addresses) holds at most
	// HalfOpenPerSource flows not yet accepted.
	for i := range 20 {
		a := spoofed6.Addr().As16()
		a[6], a[7], a[15] = 0xff, 0xee, byte(i+1) // a /64 the flood does not use
		src := netip.AddrPortFrom(netip.AddrFrom16(a), uint16(5000+i))
		p.hub.Inject(p.pb, forgeTCP(src, netip.AddrPortFrom(addrB6, 80), header.TCPFlagSyn, uint32(i), 0, enoSYNOpts))
	}
	if got := c.FlowsSourceEvicted.Load(); got != 16 {
		t.Fatalf("source evictions %d, want 16", got)
	}

	// A RST from a spoofed source, exactly in window (what a host that
	// never sent the SYN answers to our SYN-ACK), frees its entry.
	last := int(sent.Load()) - 1
	before := p.b.Flows()
	src := spoofedSource(last)
	dst := netip.AddrPortFrom(addrB4, 80)
	if src.Addr().Is6() {
		dst = netip.AddrPortFrom(addrB6, 80)
	}
	if p.b.flows.lookup(idOf(dst, src)) == nil {
		t.Fatal("the last spoofed SYN has no flow")
	}
	// Out of window first: ignored.
	p.hub.Inject(p.pb, forgeTCP(src, dst, header.TCPFlagRst, spoofedISN(last)+100000, 0, nil))
	if p.b.flows.lookup(idOf(dst, src)) == nil {
		t.Fatal("an out-of-window RST freed the flow")
	}
	p.hub.Inject(p.pb, forgeTCP(src, dst, header.TCPFlagRst, spoofedISN(last)+1, 0, nil))
	if p.b.flows.lookup(idOf(dst, src)) != nil || c.FlowsReset.Load() != 1 {
		t.Fatalf("the in-window RST did not free the flow (reset %d)", c.FlowsReset.Load())
	}
	if p.b.Flows() >= before {
		t.Fatalf("flows %d after the RST, %d before", p.b.Flows(), before)
	}
	// Everything else expires with the half-open connections, and the
	// stack holds no half-open connection whose flow is gone.
	waitFor(t, func() bool { return p.b.Flows() == 0 && p.a.Flows() == 0 }, "flows back to baseline")
	waitFor(t, func() bool {
		for _, ep := range p.b.GVisor().RegisteredEndpoints() {
			if te, ok := ep.(*tcp.Endpoint); ok && te.EndpointState() == tcp.StateSynRecv {
				return false
			}
		}
		return true
	}, "no half-open connection left in b's stack")
}

// idOf is the 4-tuple, as the local stack sees it, of a connection from
// remote to local.
func idOf(local, remote netip.AddrPort) gvstack.TransportEndpointID {
	return gvstack.TransportEndpointID{
		LocalAddress: addrFrom(local.Addr()), LocalPort: local.Port(),
		RemoteAddress: addrFrom(remote.Addr()), RemotePort: remote.Port(),
	}
}

// The forwarder's outer dials keep their reserved flow entries while a
// service of the same daemon is flooded with spoofed SYNs offering ENO,
// and what they relay is encrypted.
func TestSpoofedSYNFloodForwarder(t *testing.T) {
	const maxFlows = 32
	tr := newTrio(t, true, ForwarderOptions{}, nil, func(o *Options) {
		o.MaxFlows = maxFlows
		o.OutboundFlowReserve = 4
		o.InboundHalfOpenTimeout = 2 * time.Second
		o.SweepInterval = 50 * time.Millisecond
	})
	// F's answers to the spoofed sources go towards C's port and vanish.
	for _, pfx := range []netip.Prefix{spoofed4, spoofed6} {
		tr.hub.Route(tr.pf, pfx, tr.pc)
	}
	tr.hub.SetHook(tr.pf, tr.pc, toSpoofed)
	var plainF, plainS atomic.Int64
	svc, err := tr.f.Listen(netip.Addr{}, 443, nil) // a service of F, the flood's target
	if err != nil {
		t.Fatal(err)
	}
	echoListener(t, svc, &plainF)
	srv, err := tr.s.Listen(netip.Addr{}, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	echoListener(t, srv, &plainS)

	for i := range 4 * maxFlows {
		src := spoofedSource(i)
		dst := netip.AddrPortFrom(addrF4, 443)
		if src.Addr().Is6() {
			dst = netip.AddrPortFrom(addrF6, 443)
		}
		tr.hub.Inject(tr.pf, forgeTCP(src, dst, header.TCPFlagSyn, spoofedISN(i), 0, enoSYNOpts))
	}
	if n := tr.f.Flows(); n < maxFlows/2 {
		t.Fatalf("the flood made only %d flows", n)
	}
	for _, dst := range []netip.Addr{addrS4, addrS6, addrS4, addrS6} {
		c, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(dst, 80), nil)
		if err != nil {
			t.Fatalf("forwarded dial to %v during the flood: %v", dst, err)
		}
		c.Write([]byte("through"))
		c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || string(got) != "through" {
			t.Fatalf("forwarded echo %q %v", got, err)
		}
		c.Close()
	}
	if plainS.Load() != 0 {
		t.Fatalf("%d outer legs plain", plainS.Load())
	}
	if got := tr.s.Counters().Enabled.Load(); got < 4 {
		t.Fatalf("S enabled ENO on %d connections, want 4", got)
	}
	waitFor(t, func() bool { return tr.f.Flows() == 0 }, "F's flows back to baseline")
}

// A half-open connection whose flow is gone (evicted or expired) while the
// stack still answers it never sends a SYN-ACK without ENO, which would
// make the client fall back to plain TCP: the SYN-ACK is dropped, and the
// client's retransmitted SYN gets a new flow and an encrypted connection.
func TestOrphanSYNACKDropped(t *testing.T) {
	var p *pair
	var dropped atomic.Bool
	var syns atomic.Int32
	p = newPair(t, pairOpts{hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
		// a's first retransmission is lost too, so that b's
		// retransmitted SYN-ACK comes first.
		s, ok := wiretest.ParseTCP(pk.Data)
		return wiretest.Verdict{Drop: ok && s.SYNOnly() && syns.Add(1) == 2}
	}, hookBA: func(pk *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || !s.SYNACK() || dropped.Swap(true) {
			return wiretest.Verdict{}
		}
		// The first SYN-ACK is lost, and b loses the flow as an
		// eviction would (without aborting the connection).
		id := idOf(s.Src, s.Dst)
		if f := p.b.flows.lookup(id); f != nil {
			p.b.flows.remove(f)
		}
		return wiretest.Verdict{Drop: true}
	}})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
	for _, s := range p.capBA.Segments() {
		if s.SYNACK() && len(s.ENO()) == 0 {
			t.Fatal("b sent a SYN-ACK without ENO")
		}
	}
	if p.b.Counters().OrphanSYNACKs.Load() == 0 {
		t.Fatalf("no orphan SYN-ACK dropped (counters %v)", p.b.Counters().Snapshot())
	}
}
