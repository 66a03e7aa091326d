package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// doneLog collects Options.OnConnDone calls.
type doneLog struct {
	mu    sync.Mutex
	infos []ConnInfo
	errs  []error
}

func (d *doneLog) hook(ci ConnInfo, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.infos = append(d.infos, ci)
	d.errs = append(d.errs, err)
}

func (d *doneLog) wait(t *testing.T, n int) ([]ConnInfo, []error) {
	t.Helper()
	waitFor(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.infos) >= n
	}, "OnConnDone")
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]ConnInfo(nil), d.infos...), append([]error(nil), d.errs...)
}

// OnConnDone reports a relayed connection once, after it left the table,
// with its final bytes and negotiation, and a nil error for a clean end.
func TestOnConnDoneRelayed(t *testing.T) {
	var dl doneLog
	p := newPair(t, pairOpts{b: func(o *Options) { o.OnConnDone = dl.hook }})
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer backend.Close()
	go func() {
		bc, err := backend.Accept()
		if err != nil {
			return
		}
		defer bc.Close()
		b, _ := io.ReadAll(bc)
		bc.Write(append(b, b...))
		bc.(*net.TCPConn).CloseWrite()
	}()
	sv, err := p.b.Serve(addrB4, 443, nil, func(ctx context.Context, c *Conn) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", backend.Addr().String())
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB4, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sid, _ := c.SessionID()
	c.Write([]byte("hello"))
	c.CloseWrite()
	if resp, err := io.ReadAll(c); err != nil || string(resp) != "hellohello" {
		t.Fatalf("response %q, %v", resp, err)
	}
	infos, errs := dl.wait(t, 1)
	if len(infos) != 1 || errs[0] != nil {
		t.Fatalf("%d reports, errs %v", len(infos), errs)
	}
	ci := infos[0]
	if ci.Direction != Inbound || !ci.Encrypted || string(ci.SessionID) != string(sid) ||
		ci.BytesOuterToInner != 5 || ci.BytesInnerToOuter != 10 || ci.Outer.Remote.Addr() != addrA4 || !ci.Inner.Remote.IsValid() {
		t.Fatalf("final info %+v", ci)
	}
	if p.b.Table().Len() != 0 {
		t.Fatal("entry still listed when reported done")
	}
	time.Sleep(50 * time.Millisecond)
	if infos, _ := dl.wait(t, 1); len(infos) != 1 {
		t.Fatalf("reported %d times", len(infos))
	}
}

// A connection that never relayed (backend dial failed) is reported with
// the setup error.
func TestOnConnDoneBackendFailure(t *testing.T) {
	var dl doneLog
	p := newPair(t, pairOpts{b: func(o *Options) { o.OnConnDone = dl.hook }})
	down := errors.New("backend down")
	sv, err := p.b.Serve(addrB6, 443, nil, func(context.Context, *Conn) (net.Conn, error) { return nil, down }, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()
	c, err := p.a.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(addrB6, 443), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	infos, errs := dl.wait(t, 1)
	if !errors.Is(errs[0], down) || infos[0].Direction != Inbound || !infos[0].Encrypted {
		t.Fatalf("info %+v err %v", infos[0], errs[0])
	}
}

// The forwarder refuses a SYN from its own egress address: its own outer
// SYN sent back by routing. The application gets a quick refusal instead
// of dials that beget dials.
func TestForwarderRefusesLoop(t *testing.T) {
	tr := newTrio(t, true, ForwarderOptions{}, nil)
	loop := netip.MustParsePrefix("10.9.0.0/24")
	tr.hub.Route(tr.pf, loop, tr.pf) // F's packets to 10.9.0.0/24 come back to F
	// and so does what F sends to its own egress address, as a host's
	// connected route into the device would.
	tr.hub.Route(tr.pf, netip.PrefixFrom(addrF4, 32), tr.pf)
	start := time.Now()
	_, err := tr.c.Dial(ctxT(t), netip.AddrPort{}, netip.AddrPortFrom(netip.MustParseAddr("10.9.0.1"), 80), nil)
	if err == nil {
		t.Fatal("dial through a routing loop succeeded")
	}
	if n := tr.f.Counters().ForwardLoops.Load(); n == 0 {
		t.Fatalf("loop not detected (err %v)", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	waitFor(t, func() bool { return tr.f.Table().Len() == 0 }, "table empty")
	t.Logf("client error after %v: %v; loops refused: %d", time.Since(start), err, tr.f.Counters().ForwardLoops.Load())
}
