package stack

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// listenBacklog is the accept backlog of a listener (as gonet uses).
const listenBacklog = 4096

// listenKey names a listener: address (zero: any) and port.
type listenKey struct {
	addr tcpip.Address
	port uint16
}

// Listener accepts TCP connections on one address and port and settles
// each one as Dial does (tcpcrypt as host B when ENO enabled it, plain or
// reset otherwise) before Accept returns it.
//
// One goroutine accepts TCP connections; each accepted connection gets a
// goroutine for its tcpcrypt handshake, at most Options.MaxHandshakes at a
// time (a slot each). Hostile peers cannot hold the slots: a source holds
// at most Options.HandshakesPerSource of them (its further connections
// wait for those), a peer whose first tcpcrypt message is not in within
// Options.Init1Timeout is reset, and when every slot is taken a new
// connection evicts the oldest handshake that has waited a while for that
// message. Close stops them all and waits.
type Listener struct {
	st     *Stack
	key    listenKey
	policy *Policy
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	addr   net.Addr

	conns chan *Conn // settled connections waiting for Accept
	// handle, when set (a Service), takes each settled connection on the
	// goroutine that settled it, instead of Accept: one goroutine hand-off
	// less between a connection's last handshake packet and its backend
	// dial.
	handle    func(*Conn)
	ctx       context.Context    // cancelled by Close
	cancel    context.CancelFunc //
	sem       chan struct{}      // bounds concurrent handshakes
	wg        sync.WaitGroup
	closeOnce sync.Once

	// waiting lists, oldest first, the handshakes holding a slot that have
	// not yet received the peer's first tcpcrypt message: the ones a new
	// connection evicts when every slot is taken (see takeSlot). active
	// counts the slots each source holds; parked holds, per source, the
	// connections waiting for one of them (see admit).
	hmu     sync.Mutex
	waiting list.List                    // of *hsWait; guarded by hmu
	active  map[netip.Prefix]int         // guarded by hmu
	parked  map[netip.Prefix][]*accepted // guarded by hmu
	nParked int                          // guarded by hmu
}

// Listen listens on addr (invalid or unspecified: every address, IPv4 and
// IPv6) and port, with the ENO mode p gives for (our address, port).
func Listen(s *Stack, addr netip.Addr, port uint16, p *Policy) (*Listener, error) {
	return s.Listen(addr, port, p)
}

// Listen listens on addr and port; see the package function Listen.
func (s *Stack) Listen(addr netip.Addr, port uint16, p *Policy) (*Listener, error) {
	return s.listen(addr, port, p, nil)
}

