package stack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// withPayload returns a copy of packet b with data appended as TCP payload,
// lengths and checksums fixed.
func withPayload(t *testing.T, b, data []byte) []byte {
	t.Helper()
	s, err := parseSegment(b, len(b))
	if err != nil {
		t.Fatal(err)
	}
	out := append(append([]byte(nil), b[:s.ipLen]...), data...)
	s.ipLen += len(data)
	s.payloadLen += len(data)
	fixLengths(out, &s)
	return out
}

// ENO-20: a retransmitted SYN or SYN-ACK carries the same ENO option as
// the first; the passive flow recognises a retransmitted SYN by its ISN.
func TestENO20_RetransmissionsCarrySameOption(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(wiretest.Segment) bool
		ab   bool // drop on a->b
	}{
		{"syn", wiretest.Segment.SYNOnly, true},
		{"synack", wiretest.Segment.SYNACK, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dropped atomic.Bool
			hook := func(pk *wiretest.Packet) wiretest.Verdict {
				if s, ok := wiretest.ParseTCP(pk.Data); ok && tc.drop(s) && !dropped.Swap(true) {
					return wiretest.Verdict{Drop: true}
				}
				return wiretest.Verdict{}
			}
			po := pairOpts{hookBA: hook}
			if tc.ab {
				po = pairOpts{hookAB: hook}
			}
			p := newPair(t, po)
			client, server := dialAccept(t, p, false, 80, nil, nil)
			checkEncrypted(t, client, server)
			var opts [][]byte
			segs := p.capBA.Segments()
			if tc.ab {
				segs = p.capAB.Segments()
			}
			for _, s := range segs {
				if tc.drop(s.Segment) {
					opts = append(opts, s.ENO()[0])
				}
			}
			if len(opts) < 2 {
				t.Fatalf("want a retransmission, got %d %s segments", len(opts), tc.name)
			}
			for _, o := range opts[1:] {
				if !bytes.Equal(o, opts[0]) {
					t.Fatalf("retransmission changed ENO: % x vs % x", o, opts[0])
				}
			}
			if got := p.b.Counters().FlowsReplaced.Load(); got != 0 {
				t.Errorf("retransmitted SYN replaced the flow %d times", got)
			}
		})
	}
}

// A non-SYN segment from b that arrives right behind the SYN-ACK (here a
// forged duplicate ACK, as a SYN-RCVD host answers a duplicate SYN) is
// recorded only after a's stack answered the SYN-ACK, as TCP orders them:
// a's third segment still carries ENO and encryption is enabled.
func TestACKRightAfterSYNACK(t *testing.T) {
	p := newPair(t, pairOpts{hookBA: func(pk *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || !s.SYNACK() {
			return wiretest.Verdict{}
		}
		synack := append([]byte(nil), pk.Data...)
		ack := pk.Data // becomes the forged ACK, delivered after synack
		wiretest.StripENO(ack)
		as, _ := wiretest.ParseTCP(ack)
		th := header.TCP(ack[len(ack)-len(as.Payload)-len(as.Options)-header.TCPMinimumSize:])
		th.SetFlags(uint8(header.TCPFlagAck))
		th.SetSequenceNumber(s.Seq + 1)
		wiretest.FixTCPChecksum(ack, as)
		return wiretest.Verdict{Before: [][]byte{synack}}
	}})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
}

// ENO-18: when the third segment is lost, a's next segment (Init1) still
// carries 45 02 and b enables encryption on it.
func TestENO18_ThirdSegmentLost(t *testing.T) {
	var dropped atomic.Bool
	p := newPair(t, pairOpts{hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
		if s, ok := wiretest.ParseTCP(pk.Data); ok && !s.SYN() && len(s.Payload) == 0 && !dropped.Swap(true) {
			return wiretest.Verdict{Drop: true}
		}
		return wiretest.Verdict{}
	}})
	client, server := dialAccept(t, p, true, 80, nil, nil)
	checkEncrypted(t, client, server)
	exchange(t, client, server, []byte("after a lost ACK"), []byte("ok"))
}

