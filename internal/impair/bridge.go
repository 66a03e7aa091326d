package impair

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is one way through the bridge.
type Direction int

const (
	AtoB Direction = iota // frames read on port A, written to port B
	BtoA
)

func (d Direction) String() string {
	if d == AtoB {
		return "A->B"
	}
	return "B->A"
}

// Port is one of the bridge's two interfaces.
type Port struct {
	Iface   string           // interface name in the bridge's namespace
	PeerMAC net.HardwareAddr // MAC of the next hop behind this port (the destination of frames sent on it)
}

// Config configures a Bridge.
type Config struct {
	A, B Port
	// Local are the router's own addresses: frames to them are left to the
	// kernel (ARP, NDP and anything that is not unicast IP to our MAC are too).
	Local []netip.Addr
	// Seed of the random decisions; each direction has its own generator
	// (seeded Seed and Seed+1), so a run's decisions are reproducible per
	// direction given the same frames.
	Seed uint64
	// QueueLen bounds the frames waiting in each direction's delay queue
	// (default 16384); frames beyond it are dropped and counted.
	QueueLen int
}

// Counters of one direction.
type Counters struct {
	Received    uint64 // frames read on the ingress port
	Ignored     uint64 // not unicast IP through us: left to the kernel
	Malformed   uint64 // IP frames that did not parse: dropped
	TTLExpired  uint64 // TTL/hop limit exhausted: dropped
	Dropped     uint64 // dropped by Settings.Drop
	Duplicated  uint64 // frames sent twice
	Reordered   uint64 // copies held back by Settings.Reorder
	Corrupted   uint64 // frames with a flipped payload byte
	Stripped    uint64 // frames whose options were stripped
	QueueFull   uint64 // dropped because the delay queue was full
	SocketDrops uint64 // dropped by the kernel: ingress socket buffer full
	WriteErrors uint64 // egress writes that failed (frame lost)
	Forwarded   uint64 // frames written to the egress port (copies counted)
}

func (c Counters) String() string {
	return fmt.Sprintf("rx=%d fwd=%d ignored=%d drop=%d dup=%d reorder=%d corrupt=%d strip=%d ttl=%d malformed=%d qfull=%d sockdrop=%d werr=%d",
		c.Received, c.Forwarded, c.Ignored, c.Dropped, c.Duplicated, c.Reordered, c.Corrupted, c.Stripped,
		c.TTLExpired, c.Malformed, c.QueueFull, c.SocketDrops, c.WriteErrors)
}

// Bridge forwards IP frames between two interfaces like a router (MACs
// rewritten, TTL decremented) while impairing them per direction: drop,
// duplicate, delay with jitter, reorder, corrupt, strip TCP options.
//
// Decision: AF_PACKET rather than NFQUEUE. NFQUEUE needs nftables or iptables
// rules in the router namespace plus the kernel's nfnetlink_queue, can only
// accept, drop or replace a packet (not hold it for a delay without stalling
// the queue, nor emit a copy), and in-kernel forwarding would keep running
// underneath. An AF_PACKET bridge owns every frame: the kernel's forwarding is
// off, so what the bridge does not write never arrives.
//
// Goroutines: per direction a reader (reads, decides, writes undelayed frames)
// and a writer (writes delayed frames when due). Close stops all four; Wait
// waits for them.
type Bridge struct {
	dirs  [2]*direction
	ports [2]*packetConn

	wg        sync.WaitGroup
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once

	errMu sync.Mutex
	err   error // first unexpected error; guarded by errMu
}

type direction struct {
	b       *Bridge
	name    string
	in      io.Reader
	inPC    *packetConn // in as a socket (nil in unit tests): for its drop count
	out     io.Writer
	inMAC   net.HardwareAddr
	outMAC  net.HardwareAddr
	peerMAC net.HardwareAddr // destination MAC of frames written on out
	local   map[netip.Addr]bool

	settings atomic.Pointer[Settings]
	rng      *rand.Rand // reader goroutine only

	mu   sync.Mutex // guards q and seq
	q    frameHeap
	seq  uint64
	kick chan struct{} // wakes the writer when an earlier frame is queued
	max  int

	c struct {
		received, ignored, malformed, ttlExpired, dropped, duplicated, reordered,
		corrupted, stripped, queueFull, socketDrops, writeErrors, forwarded atomic.Uint64
	}
}