// listen is Listen; with handle set, settled connections go to it rather
// than to Accept (see Listener.handle).
func (s *Stack) listen(addr netip.Addr, port uint16, p *Policy, handle func(*Conn)) (*Listener, error) {
	wildcard := !addr.IsValid() || addr.IsUnspecified()
	proto := header.IPv6ProtocolNumber
	var full tcpip.FullAddress
	full.Port = port
	if !wildcard {
		proto = protoOf(addr)
		full.Addr = addrFrom(addr)
		full.NIC = s.nicID
	}
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Addr: &net.TCPAddr{IP: net.IP(full.Addr.AsSlice()), Port: int(port)}, Err: err}
	}
	var wq waiter.Queue
	ep, terr := s.gv.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr("listen", netErr(terr))
	}
	if wildcard {
		ep.SocketOptions().SetV6Only(false) // dual stack: IPv4 arrives on the IPv6 endpoint
	}
	if terr := ep.Bind(full); terr != nil {
		ep.Close()
		return nil, opErr("bind", netErr(terr))
	}
	la, terr := ep.GetLocalAddress()
	if terr != nil {
		ep.Close()
		return nil, opErr("listen", netErr(terr))
	}
	l := &Listener{
		st: s, policy: p, ep: ep, wq: &wq, handle: handle,
		key:   listenKey{addr: full.Addr, port: la.Port},
		addr:  &net.TCPAddr{IP: net.IP(full.Addr.AsSlice()), Port: int(la.Port)},
		conns: make(chan *Conn, s.opts.MaxHandshakes),
		sem:   make(chan struct{}, s.opts.MaxHandshakes),

		active: make(map[netip.Prefix]int),
		parked: make(map[netip.Prefix][]*accepted),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	// Register before listening, so the shim's factory knows the policy
	// when the first SYN arrives.
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		ep.Close()
		return nil, opErr("listen", net.ErrClosed)
	}
	if _, dup := s.listeners[l.key]; dup {
		s.lmu.Unlock()
		ep.Close()
		return nil, opErr("listen", syscall.EADDRINUSE)
	}
	s.listeners[l.key] = l
	s.lmu.Unlock()
	if terr := ep.Listen(listenBacklog); terr != nil {
		s.unregister(l)
		ep.Close()
		return nil, opErr("listen", netErr(terr))
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

func (s *Stack) unregister(l *Listener) {
	s.lmu.Lock()
	if s.listeners[l.key] == l {
		delete(s.listeners, l.key)
	}
	s.lmu.Unlock()
}

// listenerFor returns the listener for a connection to (addr, port): one
// bound to addr, else one bound to every address.
func (s *Stack) listenerFor(addr tcpip.Address, port uint16) *Listener {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l := s.listeners[listenKey{addr: addr, port: port}]; l != nil {
		return l
	}
	return s.listeners[listenKey{port: port}]
}

// passiveFlow is the shim's factory for incoming SYNs: connections to a
// listener get a passive negotiator with the listener's policy.
func (s *Stack) passiveFlow(id gvstack.TransportEndpointID) (flowSpec, bool) {
	l := s.listenerFor(id.LocalAddress, id.LocalPort)
	if l == nil {
		return flowSpec{}, false
	}
	peer := netipFrom(id.RemoteAddress)
	spec := s.passiveSpec(l.policy.ModeFor(netipFrom(id.LocalAddress), id.LocalPort), peer)
	if spec.noSACK = s.rtts.near(peer); spec.noSACK {
		s.counters.NoSACK.Add(1)
	}
	return spec, true
}

// enoListener reports whether a connection with 4-tuple id belongs to a
// listener whose policy may use ENO with its peer.
func (s *Stack) enoListener(id gvstack.TransportEndpointID) bool {
	l := s.listenerFor(id.LocalAddress, id.LocalPort)
	return l != nil && l.policy.ModeFor(netipFrom(id.LocalAddress), id.LocalPort) != eno.ModeOff
}

// passiveSpec builds the negotiator (and tcpcrypt session) of a connection
// we answer.
func (s *Stack) passiveSpec(mode eno.Mode, peer netip.Addr) flowSpec {
	if mode == eno.ModeOff {
		return flowSpec{neg: eno.NewPassive(eno.Config{Mode: eno.ModeOff}), mode: mode}
	}
	sess := s.tcpcrypt().NewSession(peer.Unmap().String(), s.sessionPolicy(peer))
	return flowSpec{neg: eno.NewPassive(eno.Config{Mode: mode, Policy: sess}), sess: sess, mode: mode}
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept waits for the next settled connection. It implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptConn(context.Background())
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptConn waits for the next settled connection or ctx.
func (l *Listener) AcceptConn(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting, resets connections not yet returned by Accept
// and waits for the listener's goroutines.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.st.unregister(l)
		l.ep.Close()
		l.wg.Wait()
		l.hmu.Lock()
		var parked []*accepted
		for src, q := range l.parked {
			parked = append(parked, q...)
			delete(l.parked, src)
		}
		l.nParked = 0
		l.hmu.Unlock()
		for _, a := range parked {
			l.refuse(a)
		}
		// Connections still in the stack's accept queue were reset with
		// the endpoint; nobody will claim their flows (nor those of its
		// half-open ones), so they go now rather than when the sweep
		// finds them unclaimed.
		if fl := l.st.flows; fl != nil {
			fl.dropUnclaimed(func(id gvstack.TransportEndpointID) bool {
				return id.LocalPort == l.key.port &&
					(l.key.addr.Len() == 0 || id.LocalAddress == l.key.addr) &&
					l.st.listenerFor(id.LocalAddress, id.LocalPort) == nil
			})
		}
		for {
			select {
			case c := <-l.conns:
				c.Abort()
			default:
				return
			}
		}
	})
	return nil
}

