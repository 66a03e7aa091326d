package impair_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// These tests run the bridge for real: laptop -- router(bridge) -- server
// namespaces with kernel TCP at both ends (root only).

func impairedTopo(t *testing.T) *topo.Topology {
	t.Helper()
	if err := topo.RequireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: not skipping)", err)
		}
		t.Skip(err)
	}
	tp, err := topo.New(topo.Options{Impair: true, Seed: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		t.Logf("bridge A->B: %v", tp.Bridge.Counters(impair.AtoB))
		t.Logf("bridge B->A: %v", tp.Bridge.Counters(impair.BtoA))
		if err := tp.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return tp
}

// sendRecv sends data from the laptop to a server listener and returns what
// the server read.
func sendRecv(t *testing.T, tp *topo.Topology, dst netip.AddrPort, data []byte, timeout time.Duration) []byte {
	t.Helper()
	ln, err := tp.Server.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port()).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := tp.Laptop.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.Close()
	return <-got
}

// bulk moves n bytes one way through the bridge and checks the SHA-256.
func bulk(t *testing.T, tp *topo.Topology, up bool, dst netip.AddrPort, n int64) {
	t.Helper()
	sender, receiver := tp.Laptop, tp.Server
	if !up {
		sender, receiver = tp.Server, tp.Laptop
	}
	// The receiver listens; the laptop always dials (data flows one way).
	var l net.Listener
	var err error
	if up {
		l, err = receiver.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port()).String())
	} else {
		l, err = sender.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), dst.Port()).String())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		n   int64
		sum [32]byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- res{err: err}
			return
		}
		defer c.Close()
		if up {
			n, s, err := topo.BulkReceive(c)
			done <- res{n, s, err}
		} else {
			s, err := topo.BulkSend(c, n, 9)
			done <- res{n, s, err}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tp.Laptop.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	var mine res
	if up {
		mine.sum, mine.err = topo.BulkSend(c, n, 9)
		mine.n = n
		c.Close()
	} else {
		mine.n, mine.sum, mine.err = topo.BulkReceive(c)
	}
	other := <-done
	if mine.err != nil || other.err != nil || mine.n != n || other.n != n || mine.sum != other.sum {
		t.Fatalf("bulk up=%v to %s: laptop %d bytes %x (%v), server %d bytes %x (%v)",
			up, dst, mine.n, mine.sum, mine.err, other.n, other.sum, other.err)
	}
}

func TestRootBridgeForwards(t *testing.T) {
	tp := impairedTopo(t)
	if v, _ := tp.Router.ReadSysctl("net/ipv4/ip_forward"); v != "0" {
		t.Fatalf("router ip_forward = %s with the bridge", v)
	}
	bulk(t, tp, true, netip.AddrPortFrom(topo.ServerIPv4, 5001), 8<<20)
	bulk(t, tp, false, netip.AddrPortFrom(topo.ServerIPv6, 5002), 8<<20)
	c := tp.Bridge.Counters(impair.AtoB)
	if c.Forwarded < 5000 || c.Dropped != 0 {
		t.Fatalf("A->B counters %v", c)
	}
	// Drop everything: no connection. Then back: it works again (settings
	// change at run time).
	if err := tp.Bridge.SetBoth(impair.Settings{Drop: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if c, err := tp.Laptop.DialContext(ctx, "tcp", netip.AddrPortFrom(topo.ServerIPv4, 5003).String()); err == nil {
		c.Close()
		t.Fatal("connected through a bridge that drops everything")
	}
	tp.Bridge.SetBoth(impair.Settings{})
	if got := sendRecv(t, tp, netip.AddrPortFrom(topo.ServerIPv4, 5004), []byte("again"), 10*time.Second); string(got) != "again" {
		t.Fatalf("after restoring: %q", got)
	}
}

func TestRootBridgeImpairedBulkIntact(t *testing.T) {
	tp := impairedTopo(t)
	s := impair.Settings{Drop: 0.01, Duplicate: 0.01, Reorder: 0.02, Delay: time.Millisecond, Jitter: time.Millisecond}
	if err := tp.Bridge.SetBoth(s); err != nil {
		t.Fatal(err)
	}
	bulk(t, tp, true, netip.AddrPortFrom(topo.ServerIPv4, 5001), 8<<20)
	bulk(t, tp, false, netip.AddrPortFrom(topo.ServerIPv6, 5002), 8<<20)
	for _, d := range []impair.Direction{impair.AtoB, impair.BtoA} {
		c := tp.Bridge.Counters(d)
		if c.Dropped == 0 || c.Duplicated == 0 || c.Reordered == 0 {
			t.Errorf("%v: impairments not applied: %v", d, c)
		}
	}
}

func TestRootBridgeStripAndCorrupt(t *testing.T) {
	tp := impairedTopo(t)
	var capt *impair.Capture
	if err := tp.Server.Do(func() error {
		var err error
		capt, err = impair.NewCapture(topo.HostIface, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer capt.Stop()
	// Strip timestamps (kind 8) from the laptop's SYN and SACK-permitted
	// (kind 4) from the server's SYN-ACK; the connection still works.
	tp.Bridge.Set(impair.AtoB, impair.Settings{Strip: impair.Strip{Kind: 8, Which: impair.StripSYN}})
	tp.Bridge.Set(impair.BtoA, impair.Settings{Strip: impair.Strip{Kind: 4, Which: impair.StripSYNACK}})
	if got := sendRecv(t, tp, netip.AddrPortFrom(topo.ServerIPv4, 5001), []byte("stripped"), 10*time.Second); string(got) != "stripped" {
		t.Fatalf("got %q", got)
	}
	// Corrupt every data segment towards the server, checksums fixed: the
	// kernel accepts the altered bytes.
	tp.Bridge.Set(impair.AtoB, impair.Settings{Corrupt: 1})
	tp.Bridge.Set(impair.BtoA, impair.Settings{})
	want := bytes.Repeat([]byte("0123456789"), 100)
	got := sendRecv(t, tp, netip.AddrPortFrom(topo.ServerIPv6, 5002), want, 10*time.Second)
	if len(got) != len(want) || bytes.Equal(got, want) {
		t.Fatalf("corrupted transfer: %d bytes, equal %v", len(got), bytes.Equal(got, want))
	}
	frames := capt.Stop()
	var sawSYN, sawSYNACK bool
	for _, p := range impair.Segments(frames) {
		if p.Flow().Dst.Port() != 5001 && p.Flow().Src.Port() != 5001 {
			continue
		}
		if p.SYN() {
			sawSYN = true
			if _, ok := p.Option(8); ok {
				t.Errorf("SYN reached the server with timestamps: %s", impair.Describe(&p))
			}
			if !p.TCPChecksumValid() {
				t.Error("stripped SYN has a bad checksum")
			}
		}
		if p.SYNACK() {
			sawSYNACK = true
			// Captured leaving the server: still has it (stripped on the way).
			if _, ok := p.Option(4); !ok {
				t.Errorf("server's SYN-ACK lacks SACK-permitted before the bridge: %s", impair.Describe(&p))
			}
		}
	}
	if !sawSYN || !sawSYNACK {
		t.Fatalf("capture missed the handshake (SYN %v, SYN-ACK %v, %d frames)", sawSYN, sawSYNACK, len(frames))
	}
	if c := tp.Bridge.Counters(impair.AtoB); c.Stripped != 1 || c.Corrupted == 0 {
		t.Fatalf("A->B counters %v", c)
	}
	if c := tp.Bridge.Counters(impair.BtoA); c.Stripped != 1 {
		t.Fatalf("B->A counters %v", c)
	}
}
