package impair

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// frameSink collects written frames.
type frameSink struct {
	mu     sync.Mutex
	frames [][]byte
	times  []time.Time
}

func (s *frameSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, bytes.Clone(b))
	s.times = append(s.times, time.Now())
	return len(b), nil
}

func (s *frameSink) snapshot() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.frames...)
}

var (
	inMAC   = net.HardwareAddr(macB) // the frames' destination: our ingress port
	outMAC  = net.HardwareAddr{2, 0, 0, 0, 0, 0xc}
	peerMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0xd}
)

// testDirection is one bridge direction writing to a sink, with its writer
// goroutine running; it is stopped in t.Cleanup.
func testDirection(t *testing.T, s Settings, local ...netip.Addr) (*direction, *frameSink) {
	t.Helper()
	b := &Bridge{done: make(chan struct{})}
	sink := &frameSink{}
	lm := map[netip.Addr]bool{}
	for _, l := range local {
		lm[l] = true
	}
	d := newDirection(b, "test", nil, sink, inMAC, outMAC, peerMAC, lm, 1, 64)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	d.settings.Store(&s)
	b.wg.Add(1)
	go d.writer()
	t.Cleanup(func() {
		close(b.done)
		b.wg.Wait()
	})
	return d, sink
}

func dataFrame(i int) []byte {
	return seg{src: v4a, dst: v4b, seq: uint32(i * 10), flags: header.TCPFlagAck, payload: bytes.Repeat([]byte{byte(i)}, 10)}.build()
}

func TestBridgeForwardsLikeARouter(t *testing.T) {
	routerAddr := netip.MustParseAddr("10.0.0.254")
	d, sink := testDirection(t, Settings{}, routerAddr)
	var v verdict
	d.handle(dataFrame(1), &v)
	got := sink.snapshot()
	if len(got) != 1 {
		t.Fatalf("%d frames forwarded", len(got))
	}
	p, err := ParseFrame(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.DstMAC(), peerMAC) || !bytes.Equal(p.SrcMAC(), outMAC) {
		t.Fatalf("MACs not rewritten: dst %x src %x", p.DstMAC(), p.SrcMAC())
	}
	if got[0][ethHdrLen+8] != 63 {
		t.Fatalf("TTL %d, want 63", got[0][ethHdrLen+8])
	}
	gvisorChecksumsOK(t, got[0])

	// Not ours: another MAC, ARP, to the router itself, malformed.
	other := dataFrame(2)
	copy(other[0:6], []byte{2, 9, 9, 9, 9, 9})
	arp := make([]byte, 42)
	copy(arp[0:6], inMAC)
	toRouter := seg{src: v4a, dst: netip.AddrPortFrom(routerAddr, 22)}.build()
	bad := dataFrame(3)[:30]
	for _, f := range [][]byte{other, arp, toRouter, bad} {
		d.handle(f, &v)
	}
	if n := len(sink.snapshot()); n != 1 {
		t.Fatalf("%d frames forwarded, want 1", n)
	}
	if d.c.ignored.Load() != 3 || d.c.malformed.Load() != 1 {
		t.Fatalf("ignored %d malformed %d", d.c.ignored.Load(), d.c.malformed.Load())
	}
}

func TestBridgeDelayAndReorder(t *testing.T) {
	// Every other frame is held back 30ms: the order on the wire changes, and
	// nothing is lost.
	d, sink := testDirection(t, Settings{Delay: 5 * time.Millisecond, Reorder: 0.5, ReorderDelay: 30 * time.Millisecond})
	var v verdict
	start := time.Now()
	for i := range 20 {
		d.handle(dataFrame(i), &v)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.snapshot()) < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := sink.snapshot()
	if len(got) != 20 {
		t.Fatalf("%d of 20 frames arrived", len(got))
	}
	if first := sink.times[0].Sub(start); first < 5*time.Millisecond {
		t.Fatalf("first frame after %v, before the 5ms delay", first)
	}
	seen := map[uint32]bool{}
	inOrder := true
	var last uint32
	for i, f := range got {
		p, _ := ParseFrame(f)
		seen[p.Seq] = true
		if i > 0 && p.Seq < last {
			inOrder = false
		}
		last = p.Seq
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct frames", len(seen))
	}
	if inOrder || d.c.reordered.Load() == 0 {
		t.Fatalf("no reordering (reordered=%d)", d.c.reordered.Load())
	}
}