// Limit events of passive handshakes (limitLog names; see counters.go).
const (
	evHandshakeEvicted    = "handshake evicted: all handshake slots taken"
	evInit1Timeout        = "handshake reset: no Init1 in time"
	evHandshakeSourceBusy = "handshake refused: too many connections waiting from one source"
	evHandshakeBudget     = "handshake reset: source's key-exchange budget spent"
)

// Why a passive handshake was reset before its key exchange.
var (
	errEvicted         = errors.New("stack: handshake evicted for a newer connection (every handshake slot was taken)")
	errInit1Timeout    = errors.New("stack: the peer's first tcpcrypt message did not arrive in time")
	errHandshakeBudget = errors.New("stack: the source's key-exchange budget is spent")
)

// resumeBit is the v bit of the TEP byte B answers with: set, the session
// resumes a cached secret and runs no key exchange (RFC 8548 §3.5).
const resumeBit = 0x80

// Bounds of the connections waiting, without a slot, for their source to
// hold fewer than HandshakesPerSource slots (see admit). Beyond them a
// connection is reset.
const (
	maxParked          = listenBacklog     // per listener
	maxParkedPerSource = listenBacklog / 4 // per source and listener
)

// accepted is a connection accepted from gVisor that has no slot yet.
type accepted struct {
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	id   gvstack.TransportEndpointID
	flow *flow        // its claimed ENO state; nil if it has none
	src  netip.Prefix // its source, as the per-source limits count it
	at   time.Time    // when TCP's handshake completed (Accept)
}

// hsWait is one passive handshake holding a slot of its listener.
type hsWait struct {
	*accepted
	ctx    context.Context // cancelled by eviction (cause errEvicted) or Close
	cancel context.CancelCauseFunc
	// deadline for the peer's first tcpcrypt message: Init1Timeout after
	// the connection got its slot (for a connection that was not parked,
	// after TCP's handshake). Parked, it held no slot; and a client whose
	// Init1 is already queued passes at once whatever the time.
	deadline time.Time

	elem    *list.Element // in Listener.waiting while waiting; guarded by hmu
	evicted bool          // guarded by hmu
}

// acceptLoop accepts TCP connections until Close and starts a settle
// goroutine for each. A connection whose source already holds
// Options.HandshakesPerSource slots waits for one of them (admit); when
// MaxHandshakes slots are taken, a handshake that has waited long for its
// peer's first message is evicted, and if there is none the loop waits for
// a slot.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	s := l.st
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	l.wq.EventRegister(&entry)
	defer l.wq.EventUnregister(&entry)
	for {
		nep, nwq, terr := l.ep.Accept(nil)
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ch:
				continue
			case <-l.ctx.Done():
				return
			}
		}
		if terr != nil {
			return // listener closed
		}
		// Claim the connection's flow before waiting for a handshake
		// slot: from here on the flow table no longer evicts or expires
		// it as a half-open one.
		f, id := s.claimAccepted(nep)
		a := &accepted{ep: nep, wq: nwq, id: id, flow: f, src: sourcePrefix(netipFrom(id.RemoteAddress)), at: time.Now()}
		switch l.admit(a) {
		case admitParked:
			continue
		case admitRefused:
			s.counters.HandshakeSourceBusy.Add(1)
			s.limits.hit(evHandshakeSourceBusy, "source", a.src.String(), "listener", l.addr.String())
			l.refuse(a)
			continue
		}
		if !l.takeSlot() {
			// Closed: a was counted for its source; reset it and any
			// parked connection done hands its place to (Close resets
			// the other parked ones).
			for x := a; x != nil; x = l.done(x.src) {
				l.refuse(x)
			}
			return
		}
		l.start(a)
	}
}

// refuse resets an accepted connection that gets no handshake and forgets
// its ENO state (nobody will claim it).
func (l *Listener) refuse(a *accepted) {
	if a.flow != nil {
		l.st.flows.remove(a.flow)
	}
	a.ep.Abort()
	a.ep.Close()
}

type admission int

const (
	admitNow     admission = iota // counted for its source: take a slot
	admitParked                   // waits for one of its source's handshakes to end
	admitRefused                  // too many waiting: reset it
)

