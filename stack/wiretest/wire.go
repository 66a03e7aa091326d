// Package wiretest joins in-process gVisor stacks through channel link
// endpoints with a controllable wire, for tests and benchmarks without root
// or TUN devices.
//
// A Hub owns one pump goroutine per attached port, reading the packets the
// port's stack sends (cutting GSO super-packets into segments and completing
// partial checksums as a host's offload would, see Offload), and one
// scheduler goroutine for delayed packets. Every packet is routed by
// destination address (per sending port, longest prefix wins), shown to the
// hook of its link (from, to), and then dropped, delivered (possibly
// modified), duplicated or delayed as the hook says. Close stops every
// goroutine and waits for them.
package wiretest

import (
	"container/heap"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Packet is one IP packet crossing the wire.
type Packet struct {
	From, To string // port names
	N        uint64 // index of the packet on its link (from, to), from 0
	Data     []byte // the IP packet; a hook may change it in place or replace it
}

// Verdict is a hook's decision about a packet.
type Verdict struct {
	Drop  bool          // do not deliver
	Dup   int           // deliver this many extra copies
	Delay time.Duration // deliver after this delay (others may overtake it)
	// Before holds extra packets (forged by the hook) delivered on the same
	// link just before this one, without delay, even if it is dropped.
	Before [][]byte
}

// Hook inspects and may modify packets on one link. It runs on the sending
// port's pump goroutine, so a hook sees the packets of its link in order
// and needs no locking of its own state.
type Hook func(p *Packet) Verdict

// Options configure a Hub.
type Options struct {
	// MaxDelayed bounds the packets waiting in the delay line; more are
	// dropped and counted in Stats.Overflow (default 4096).
	MaxDelayed int
	// Logf, if set, receives one line per dropped-by-overflow or
	// unroutable packet.
	Logf func(format string, args ...any)
}

// Stats count what the wire did.
type Stats struct {
	Sent       atomic.Uint64 // packets read from the ports
	Delivered  atomic.Uint64 // packets (and copies) injected into ports
	Dropped    atomic.Uint64 // dropped by a hook
	Duplicated atomic.Uint64 // extra copies made
	Delayed    atomic.Uint64 // packets put in the delay line
	Overflow   atomic.Uint64 // dropped because the delay line was full
	Unroutable atomic.Uint64 // no route from the sending port
	Segmented  atomic.Uint64 // GSO super-packets cut into segments (Offload)
	BadOffload atomic.Uint64 // partial-checksum packets dropped: wrong pseudo-header sum (Offload)
}

// Port is a stack's attachment to the hub.
type Port struct {
	name string
	ep   *channel.Endpoint
	hub  *Hub
}

// Name returns the port's name.
func (p *Port) Name() string { return p.name }

type route struct {
	dst netip.Prefix
	to  *Port
}

type linkKey struct{ from, to *Port }

// Hub is the wire. Create with New, attach ports, add routes, then Start.
type Hub struct {
	opts  Options
	Stats Stats

	mu     sync.Mutex
	ports  []*Port            // guarded by mu
	routes map[*Port][]route  // guarded by mu
	hooks  map[linkKey]Hook   // guarded by mu
	count  map[linkKey]uint64 // guarded by mu
	line   delayLine          // guarded by mu
	seq    uint64             // guarded by mu; orders delayed packets due at once
	wake   chan struct{}      // signals the scheduler
	ctx    context.Context    // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // pumps and scheduler
	start  sync.Once
	closed atomic.Bool
}

// New returns a hub with no ports.
func New(o Options) *Hub {
	if o.MaxDelayed <= 0 {
		o.MaxDelayed = 4096
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		opts:   o,
		routes: make(map[*Port][]route),
		hooks:  make(map[linkKey]Hook),
		count:  make(map[linkKey]uint64),
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
	}
}

// Attach adds a port for the stack behind ep. Call before Start.
func (h *Hub) Attach(name string, ep *channel.Endpoint) *Port {
	p := &Port{name: name, ep: ep, hub: h}
	h.mu.Lock()
	h.ports = append(h.ports, p)
	h.mu.Unlock()
	return p
}

// Route sends packets from port from with a destination inside dst to port
// to. The longest matching prefix of the sending port's routes wins.
func (h *Hub) Route(from *Port, dst netip.Prefix, to *Port) {
	h.mu.Lock()
	h.routes[from] = append(h.routes[from], route{dst: dst.Masked(), to: to})
	h.mu.Unlock()
}

// SetHook installs hook on the link from → to (nil removes it). It may be
// called at any time; the next packet on the link sees the new hook.
func (h *Hub) SetHook(from, to *Port, hook Hook) {
	h.mu.Lock()
	if hook == nil {
		delete(h.hooks, linkKey{from, to})
	} else {
		h.hooks[linkKey{from, to}] = hook
	}
	h.mu.Unlock()
}

// Start starts the pumps and the scheduler.
func (h *Hub) Start() {
	h.start.Do(func() {
		h.mu.Lock()
		ports := append([]*Port(nil), h.ports...)
		h.mu.Unlock()
		h.wg.Add(len(ports) + 1)
		for _, p := range ports {
			go h.pump(p)
		}
		go h.scheduler()
	})
}

// Close stops the pumps and the scheduler, drops the delayed packets and
// waits for the goroutines to exit. The ports' endpoints are not closed
// (their stacks own them).
func (h *Hub) Close() {
	if h.closed.Swap(true) {
		return
	}
	h.cancel()
	h.wg.Wait()
	h.mu.Lock()
	h.line = nil
	h.mu.Unlock()
}

// Pair returns a started hub joining two endpoints, each side routing every
// destination to the other. Ports are named "a" and "b".
func Pair(a, b *channel.Endpoint) (*Hub, *Port, *Port) {
	h := New(Options{})
	pa, pb := h.Attach("a", a), h.Attach("b", b)
	for _, pfx := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		h.Route(pa, pfx, pb)
		h.Route(pb, pfx, pa)
	}
	h.Start()
	return h, pa, pb
}