// NewBridge opens the two ports and starts forwarding with zero Settings. It
// must be called from a thread in the router's network namespace (the sockets
// belong to it; its goroutines then work from anywhere).
func NewBridge(cfg Config) (*Bridge, error) {
	if len(cfg.A.PeerMAC) != 6 || len(cfg.B.PeerMAC) != 6 {
		return nil, errors.New("impair: both ports need the peer's MAC address")
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 16384
	}
	a, err := openPacket(cfg.A.Iface, true, 8<<20)
	if err != nil {
		return nil, err
	}
	bp, err := openPacket(cfg.B.Iface, true, 8<<20)
	if err != nil {
		a.Close()
		return nil, err
	}
	local := make(map[netip.Addr]bool)
	for _, l := range cfg.Local {
		local[l] = true
	}
	b := &Bridge{ports: [2]*packetConn{a, bp}, done: make(chan struct{})}
	b.dirs[AtoB] = b.newDirection("A->B", a, bp, cfg.B.PeerMAC, local, cfg.Seed, cfg.QueueLen)
	b.dirs[BtoA] = b.newDirection("B->A", bp, a, cfg.A.PeerMAC, local, cfg.Seed+1, cfg.QueueLen)
	for _, d := range b.dirs {
		b.wg.Add(2)
		go d.reader()
		go d.writer()
	}
	return b, nil
}

func (b *Bridge) newDirection(name string, in, out *packetConn, peer net.HardwareAddr, local map[netip.Addr]bool, seed uint64, max int) *direction {
	d := newDirection(b, name, in, out, in.iface.HardwareAddr, out.iface.HardwareAddr, peer, local, seed, max)
	d.inPC = in
	return d
}

// newDirection builds one direction over any reader and writer (unit tests use
// in-memory ones).
func newDirection(b *Bridge, name string, in io.Reader, out io.Writer, inMAC, outMAC, peerMAC net.HardwareAddr,
	local map[netip.Addr]bool, seed uint64, max int) *direction {
	d := &direction{
		b: b, name: name, in: in, out: out,
		inMAC: inMAC, outMAC: outMAC, peerMAC: peerMAC,
		local: local,
		rng:   rand.New(rand.NewPCG(seed, 0x7463706372797074)), // "tcpcrypt"
		kick:  make(chan struct{}, 1),
		max:   max,
	}
	d.settings.Store(&Settings{})
	return d
}

// Set replaces the settings of one direction; frames already queued keep their
// delays.
func (b *Bridge) Set(d Direction, s Settings) error {
	if d != AtoB && d != BtoA {
		return fmt.Errorf("impair: direction %d", d)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	b.dirs[d].settings.Store(&s)
	return nil
}

// SetBoth sets both directions alike.
func (b *Bridge) SetBoth(s Settings) error {
	if err := b.Set(AtoB, s); err != nil {
		return err
	}
	return b.Set(BtoA, s)
}

// Settings returns a direction's current settings.
func (b *Bridge) Settings(d Direction) Settings { return *b.dirs[d].settings.Load() }

// Counters returns a snapshot of a direction's counters.
func (b *Bridge) Counters(d Direction) Counters {
	x := b.dirs[d]
	if x.inPC != nil {
		x.c.socketDrops.Add(x.inPC.drops())
	}
	return Counters{
		Received: x.c.received.Load(), Ignored: x.c.ignored.Load(), Malformed: x.c.malformed.Load(),
		TTLExpired: x.c.ttlExpired.Load(), Dropped: x.c.dropped.Load(), Duplicated: x.c.duplicated.Load(),
		Reordered: x.c.reordered.Load(), Corrupted: x.c.corrupted.Load(), Stripped: x.c.stripped.Load(),
		QueueFull: x.c.queueFull.Load(), SocketDrops: x.c.socketDrops.Load(),
		WriteErrors: x.c.writeErrors.Load(), Forwarded: x.c.forwarded.Load(),
	}
}

// Close stops forwarding: frames still queued are discarded. It does not wait.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.done)
		for _, p := range b.ports {
			p.Close()
		}
	})
	return nil
}