// admit counts a as one of its source's handshakes, or parks it until one
// of them ends (see done). Parking, rather than a reset, keeps a burst of
// connections from one client working; and a source that stalls its
// handshakes holds at most HandshakesPerSource slots, however many
// connections it opens. A parked connection holds no slot and no
// goroutine; its Init1 deadline starts when it gets a slot.
func (l *Listener) admit(a *accepted) admission {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if l.active[a.src] < l.st.opts.HandshakesPerSource {
		l.active[a.src]++
		return admitNow
	}
	q := l.parked[a.src]
	if l.nParked >= maxParked || len(q) >= l.st.parkPerSource {
		return admitRefused
	}
	l.parked[a.src] = append(q, a)
	l.nParked++
	return admitParked
}

// done ends one of src's handshakes. It returns src's oldest parked
// connection, which takes over the ended one's place (and slot), or nil.
func (l *Listener) done(src netip.Prefix) *accepted {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if q := l.parked[src]; len(q) > 0 {
		next := q[0]
		q[0] = nil
		if len(q) == 1 {
			delete(l.parked, src)
		} else {
			l.parked[src] = q[1:]
		}
		l.nParked--
		return next
	}
	if n := l.active[src]; n > 1 {
		l.active[src] = n - 1
	} else {
		delete(l.active, src)
	}
	return nil
}

// inProgress returns how many handshakes hold a slot and how many
// connections are parked.
func (l *Listener) inProgress() (active, parked int) {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	for _, n := range l.active {
		active += n
	}
	return active, l.nParked
}

// takeSlot takes a handshake slot, evicting a handshake that has waited
// long for its peer's first message if every slot is taken; false if the
// listener closed first. Without eviction, peers that complete ENO and
// then stay silent would hold every slot and stall each new handshake for
// as long as they wait. While the slots stay full it tries again every
// evictRetry: handshakes age into eviction, and an evicted one's slot may
// go to its source's next connection (see done), itself evictable.
func (l *Listener) takeSlot() bool {
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case l.sem <- struct{}{}:
			return true
		case <-l.ctx.Done():
			return false
		case <-retry.C:
			l.evictOne()
			retry.Reset(max(l.st.evictAge/4, minEvictRetry))
		}
	}
}

// minEvictRetry bounds how often takeSlot looks for a handshake to evict.
const minEvictRetry = 10 * time.Millisecond

// start runs a's handshake in a slot already taken for it.
func (l *Listener) start(a *accepted) {
	w := &hsWait{accepted: a, deadline: time.Now().Add(l.st.opts.Init1Timeout)}
	w.ctx, w.cancel = context.WithCancelCause(l.ctx)
	l.hmu.Lock()
	w.elem = l.waiting.PushBack(w)
	l.hmu.Unlock()
	l.wg.Add(1)
	l.st.work.Go(func() { l.settle(w) })
}

// endWait unlists w: its peer's first message arrived, or it ended. It
// reports false if w was evicted.
func (l *Listener) endWait(w *hsWait) bool {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	if w.elem != nil {
		l.waiting.Remove(w.elem)
		w.elem = nil
	}
	return !w.evicted
}

// evictOne cancels the oldest waiting handshake that is at least evictAge
// old and whose peer's first message is not queued either; its settle
// goroutine then resets the connection and frees its slot. Younger ones
// are spared: a legitimate client's Init1 arrives right after TCP's
// handshake, so to push one out an attacker would have to open
// MaxHandshakes connections within evictAge, again and again.
func (l *Listener) evictOne() {
	now := time.Now()
	l.hmu.Lock()
	var w *hsWait
	for e := l.waiting.Front(); e != nil; e = e.Next() {
		c := e.Value.(*hsWait)
		if now.Sub(c.at) >= l.st.evictAge && !init1Queued(c.ep) {
			w = c
			break
		}
	}
	if w == nil {
		l.hmu.Unlock()
		return
	}
	l.waiting.Remove(w.elem)
	w.elem, w.evicted = nil, true
	l.hmu.Unlock()
	w.cancel(errEvicted)
	l.st.counters.HandshakesEvicted.Add(1)
	l.st.limits.hit(evHandshakeEvicted, "listener", l.addr.String(), "slots", cap(l.sem))
}

// waitingHandshakes returns how many handshakes wait for a first message.
func (l *Listener) waitingHandshakes() int {
	l.hmu.Lock()
	defer l.hmu.Unlock()
	return l.waiting.Len()
}