func TestBridgeDropDuplicateCorruptStrip(t *testing.T) {
	d, sink := testDirection(t, Settings{Drop: 1})
	var v verdict
	d.handle(dataFrame(1), &v)
	if len(sink.snapshot()) != 0 || d.c.dropped.Load() != 1 {
		t.Fatal("Drop=1 forwarded a frame")
	}
	d.settings.Store(&Settings{Duplicate: 1, Corrupt: 1})
	d.handle(dataFrame(1), &v)
	got := sink.snapshot()
	if len(got) != 2 || !bytes.Equal(got[0], got[1]) {
		t.Fatalf("Duplicate=1: %d frames", len(got))
	}
	p, _ := ParseFrame(got[0])
	if bytes.Equal(p.Payload(), bytes.Repeat([]byte{1}, 10)) {
		t.Fatal("Corrupt=1 left the payload alone")
	}
	gvisorChecksumsOK(t, got[0])

	syn := seg{src: v4a, dst: v4b, flags: header.TCPFlagSyn, opts: enoSYNOpts}.build()
	synack := seg{src: v4b, dst: v4a, flags: header.TCPFlagSyn | header.TCPFlagAck, opts: []byte{69, 3, 0x21}}.build()
	copy(synack[0:6], inMAC)
	for _, tc := range []struct {
		which            StripWhich
		synENO, ackENO   bool
		synFirst, stript uint64
	}{
		{StripSYN, false, true, 0, 1},
		{StripSYNACK, true, false, 0, 1},
		{StripAll, false, false, 0, 2},
	} {
		d, sink := testDirection(t, Settings{Strip: Strip{Kind: OptENO, Which: tc.which}})
		d.handle(bytes.Clone(syn), &v)
		d.handle(bytes.Clone(synack), &v)
		got := sink.snapshot()
		if len(got) != 2 {
			t.Fatalf("%v: %d frames", tc.which, len(got))
		}
		ps, _ := ParseFrame(got[0])
		pa, _ := ParseFrame(got[1])
		if _, ok := ps.Option(OptENO); ok != tc.synENO {
			t.Fatalf("strip %v: SYN has ENO %v", tc.which, ok)
		}
		if _, ok := pa.Option(OptENO); ok != tc.ackENO {
			t.Fatalf("strip %v: SYN-ACK has ENO %v", tc.which, ok)
		}
		gvisorChecksumsOK(t, got[0])
		gvisorChecksumsOK(t, got[1])
		if d.c.stripped.Load() != tc.stript {
			t.Fatalf("strip %v: counted %d", tc.which, d.c.stripped.Load())
		}
	}
}

func TestBridgeQueueBound(t *testing.T) {
	d, sink := testDirection(t, Settings{Delay: 200 * time.Millisecond})
	var v verdict
	for i := range 100 { // queue holds 64
		d.handle(dataFrame(i), &v)
	}
	if d.c.queueFull.Load() != 36 {
		t.Fatalf("queueFull = %d, want 36", d.c.queueFull.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.snapshot()) < 64 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(sink.snapshot()); n != 64 {
		t.Fatalf("%d frames delivered, want 64", n)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		ok   bool
	}{
		{"zero", Settings{}, true},
		{"moderate", Settings{Drop: 0.01, Duplicate: 0.01, Reorder: 0.02, Delay: time.Millisecond, Jitter: time.Millisecond}, true},
		{"drop > 1", Settings{Drop: 1.5}, false},
		{"negative duplicate", Settings{Duplicate: -0.1}, false},
		{"NaN corrupt", Settings{Corrupt: math.NaN()}, false},
		{"negative delay", Settings{Delay: -time.Millisecond}, false},
		{"huge jitter", Settings{Jitter: time.Hour}, false},
		{"strip NOP", Settings{Strip: Strip{Kind: OptNOP, Which: StripAll}}, false},
		{"strip without which", Settings{Strip: Strip{Kind: OptENO}}, false},
		{"strip ENO from SYN", Settings{Strip: Strip{Kind: OptENO, Which: StripSYN}}, true},
	}
	for _, tc := range tests {
		if err := tc.s.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestDecideRates: the seeded decisions hit the configured rates, and the same
// seed gives the same decisions.
func TestDecideRates(t *testing.T) {
	s := Settings{Drop: 0.02, Duplicate: 0.05, Reorder: 0.1, Corrupt: 0.01, Jitter: time.Millisecond}
	run := func(seed uint64) (drops, dups, reorders, corrupts int, sig uint64) {
		r := rand.New(rand.NewPCG(seed, 1))
		var v verdict
		for range 100000 {
			s.decide(r, 100, false, &v)
			switch {
			case v.drop:
				drops++
				sig = sig*31 + 1
				continue
			case len(v.delays) == 2:
				dups++
			}
			if v.corruptAt >= 0 {
				corrupts++
			}
			reorders += v.reordered
			sig = sig*31 + uint64(v.delays[0])
		}
		return
	}
	d1, u1, r1, c1, s1 := run(7)
	_, _, _, _, s2 := run(7)
	_, _, _, _, s3 := run(8)
	if s1 != s2 || s1 == s3 {
		t.Fatalf("decisions not a function of the seed: %x %x %x", s1, s2, s3)
	}
	near := func(name string, got int, want float64) {
		if math.Abs(float64(got)-want) > want*0.15 {
			t.Errorf("%s: %d, want about %.0f", name, got, want)
		}
	}
	near("drops", d1, 2000)
	near("duplicates", u1, 0.98*5000)
	near("reorders", r1, 0.98*1.05*10000)
	near("corrupts", c1, 0.98*1000)
}