// ENO-25, ENO-26: data in a SYN carrying ENO is discarded before the stack
// sees it, and only the ISN is acknowledged.
func TestENO25_SYNDataDiscarded(t *testing.T) {
	for _, mode := range []eno.Mode{eno.ModeOpportunistic, eno.ModeOff} {
		t.Run(mode.String(), func(t *testing.T) {
			var tt = t
			p := newPair(t, pairOpts{hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
				if s, ok := wiretest.ParseTCP(pk.Data); ok && s.SYNOnly() {
					pk.Data = withPayload(tt, pk.Data, []byte("SYN-DATA-MUST-GO"))
				}
				return wiretest.Verdict{}
			}})
			client, server := dialAccept(t, p, false, 80, nil, &Policy{Default: mode})
			exchange(t, client, server, []byte("real data"), []byte("answer"))
			var isn uint32
			for _, s := range p.capAB.Segments() {
				if s.SYNOnly() {
					isn = s.Seq
				}
			}
			for _, s := range p.capBA.Segments() {
				if s.SYNACK() && s.Ack != isn+1 {
					t.Fatalf("SYN-ACK acknowledges %d, want ISN+1 = %d", s.Ack, isn+1)
				}
			}
			if got := p.b.Counters().SYNDataDropped.Load(); got == 0 {
				t.Fatal("SYN data not counted as dropped")
			}
		})
	}
}

// A SYN with ENO and data to a port nobody listens on has its data dropped
// too (ENO-25 holds with ENO disabled); the stack answers RST.
func TestENO25_SYNDataNoListener(t *testing.T) {
	p := newPair(t, pairOpts{hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
		if s, ok := wiretest.ParseTCP(pk.Data); ok && s.SYNOnly() {
			pk.Data = withPayload(t, pk.Data, []byte("data"))
		}
		return wiretest.Verdict{}
	}})
	_, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 9), nil)
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if p.b.Counters().SYNDataDropped.Load() != 1 {
		t.Fatal("SYN data not dropped")
	}
}

// Segments that do not acknowledge our ISN (stale or forged) never decide
// the negotiation: a forged first ACK without ENO is ignored, the real one
// enables encryption.
func TestForgedACKIgnored(t *testing.T) {
	var forged atomic.Bool
	p := newPair(t, pairOpts{hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || s.SYN() || forged.Swap(true) {
			return wiretest.Verdict{}
		}
		f := append([]byte(nil), pk.Data...)
		fs, _ := wiretest.ParseTCP(f)
		header.TCP(f[len(f)-len(fs.Payload)-len(fs.Options)-header.TCPMinimumSize:]).SetAckNumber(s.Ack + 1000)
		wiretest.StripENO(f)
		fs, _ = wiretest.ParseTCP(f)
		wiretest.FixTCPChecksum(f, fs)
		return wiretest.Verdict{Before: [][]byte{f}}
	}})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
	if p.b.Counters().OutOfWindow.Load() == 0 {
		t.Fatal("forged ACK not counted")
	}
}

// Corrupted segments (bad TCP checksum) are not shown to the negotiator.
func TestBadChecksumIgnored(t *testing.T) {
	var corrupted atomic.Bool
	p := newPair(t, pairOpts{hookBA: func(pk *wiretest.Packet) wiretest.Verdict {
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || !s.SYNACK() || corrupted.Swap(true) {
			return wiretest.Verdict{}
		}
		bad := append([]byte(nil), pk.Data...)
		bs, _ := wiretest.ParseTCP(bad)
		bs.ENO()[0][2] ^= 0x01 // flip b: would make both sides A
		return wiretest.Verdict{Before: [][]byte{bad}, Drop: true}
	}})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
	if p.a.Counters().BadChecksum.Load() == 0 {
		t.Fatal("corrupted SYN-ACK not counted")
	}
}