// pump moves the packets port p's stack sends. It exits when the hub is
// closed or p's endpoint is closed.
func (h *Hub) pump(p *Port) {
	defer h.wg.Done()
	for {
		pkt := p.ep.ReadContext(h.ctx)
		if pkt == nil {
			return // hub closed, or endpoint closed (its channel yields nil)
		}
		data := make([]byte, 0, pkt.Size())
		for _, v := range pkt.AsSlices() {
			data = append(data, v...)
		}
		gso := pkt.GSOOptions
		pkt.DecRef()
		h.Stats.Sent.Add(1)
		// What a host's offload would do before the wire (see Offload).
		segs, ok := Offload(data, gso)
		if !ok {
			h.Stats.BadOffload.Add(1)
			if h.opts.Logf != nil {
				h.opts.Logf("wiretest: %s: packet with a wrong partial checksum dropped", p.name)
			}
			continue
		}
		if len(segs) > 1 {
			h.Stats.Segmented.Add(1)
		}
		for _, seg := range segs {
			h.forward(p, seg)
		}
	}
}

func (h *Hub) forward(from *Port, data []byte) {
	dst, ok := dstAddr(data)
	h.mu.Lock()
	var to *Port
	if ok {
		best := -1
		for _, r := range h.routes[from] {
			if r.dst.Contains(dst) && r.dst.Bits() > best {
				to, best = r.to, r.dst.Bits()
			}
		}
	}
	if to == nil {
		h.mu.Unlock()
		h.Stats.Unroutable.Add(1)
		if h.opts.Logf != nil {
			h.opts.Logf("wiretest: %s: no route for %v", from.name, dst)
		}
		return
	}
	k := linkKey{from, to}
	hook := h.hooks[k]
	n := h.count[k]
	h.count[k] = n + 1
	h.mu.Unlock()

	p := &Packet{From: from.name, To: to.name, N: n, Data: data}
	var v Verdict
	if hook != nil {
		v = hook(p)
	}
	for _, b := range v.Before {
		h.deliver(to, b)
	}
	if v.Drop {
		h.Stats.Dropped.Add(1)
		return
	}
	copies := 1 + max(v.Dup, 0)
	h.Stats.Duplicated.Add(uint64(copies - 1))
	for i := range copies {
		b := p.Data
		if i > 0 {
			b = append([]byte(nil), p.Data...)
		}
		if v.Delay > 0 {
			h.schedule(to, b, v.Delay)
		} else {
			h.deliver(to, b)
		}
	}
}