// Wait waits for the bridge's goroutines after Close (or a fatal error) and
// returns the first unexpected error.
func (b *Bridge) Wait() error {
	b.wg.Wait()
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

func (b *Bridge) fail(err error) {
	if b.closed.Load() {
		return
	}
	b.errMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.errMu.Unlock()
}

// reader reads frames until the port is closed. Exits on Close (or a read
// error, which it records and which stops the whole bridge).
func (d *direction) reader() {
	defer d.b.wg.Done()
	buf := make([]byte, 1<<16+ethHdrLen)
	var v verdict
	for {
		n, err := d.in.Read(buf)
		if err != nil {
			d.b.fail(fmt.Errorf("impair %s: read: %w", d.name, err))
			d.b.Close()
			return
		}
		d.c.received.Add(1)
		d.handle(buf[:n], &v)
	}
}

// handle decides the fate of one frame (aliasing the read buffer).
func (d *direction) handle(frame []byte, v *verdict) {
	p, err := ParseFrame(frame)
	if err != nil {
		d.c.malformed.Add(1)
		return
	}
	if p.Version == 0 || !bytes.Equal(p.DstMAC(), d.inMAC) || d.local[p.Dst] {
		d.c.ignored.Add(1)
		return
	}
	s := d.settings.Load()
	s.decide(d.rng, p.PayLen, s.Strip.matches(&p), v)
	if v.drop {
		d.c.dropped.Add(1)
		return
	}
	// From here on the frame is ours: copy it (without link padding).
	p.Frame = bytes.Clone(frame[:p.End])
	if !p.DecrementTTL() {
		d.c.ttlExpired.Add(1)
		return
	}
	if v.strip {
		if n, _ := p.StripOption(s.Strip.Kind); n > 0 {
			d.c.stripped.Add(1)
		}
	}
	if v.corruptAt >= 0 && p.CorruptPayload(v.corruptAt, v.mask) == nil {
		d.c.corrupted.Add(1)
	}
	p.SetMACs(d.outMAC, d.peerMAC)
	if len(v.delays) > 1 {
		d.c.duplicated.Add(1)
	}
	d.c.reordered.Add(uint64(v.reordered))
	now := time.Now()
	for _, dl := range v.delays { // copies share the (no longer modified) bytes
		if dl == 0 {
			d.write(p.Frame)
		} else {
			d.enqueue(p.Frame, now.Add(dl))
		}
	}
}

func (d *direction) write(f []byte) {
	if _, err := d.out.Write(f); err != nil {
		if d.b.closed.Load() {
			return
		}
		d.c.writeErrors.Add(1) // ENOBUFS and the like: the frame is lost, as on a wire
		return
	}
	d.c.forwarded.Add(1)
}

func (d *direction) enqueue(f []byte, due time.Time) {
	d.mu.Lock()
	if len(d.q) >= d.max {
		d.mu.Unlock()
		d.c.queueFull.Add(1)
		return
	}
	d.seq++
	heap.Push(&d.q, queued{frame: f, due: due, seq: d.seq})
	first := d.q[0].seq == d.seq
	d.mu.Unlock()
	if first {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// writer writes queued frames when they are due. Exits on Close.
func (d *direction) writer() {
	defer d.b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var ready [][]byte
	for {
		ready = ready[:0]
		var next time.Time
		now := time.Now()
		d.mu.Lock()
		for len(d.q) > 0 && !d.q[0].due.After(now) {
			ready = append(ready, heap.Pop(&d.q).(queued).frame)
		}
		if len(d.q) > 0 {
			next = d.q[0].due
		}
		d.mu.Unlock()
		for _, f := range ready {
			d.write(f)
		}
		if len(ready) > 0 {
			continue
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-d.b.done:
			timer.Stop()
			return
		case <-d.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// queued is a delayed frame; equal due times keep arrival order.
type queued struct {
	frame []byte
	due   time.Time
	seq   uint64
}

type frameHeap []queued

func (h frameHeap) Len() int { return len(h) }
func (h frameHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].seq < h[j].seq
	}
	return h[i].due.Before(h[j].due)
}
func (h frameHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *frameHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *frameHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = queued{}
	*h = old[:len(old)-1]
	return x
}