// Flows are removed when connections close, and half-open flows expire.
func TestFlowLifecycle(t *testing.T) {
	now := time.Unix(1e9, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	var blackhole atomic.Bool
	p := newPair(t, pairOpts{
		b: func(o *Options) { o.Now = clock },
		hookBA: func(pk *wiretest.Packet) wiretest.Verdict {
			return wiretest.Verdict{Drop: blackhole.Load()}
		},
	})
	client, server := dialAccept(t, p, false, 80, nil, nil)
	if p.a.Flows() != 1 || p.b.Flows() != 1 {
		t.Fatalf("flows a=%d b=%d", p.a.Flows(), p.b.Flows())
	}
	client.Close()
	server.Close()
	if p.a.Flows() != 0 || p.b.Flows() != 0 {
		t.Fatalf("after close: flows a=%d b=%d", p.a.Flows(), p.b.Flows())
	}
	// Half-open: b never gets its SYN-ACK through.
	blackhole.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 80), nil); err == nil {
		t.Fatal("dial through a black hole succeeded")
	}
	if p.a.Flows() != 0 {
		t.Fatal("failed dial left its flow")
	}
	for p.b.Flows() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.b.flows.sweep(); n != 0 {
		t.Fatalf("swept %d fresh flows", n)
	}
	advance(DefaultInboundHalfOpenTimeout + time.Second)
	if n := p.b.flows.sweep(); n != 1 || p.b.Flows() != 0 || p.b.Counters().FlowsExpired.Load() != 1 {
		t.Fatalf("sweep: %d, flows %d", n, p.b.Flows())
	}
}

// The flow table is bounded: beyond MaxFlows, a SYN for which no ENO state
// can be kept is dropped and counted, never answered plain; its
// retransmission gets through once there is room, encrypted.
func TestFlowTableFull(t *testing.T) {
	p := newPair(t, pairOpts{b: func(o *Options) { o.MaxFlows = 1 }})
	c1, s1 := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, c1, s1)
	l, err := p.b.Listen(addrB4, 81, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   *Conn
		err error
	}
	dialed := make(chan res, 1)
	go func() {
		c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 81), nil)
		dialed <- res{c, err}
	}()
	waitFor(t, func() bool { return p.b.Counters().SYNsDropped.Load() > 0 }, "a SYN dropped")
	select {
	case r := <-dialed:
		t.Fatalf("dial went through a full table: %+v %v", r.c, r.err)
	default:
	}
	c1.Close()
	s1.Close()
	r := <-dialed
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	s2, err := l.AcceptConn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	checkEncrypted(t, r.c, s2)
	if got := p.b.Counters().FlowTableFull.Load(); got == 0 || p.b.Counters().NoFlowAtAccept.Load() != 0 {
		t.Fatalf("counters %v", p.b.Counters().Snapshot())
	}
	exchange(t, r.c, s2, []byte("still works"), []byte("yes"))
}

