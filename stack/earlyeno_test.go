package stack

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// wireLog records the TCP segments of both directions of a pair in the order
// the wire carried them (one sequence for both links).
type wireLog struct {
	mu   sync.Mutex
	segs []loggedSeg
}

type loggedSeg struct {
	fromA bool
	size  int
	wiretest.Segment
}

func (w *wireLog) hook(fromA bool, next wiretest.Hook) wiretest.Hook {
	return func(p *wiretest.Packet) wiretest.Verdict {
		if s, ok := wiretest.ParseTCP(append([]byte(nil), p.Data...)); ok {
			w.mu.Lock()
			w.segs = append(w.segs, loggedSeg{fromA: fromA, size: len(p.Data), Segment: s})
			w.mu.Unlock()
		}
		if next != nil {
			return next(p)
		}
		return wiretest.Verdict{}
	}
}

func (w *wireLog) all() []loggedSeg {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]loggedSeg(nil), w.segs...)
}

// RFC 8547 §4.6 (ENO-18) with GSO: a resumed A writes 500 KB right after
// connect, over links that take GSO super-packets as the TUN device does
// (the wire cuts them as the host would), and its third segment is lost.
// Every non-SYN segment A puts on the wire before B's first non-SYN segment
// must carry the ENO option, each within the MTU, whichever path produced it
// (super-packet, retransmission); B must end up encrypted with A, and read
// the plaintext A wrote (no fallback, no ciphertext handed over as data).
func TestENO18_EarlyDataGSO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, sack := range []bool{true, false} {
			name := fmt.Sprintf("v6=%v/sack=%v", v6, sack)
			t.Run(name, func(t *testing.T) { earlyDataGSO(t, v6, sack, false, false) })
		}
	}
	// B announces an MSS above what A's MTU carries (a jumbo-frame peer):
	// gVisor's segments are then sized by A's MTU, and the shim's clamp of
	// the peer's MSS must take A's MTU as its ceiling to leave room.
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v/sack=false/peer-mss=8960", v6), func(t *testing.T) { earlyDataGSO(t, v6, false, true, false) })
	}
	// The third segment and the whole first flight are lost: what reaches
	// B first is a retransmission, which must carry ENO too.
	for _, sack := range []bool{true, false} {
		t.Run(fmt.Sprintf("v6=false/sack=%v/first-flight-lost", sack), func(t *testing.T) { earlyDataGSO(t, false, sack, false, true) })
	}
}

// jumboMSS sets the MSS option of SYN-ACKs to 8960.
func jumboMSS(pk *wiretest.Packet) wiretest.Verdict {
	s, ok := wiretest.ParseTCP(pk.Data)
	if !ok || !s.SYNACK() {
		return wiretest.Verdict{}
	}
	for _, o := range wiretest.OptionsOfKind(s.Options, 2) {
		if len(o) == 4 {
			o[2], o[3] = 8960>>8, 8960&0xff
		}
	}
	wiretest.FixTCPChecksum(pk.Data, s)
	return wiretest.Verdict{}
}