// settle runs ENO's outcome on one accepted connection and queues it for
// Accept, or hands it to l.handle once the handshake slot is free again
// (or taken over by a parked connection of the same source). It exits
// when the connection is queued, handled or dropped.
func (l *Listener) settle(w *hsWait) {
	defer l.wg.Done()
	c := l.settleConn(w)
	l.endWait(w)
	w.cancel(nil)
	if c != nil && l.handle == nil {
		l.queue(c) // holding the slot: Accept's backlog stays bounded
	}
	if next := l.done(w.src); next != nil {
		l.start(next) // our slot is its slot
	} else {
		<-l.sem
	}
	if c != nil && l.handle != nil {
		l.handle(c)
	}
}

// claimAccepted finds and claims the flow of a connection the stack
// accepted: nil if it has none (or the stack has no shim).
func (s *Stack) claimAccepted(ep tcpip.Endpoint) (*flow, gvstack.TransportEndpointID) {
	info, _ := ep.Info().(*gvstack.TransportEndpointInfo)
	var id gvstack.TransportEndpointID
	if info != nil {
		id = info.ID
	}
	if s.flows == nil {
		return nil, id
	}
	f := s.flows.lookup(id)
	if f == nil || !s.flows.claim(f) {
		return nil, id
	}
	return f, id
}

// limitNoFlowAtAccept is the limitLog event of a connection accepted
// without its ENO state.
const limitNoFlowAtAccept = "ENO state of an accepted connection was dropped: connection reset"

// settleConn runs ENO's outcome on one accepted connection, whose claimed
// flow is w.flow (nil: none): the settled connection, or nil if it was
// dropped.
func (l *Listener) settleConn(w *hsWait) *Conn {
	s := l.st
	ep, wq, id, f := w.ep, w.wq, w.id, w.flow
	c := &Conn{
		stream: newTCPStream(ep, wq, s.writes.forAddr(id.RemoteAddress), s.work),
		neg:    Negotiation{Mode: l.policy.ModeFor(netipFrom(id.LocalAddress), id.LocalPort)},
		id: flowID{
			Local:  netip.AddrPortFrom(netipFrom(id.LocalAddress), id.LocalPort).String(),
			Remote: netip.AddrPortFrom(netipFrom(id.RemoteAddress), id.RemotePort).String(),
		},
	}
	peer := netipFrom(id.RemoteAddress)
	c.stream.lossy = func() { s.rtts.lost(peer) }
	c.Conn = c.stream
	if f == nil {
		reason, detail := eno.ReasonLocal, "stack has no ENO shim"
		if s.flows == nil {
			c.neg.Reason, c.neg.Detail = reason, detail
			if c.neg.Mode == eno.ModeRequired {
				s.counters.RequiredRefusals.Add(1)
				c.Abort()
				return nil
			}
			return c
		}
		s.counters.NoFlowAtAccept.Add(1)
		c.neg.Reason, c.neg.Detail = reason, "no ENO state for the connection"
		if c.neg.Mode == eno.ModeOff {
			return c // plain whatever its SYN said
		}
		// Decision: its flow was evicted or expired (see flowTable), or
		// its SYN passed without one. Whether it offered ENO, and what
		// our SYN-ACK answered, is unknown: going on plain could
		// downgrade a connection both ends meant to encrypt. Reset it;
		// the client may connect again.
		s.limits.hit(limitNoFlowAtAccept, "listener", l.addr.String())
		c.Abort()
		return nil
	}
	c.neg.Mode = f.spec.mode
	s.observeHandshake(netipFrom(id.RemoteAddress), f)
	c.release = func() { s.flows.remove(f) }
	sess, _ := f.spec.sess.(*tcpcrypt.Session)
	ctx, err := l.awaitPeer(w, c, f)
	if err != nil {
		s.abortConn(c, sess)
		s.log.Debug("inbound connection reset before its key exchange", "conn", c.id.Remote, "err", err)
		return nil
	}
	if err := s.secure(ctx, c, f, sess, nil); err != nil {
		s.log.Debug("inbound connection dropped", "conn", c.id.Remote, "err", err)
		return nil
	}
	return c
}

