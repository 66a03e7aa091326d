package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
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
// time. Close stops them all and waits.
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
		return nil, opErr("listen", errors.New(terr.String()))
	}
	if wildcard {
		ep.SocketOptions().SetV6Only(false) // dual stack: IPv4 arrives on the IPv6 endpoint
	}
	if terr := ep.Bind(full); terr != nil {
		ep.Close()
		return nil, opErr("bind", errors.New(terr.String()))
	}
	la, terr := ep.GetLocalAddress()
	if terr != nil {
		ep.Close()
		return nil, opErr("listen", errors.New(terr.String()))
	}
	l := &Listener{
		st: s, policy: p, ep: ep, wq: &wq, handle: handle,
		key:   listenKey{addr: full.Addr, port: la.Port},
		addr:  &net.TCPAddr{IP: net.IP(full.Addr.AsSlice()), Port: int(la.Port)},
		conns: make(chan *Conn, s.opts.MaxHandshakes),
		sem:   make(chan struct{}, s.opts.MaxHandshakes),
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
		return nil, opErr("listen", errors.New("address already in use"))
	}
	s.listeners[l.key] = l
	s.lmu.Unlock()
	if terr := ep.Listen(listenBacklog); terr != nil {
		s.unregister(l)
		ep.Close()
		return nil, opErr("listen", errors.New(terr.String()))
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

// acceptLoop accepts TCP connections until Close and starts a settle
// goroutine for each, waiting while MaxHandshakes are running.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
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
		f, id := l.st.claimAccepted(nep)
		select {
		case l.sem <- struct{}{}:
		case <-l.ctx.Done():
			if f != nil {
				l.st.flows.remove(f)
			}
			nep.Abort()
			nep.Close()
			return
		}
		l.wg.Add(1)
		l.st.work.Go(func() { l.settle(nep, nwq, f, id) })
	}
}

// settle runs ENO's outcome on one accepted connection and queues it for
// Accept, or hands it to l.handle once the handshake slot is free again. It
// exits when the connection is queued, handled or dropped.
func (l *Listener) settle(ep tcpip.Endpoint, wq *waiter.Queue, f *flow, id gvstack.TransportEndpointID) {
	defer l.wg.Done()
	c := l.settleConn(ep, wq, f, id)
	if c != nil && l.handle == nil {
		l.queue(c) // holding the slot: Accept's backlog stays bounded
	}
	<-l.sem
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
// flow is f (nil: none): the settled connection, or nil if it was dropped.
func (l *Listener) settleConn(ep tcpip.Endpoint, wq *waiter.Queue, f *flow, id gvstack.TransportEndpointID) *Conn {
	s := l.st
	c := &Conn{
		stream: newTCPStream(ep, wq, s.writes.forAddr(id.RemoteAddress), s.work),
		neg:    Negotiation{Mode: l.policy.ModeFor(netipFrom(id.LocalAddress), id.LocalPort)},
		id: flowID{
			Local:  netip.AddrPortFrom(netipFrom(id.LocalAddress), id.LocalPort).String(),
			Remote: netip.AddrPortFrom(netipFrom(id.RemoteAddress), id.RemotePort).String(),
		},
	}
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
	if err := s.secure(l.ctx, c, f, sess, nil); err != nil {
		s.log.Debug("inbound connection dropped", "conn", c.id.Remote, "err", err)
		return nil
	}
	return c
}

// queue hands c to Accept, or resets it if the listener closes first.
func (l *Listener) queue(c *Conn) {
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Abort()
	}
}