// earlyDataGSO runs the case: B announces MSS 8960 with bigMSS, and with
// loseFlight A's first data segments are lost until it retransmits.
func earlyDataGSO(t *testing.T, v6, sack, bigMSS, loseFlight bool) {
	var ha, hb resumingHost
	var armed atomic.Bool
	var dropped atomic.Int32
	var w wireLog
	var seenSeq map[uint32]bool // hook state: the hook runs on one goroutine
	var flightDone bool
	dropThird := func(pk *wiretest.Packet) wiretest.Verdict {
		// Once armed, drop A's third segment (its first pure ACK) and,
		// with loseFlight, every data segment of A until one repeats an
		// earlier sequence number: B's first non-SYN segment from A is
		// then a retransmission.
		s, ok := wiretest.ParseTCP(pk.Data)
		if !ok || !armed.Load() || s.SYN() || s.Dst.Port() != 121 {
			return wiretest.Verdict{}
		}
		if dropped.Load() == 0 {
			if len(s.Payload) == 0 {
				dropped.Add(1)
				return wiretest.Verdict{Drop: true}
			}
			return wiretest.Verdict{}
		}
		if !loseFlight || flightDone || len(s.Payload) == 0 {
			return wiretest.Verdict{}
		}
		if seenSeq[s.Seq] {
			flightDone = true
			return wiretest.Verdict{}
		}
		if seenSeq == nil {
			seenSeq = map[uint32]bool{}
		}
		seenSeq[s.Seq] = true
		dropped.Add(1)
		return wiretest.Verdict{Drop: true}
	}
	var stripAB, stripBA wiretest.Hook
	if !sack {
		stripAB = wiretest.Chain(noSACK, dropThird)
		stripBA = noSACK
	} else {
		stripAB = dropThird
	}
	if bigMSS {
		stripBA = wiretest.Chain(stripBA, jumboMSS)
	}
	p := newPair(t, pairOpts{a: ha.options, b: hb.options, gso: true, noCapture: true,
		hookAB: w.hook(true, stripAB), hookBA: w.hook(false, stripBA)})
	c0, s0 := dialAccept(t, p, v6, 120, nil, nil)
	checkEncrypted(t, c0, s0)
	exchange(t, c0, s0, []byte("prime"), []byte("cache"))

	src, dst := addrA4, addrB4
	if v6 {
		src, dst = addrA6, addrB6
	}
	l, err := p.b.Listen(dst, 121, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := ctxT(t)
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := l.AcceptConn(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	fallbacksB := p.b.Counters().Snapshot()
	armed.Store(true)
	w.mu.Lock()
	start := len(w.segs)
	w.mu.Unlock()
	client, err := p.a.Dial(ctx, netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 121), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	want := pattern(500<<10, "RESUMED-EARLY-DATA|")
	go func() {
		client.Write(want)
		client.CloseWrite()
	}()
	server := <-accepted
	if server == nil {
		t.Fatal("no connection accepted")
	}
	defer server.Close()
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("read: %v (server %+v)", err, server.Negotiation())
	}
	if dropped.Load() == 0 {
		t.Fatal("the third segment was not dropped")
	}
	if p.hub.Stats.Segmented.Load() == 0 {
		t.Fatal("no GSO super-packet crossed the wire: the test does not exercise GSO")
	}
	if n := p.hub.Stats.BadOffload.Load(); n != 0 {
		t.Fatalf("%d packets had a wrong partial checksum", n)
	}
	// The connection's segments, in wire order, up to B's first non-SYN one.
	var data, plain, resent int
	seen := map[uint32]bool{}
	for _, s := range w.all()[start:] {
		if s.fromA && s.Dst.Port() != 121 || !s.fromA && s.Src.Port() != 121 {
			continue // the priming connection's last segments
		}
		if !s.fromA && !s.SYN() {
			break
		}
		if !s.fromA || s.SYN() {
			continue
		}
		if s.size > testMTU {
			t.Errorf("A sent a %d-byte segment over an MTU of %d", s.size, testMTU)
		}
		if len(s.Payload) > 0 {
			data++
			if seen[s.Seq] {
				resent++
			}
			seen[s.Seq] = true
		}
		if len(s.ENO()) == 0 {
			plain++
			t.Errorf("A sent a non-SYN segment without ENO (seq %d, %d bytes of payload, flags %v) before B's first non-SYN segment", s.Seq, len(s.Payload), s.Flags)
		}
	}
	if data == 0 {
		t.Fatal("A sent no data before B's first non-SYN segment: the case is not exercised")
	}
	if loseFlight && resent == 0 {
		t.Fatal("A retransmitted nothing before B's first non-SYN segment: the case is not exercised")
	}
	t.Logf("%d data segments of A before B's first non-SYN segment (%d retransmitted), %d without ENO", data, resent, plain)
	if !bytes.Equal(got, want) {
		t.Fatalf("B read %d bytes, want the %d A wrote (plaintext intact: %v)", len(got), len(want), bytes.HasPrefix(want, got))
	}
	cn, sn := client.Negotiation(), server.Negotiation()
	if !cn.Encrypted || !sn.Encrypted || !cn.Resumed || !sn.Resumed {
		t.Fatalf("not encrypted and resumed on both ends: client %+v server %+v", cn, sn)
	}
	if d := p.b.Counters().Snapshot(); d["enabled"] != fallbacksB["enabled"]+1 {
		t.Fatalf("B's counters: enabled %d -> %d", fallbacksB["enabled"], d["enabled"])
	}
	if bigMSS {
		// The clamp left room from the start: nothing needed cutting.
		if n, m := p.a.Counters().Split.Load(), p.a.Counters().GSOMSSLowered.Load(); n != 0 || m != 0 {
			t.Errorf("split %d, gso-mss-lowered %d: the MSS clamp left no room", n, m)
		}
	}
	if n := p.a.Counters().NoRoom.Load(); n != 0 {
		t.Errorf("%d segments dropped for lack of room", n)
	}
}