// awaitPeer runs the per-source limits of a passive handshake before its
// key exchange, and returns the context the handshake runs under. A fresh
// handshake waits, evictable, until the peer's whole Init1 is queued (by
// w.deadline), then takes the TEP's cost from the source's budget.
// Fallbacks and resumed sessions cost no key exchange and return at once;
// secure settles them. On error nothing was sent and the caller resets the
// connection.
func (l *Listener) awaitPeer(w *hsWait, c *Conn, f *flow) (context.Context, error) {
	s := l.st
	timer := time.NewTimer(time.Until(w.deadline))
	defer timer.Stop()
	select {
	case <-f.ready: // first: a connection parked past its deadline may be settled
	default:
		select {
		case <-f.ready:
		case <-w.ctx.Done():
			return nil, context.Cause(w.ctx)
		case <-timer.C:
			// ENO settles with the segment that completed TCP's
			// handshake; if it has not by now, reset rather than guess
			// (never plain).
			return nil, l.init1Timeout()
		}
	}
	res, err := f.spec.neg.Result()
	// A passive opener sends b = 1 and is always host B (RFC 8547 §4.2);
	// only B receives Init1.
	if err != nil || res.TEPByte&resumeBit != 0 || res.Role != eno.RoleB {
		if !l.endWait(w) {
			// Evicted just before: reset it as eviction promised,
			// rather than leave the outcome to secure's race between
			// the settled flow and the cancelled context.
			return nil, errEvicted
		}
		return w.ctx, nil
	}
	if err := l.waitInit1(w, c.stream, timer); err != nil {
		return nil, err
	}
	if !l.endWait(w) {
		return nil, errEvicted
	}
	if !s.hs.spend(w.src, tepCost(kex.ID(res.TEP))) {
		s.counters.HandshakeCPULimited.Add(1)
		s.limits.hit(evHandshakeBudget, "source", w.src.String(), "tep", kex.ID(res.TEP).String(),
			"budget_per_second", s.opts.HandshakeBudget)
		return nil, errHandshakeBudget
	}
	return w.ctx, nil
}

func (l *Listener) init1Timeout() error {
	l.st.counters.Init1Timeouts.Add(1)
	l.st.limits.hit(evInit1Timeout, "listener", l.addr.String(), "timeout", l.st.opts.Init1Timeout)
	return errInit1Timeout
}

// waitInit1 waits until the stream's receive queue holds the peer's whole
// Init1 (or holds something the handshake will refuse at once), peeking
// without consuming: the handshake then reads it without waiting, so the
// slot is only held by a peer that is still sending. It fails when timer
// fires or w is evicted or closed.
func (l *Listener) waitInit1(w *hsWait, t *tcpStream, timer *time.Timer) error {
	entry, ch := waiter.NewChannelEntry(waitReadEvents)
	t.wq.EventRegister(&entry)
	defer t.wq.EventUnregister(&entry)
	for !init1Queued(t.ep) {
		select {
		case <-ch:
		case <-w.ctx.Done():
			return context.Cause(w.ctx)
		case <-timer.C:
			return l.init1Timeout()
		}
	}
	return nil
}

// init1Queued reports whether ep's receive queue holds a whole Init1
// message (RFC 8548 §4.3: magic, message_len, then the rest), or whether
// waiting is pointless: the header is not Init1's or its length is out of
// range (the handshake refuses it at once), or the peer can send no more.
func init1Queued(ep tcpip.Endpoint) bool {
	var hdr [8]byte
	buf := tcpip.SliceWriter(hdr[:])
	res, terr := ep.Read(&buf, tcpip.ReadOptions{Peek: true})
	if terr != nil {
		_, block := terr.(*tcpip.ErrWouldBlock)
		return !block
	}
	open := tcp.EndpointState(ep.State()) == tcp.StateEstablished
	if res.Count < len(hdr) {
		return !open
	}
	if binary.BigEndian.Uint32(hdr[:4]) != tcpcrypt.Init1Magic {
		return true
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n < uint32(len(hdr)) || n > tcpcrypt.MaxMessageLen {
		return true
	}
	queued, terr := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	return terr != nil || queued >= int(n) || !open
}

// queue hands c to Accept, or resets it if the listener closes first.
func (l *Listener) queue(c *Conn) {
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Abort()
	}
}