// Inject delivers the IP packet b to port to's stack at once, as if it had
// crossed the wire, without hooks: forged traffic (a spoofed SYN flood)
// that no attached stack sent.
func (h *Hub) Inject(to *Port, b []byte) { h.deliver(to, b) }

// deliver injects one packet into port to's stack.
func (h *Hub) deliver(to *Port, b []byte) {
	if len(b) == 0 {
		return
	}
	proto := header.IPv4ProtocolNumber
	if b[0]>>4 == 6 {
		proto = header.IPv6ProtocolNumber
	}
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	to.ep.InjectInbound(proto, pkt)
	pkt.DecRef()
	h.Stats.Delivered.Add(1)
}

func (h *Hub) schedule(to *Port, b []byte, d time.Duration) {
	h.mu.Lock()
	if len(h.line) >= h.opts.MaxDelayed {
		h.mu.Unlock()
		h.Stats.Overflow.Add(1)
		if h.opts.Logf != nil {
			h.opts.Logf("wiretest: delay line full, packet to %s dropped", to.name)
		}
		return
	}
	h.seq++
	heap.Push(&h.line, &delayed{due: time.Now().Add(d), seq: h.seq, to: to, data: b})
	h.mu.Unlock()
	h.Stats.Delayed.Add(1)
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// scheduler delivers delayed packets when they are due. It exits when the
// hub is closed.
func (h *Hub) scheduler() {
	defer h.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		h.mu.Lock()
		var due []*delayed
		now := time.Now()
		for len(h.line) > 0 && !h.line[0].due.After(now) {
			due = append(due, heap.Pop(&h.line).(*delayed))
		}
		next := time.Hour
		if len(h.line) > 0 {
			next = h.line[0].due.Sub(now)
		}
		h.mu.Unlock()
		for _, d := range due {
			h.deliver(d.to, d.data)
		}
		t.Reset(next)
		select {
		case <-h.ctx.Done():
			return
		case <-h.wake:
		case <-t.C:
		}
	}
}

type delayed struct {
	due  time.Time
	seq  uint64
	to   *Port
	data []byte
}

// delayLine is a min-heap of delayed packets by due time, then arrival.
type delayLine []*delayed

var _ heap.Interface = (*delayLine)(nil)

func (l delayLine) Len() int { return len(l) }
func (l delayLine) Less(i, j int) bool {
	if l[i].due.Equal(l[j].due) {
		return l[i].seq < l[j].seq
	}
	return l[i].due.Before(l[j].due)
}
func (l delayLine) Swap(i, j int) { l[i], l[j] = l[j], l[i] }
func (l *delayLine) Push(x any)   { *l = append(*l, x.(*delayed)) }
func (l *delayLine) Pop() any {
	old := *l
	x := old[len(old)-1]
	*l = old[:len(old)-1]
	return x
}

func dstAddr(b []byte) (netip.Addr, bool) {
	if len(b) >= header.IPv4MinimumSize && b[0]>>4 == 4 {
		a, _ := netip.AddrFromSlice(b[16:20])
		return a, true
	}
	if len(b) >= header.IPv6MinimumSize && b[0]>>4 == 6 {
		a, _ := netip.AddrFromSlice(b[24:40])
		return a, true
	}
	return netip.Addr{}, false
}