// A connection the stack opens without Dial has no registered flow: its SYN
// leaves without ENO and is counted.
func TestUnregisteredSYN(t *testing.T) {
	p := newPair(t, pairOpts{})
	l, err := p.b.Listen(netip.Addr{}, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := gonet.DialContextTCP(ctxT(t), p.a.GVisor(), tcpip.FullAddress{Addr: addrFrom(addrB4), Port: 80}, header.IPv4ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.AcceptConn(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	checkPlain(t, sc, eno.ReasonNoENO)
	if p.a.Counters().Unregistered.Load() != 1 {
		t.Fatal("unregistered SYN not counted")
	}
}

// A wildcard listener serves IPv4 and IPv6 and finds each flow.
func TestWildcardListener(t *testing.T) {
	p := newPair(t, pairOpts{})
	l, err := p.b.Listen(netip.Addr{}, 443, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, dst := range []netip.Addr{addrB4, addrB6} {
		ctx := ctxT(t)
		go func() {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(c, c)
		}()
		c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(dst, 443), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Encrypted() {
			t.Fatalf("%v: not encrypted: %+v", dst, c.Negotiation())
		}
		c.Write([]byte("echo"))
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "echo" {
			t.Fatalf("%v: echo %q %v", dst, got, err)
		}
		c.Close()
	}
}

// Many concurrent connections: all encrypted, all data intact, and no flow,
// goroutine or listener state left afterwards.
func TestConcurrentConnections(t *testing.T) {
	n := 1000
	if testing.Short() || raceEnabled {
		n = 100 // the race detector slows handshakes past their timeout
	}
	// The clients' Init1 may come late when n handshakes share a loaded
	// CPU (under -race the default Init1Timeout, 3 s, was missed): this
	// test is about concurrency, not that deadline (TestInit1Timeout).
	p := newPair(t, pairOpts{b: func(o *Options) { o.Init1Timeout = 10 * time.Second }})
	l, err := p.b.Listen(addrB4, 80, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			c, err := l.AcceptConn(ctx)
			if err != nil {
				t.Error(err)
				return
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
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 80), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if !c.Encrypted() {
				errs <- errors.New("not encrypted")
				return
			}
			msg := pattern(1000+i, "conc")
			c.Write(msg)
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				errs <- errors.New("echo mismatch")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p.a.Flows() != 0 || p.b.Flows() != 0 {
		t.Fatalf("flows left: a=%d b=%d", p.a.Flows(), p.b.Flows())
	}
	if got := p.a.Counters().Enabled.Load(); got != uint64(n) {
		t.Fatalf("enabled %d of %d", got, n)
	}
	if p.a.Table().Len() != 0 || p.b.Table().Len() != 0 || len(p.a.Table().byTuple) != 0 || len(p.b.Table().byTuple) != 0 {
		t.Fatal("table entries left")
	}
	t.Logf("%d connections; wire sent %d packets, gVisor a: %d segments sent", n, p.hub.Stats.Sent.Load(), p.a.GVisor().Stats().TCP.SegmentsSent.Value())
}

// ENO-18: a spoofed non-SYN segment that the connection would not accept
// (a sequence number far from the peer's) does not end the active opener's
// ENO on every segment. With the third segment lost too, B decides on a's
// next segment (Init1): it must still carry ENO, or B falls back while a
// encrypts.
func TestENO18_SpoofedSegmentDoesNotEndENO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		var dropped atomic.Bool
		p := newPair(t, pairOpts{
			hookBA: func(pk *wiretest.Packet) wiretest.Verdict {
				s, ok := wiretest.ParseTCP(pk.Data)
				if !ok || !s.SYNACK() {
					return wiretest.Verdict{}
				}
				synack := append([]byte(nil), pk.Data...)
				forged := pk.Data // delivered after synack, out of window
				wiretest.StripENO(forged)
				fs, _ := wiretest.ParseTCP(forged)
				th := header.TCP(forged[len(forged)-len(fs.Payload)-len(fs.Options)-header.TCPMinimumSize:])
				th.SetFlags(uint8(header.TCPFlagAck))
				th.SetSequenceNumber(s.Seq + 1 + 1<<30)
				wiretest.FixTCPChecksum(forged, fs)
				return wiretest.Verdict{Before: [][]byte{synack}}
			},
			hookAB: func(pk *wiretest.Packet) wiretest.Verdict {
				if s, ok := wiretest.ParseTCP(pk.Data); ok && !s.SYN() && len(s.Payload) == 0 && !dropped.Swap(true) {
					return wiretest.Verdict{Drop: true} // the third segment
				}
				return wiretest.Verdict{}
			},
		})
		client, server := dialAccept(t, p, v6, 80, nil, nil)
		checkEncrypted(t, client, server)
		if p.a.Counters().OutOfWindow.Load() == 0 {
			t.Fatal("the forged segment was not counted out of window")
		}
		exchange(t, client, server, []byte("after a forged ACK"), []byte("ok"))
	}
}
