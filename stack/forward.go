package stack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// ForwarderOptions configure the outbound forwarder.
type ForwarderOptions struct {
	// Egress4 and Egress6 are the source addresses of outer connections
	// (the stack needs Spoofing if they are not assigned to it). An
	// invalid address means: the route's source address.
	Egress4, Egress6 netip.Addr
	// Policy gives the ENO mode per original destination.
	Policy *Policy
	// MaxInFlight bounds connections whose outer leg is being set up
	// (default 1024); more SYNs are dropped (gVisor counts them in
	// TCP.ForwardMaxInFlightDrop) and the client retransmits.
	MaxInFlight int
	// DialTimeout bounds the outer dial, tcpcrypt handshake included
	// (default 30s).
	DialTimeout time.Duration
	// AcceptTimeout bounds the inner handshake once the outer connection
	// stands (default 10s): a client that never acknowledges our SYN-ACK
	// (gone, or its SYN spoofed) would otherwise keep both legs for the
	// whole SYN-ACK retransmission schedule, two minutes. 10 s leaves room
	// for three retransmissions on a lossy routed link.
	AcceptTimeout time.Duration
}

// Forwarder transparently upgrades TCP connections routed into the stack:
// for every SYN to an address that no listener serves, it dials the
// original destination from the egress address with ENO offered, and only
// then completes the inner handshake (Complete(false)), or resets it
// (Complete(true)) if the dial failed, so refusals and timeouts reach the
// application as they would without us. Then it relays.
//
// gVisor starts one goroutine per SYN (at most MaxInFlight setting up);
// each becomes the owner of its relay. Close resets every relayed
// connection and waits for those goroutines.
type Forwarder struct {
	st   *Stack
	opts ForwarderOptions

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool           // guarded by mu
	wg     sync.WaitGroup // handler goroutines; Add under mu
	// accepting: inner connections whose handshake CreateEndpoint is
	// running (it waits for the client's ACK, which may never come);
	// guarded by mu.
	accepting map[gvstack.TransportEndpointID]struct{}
}

// StartForwarder installs the outbound forwarder as the stack's handler for
// TCP segments no endpoint claims. The stack should be promiscuous (to see
// SYNs for any destination) and spoofing (to answer as that destination).
func (s *Stack) StartForwarder(o ForwarderOptions) (*Forwarder, error) {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.AcceptTimeout <= 0 {
		o.AcceptTimeout = 10 * time.Second
	}
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		return nil, errors.New("stack: closed")
	}
	if s.forwarder != nil {
		s.lmu.Unlock()
		return nil, errors.New("stack: forwarder already running")
	}
	f := &Forwarder{st: s, opts: o, accepting: make(map[gvstack.TransportEndpointID]struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	s.forwarder = f
	s.lmu.Unlock()
	fwd := tcp.NewForwarder(s.gv, 0, o.MaxInFlight, f.handle)
	h := fwd.HandlePacket
	s.unclaimed.Store(&h)
	return f, nil
}

// Close stops forwarding new connections, resets the relayed ones and
// waits for every handler goroutine.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	f.st.unclaimed.Store(nil)
	f.cancel() // aborts dials and relays
	f.waitAborting()
	f.st.lmu.Lock()
	if f.st.forwarder == f {
		f.st.forwarder = nil
	}
	f.st.lmu.Unlock()
	return nil
}

// abortEvery is how often Close aborts the inner handshakes still running
// while it waits for the handlers.
const abortEvery = 50 * time.Millisecond

// waitAborting waits for the handler goroutines. A handler may be inside
// CreateEndpoint, which completes the inner TCP handshake and waits for the
// client's ACK: a client gone (or the host's routes already undone at
// shutdown) leaves it there for the whole SYN-ACK retransmission schedule,
// a minute and more (TestStopUnderInboundTraffic). Context cannot reach it,
// so the handshake's endpoint, found among the stack's, is aborted; until
// the handlers are done, since one may enter CreateEndpoint after a pass.
func (f *Forwarder) waitAborting() {
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	t := time.NewTicker(abortEvery)
	defer t.Stop()
	for {
		f.abortAccepting()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// abortAccepting aborts the endpoints of the inner handshakes in progress.
func (f *Forwarder) abortAccepting() {
	f.mu.Lock()
	n := len(f.accepting)
	f.mu.Unlock()
	if n == 0 {
		return
	}
	f.abortWhere(func(id gvstack.TransportEndpointID) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, mine := f.accepting[id]
		return mine
	})
}

// abortWhere aborts the stack's endpoints whose 4-tuple match reports.
func (f *Forwarder) abortWhere(match func(gvstack.TransportEndpointID) bool) {
	for _, ep := range f.st.gv.RegisteredEndpoints() {
		te, ok := ep.(tcpip.Endpoint) // *tcp.Endpoint is both
		if !ok {
			continue
		}
		info, ok := te.Info().(*gvstack.TransportEndpointInfo)
		if ok && match(info.ID) {
			ep.Abort()
		}
	}
}

// handle runs on the goroutine gVisor starts for each SYN. The work, deep
// into both handshakes, goes to one of the stack's workers, whose stack has
// already grown (see workers).
func (f *Forwarder) handle(r *tcp.ForwarderRequest) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		r.Complete(true)
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	f.st.work.Go(func() {
		defer f.wg.Done()
		if err := f.forward(r); err != nil {
			f.st.log.Debug("forward", "err", err)
		}
	})
}

func (f *Forwarder) forward(r *tcp.ForwarderRequest) error {
	s := f.st
	id := r.ID()
	dst := netip.AddrPortFrom(netipFrom(id.LocalAddress), id.LocalPort)
	client := netip.AddrPortFrom(netipFrom(id.RemoteAddress), id.RemotePort)
	if ca := client.Addr().Unmap(); ca.IsValid() && (ca == f.opts.Egress4 || ca == f.opts.Egress6) {
		// One of our own outer SYNs, sent back into the device by host
		// routing (no route for dst outside it). Forwarding it would
		// dial again, and again: refuse it, so the outer dial fails at
		// once and the application sees a refusal, not a loop.
		s.counters.ForwardLoops.Add(1)
		r.Complete(true)
		return fmt.Errorf("SYN from our own egress address %v to %v: routing loop, no route to %v outside the device", client, dst, dst.Addr())
	}
	// A relay slot before anything is spent on the connection; over the
	// limit the application's SYN is refused (RST), as a host at its
	// connection limit would.
	release, err := s.acquireRelay(Outbound, client.Addr())
	if err != nil {
		r.Complete(true)
		return fmt.Errorf("SYN from %v to %v refused: %w", client, dst, err)
	}
	relaying := false
	defer func() {
		if !relaying {
			release()
		}
	}()
	e := s.table.add(Outbound, Tuple{Local: dst, Remote: client}, Tuple{Remote: dst}, time.Now())

	src := f.opts.Egress4
	if dst.Addr().Is6() {
		src = f.opts.Egress6
	}
	// The outer dial runs on a worker. Once its TCP handshake is done and
	// ENO has enabled tcpcrypt, the inner handshake goes on while
	// tcpcrypt's runs: a fresh key exchange is a round trip (Init1, Init2),
	// and the application's first bytes then wait in the inner connection
	// instead of its handshake and first write following that round trip.
	// Until then the inner SYN stays unanswered, so a refused or failed
	// outer connection is refused to the application too.
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.DialTimeout)
	defer cancel()
	type dialed struct {
		c   *Conn
		err error
	}
	dialDone := make(chan dialed, 1)
	encrypting := make(chan struct{})
	s.work.Go(func() {
		c, err := s.dial(ctx, netip.AddrPortFrom(src, 0), dst, f.opts.Policy, func() { close(encrypting) })
		dialDone <- dialed{c, err}
	})
	var (
		outer    *Conn
		outerErr error
		dialEnd  bool
	)
	end := func(d dialed) {
		dialEnd, outer, outerErr = true, d.c, d.err
		if outerErr != nil {
			outerErr = fmt.Errorf("outer dial %v: %w", dst, outerErr)
		} else {
			s.table.setOuter(e, tupleOf(outer), outer.Negotiation())
		}
	}
	// waitOuter waits for the end of the dial: nil with outer set, or the
	// dial's error.
	waitOuter := func() error {
		if !dialEnd {
			end(<-dialDone)
		}
		return outerErr
	}
	select {
	case <-encrypting:
	case d := <-dialDone:
		// A handshake that failed after ENO enabled tcpcrypt may be seen
		// here first when both channels are ready; it takes the same
		// path as when encrypting is seen first (the inner handshake,
		// then a reset), so the outcome does not depend on scheduling.
		end(d)
		select {
		case <-encrypting:
		default:
			if outerErr != nil {
				s.finish(e, outerErr)
				r.Complete(true) // RST: the application sees a refusal, as without us
				return outerErr
			}
		}
	}
	// abortOuter gives up on the outer leg, whether it stands or is still
	// in its tcpcrypt handshake.
	abortOuter := func() {
		cancel()
		if waitOuter() == nil {
			outer.Abort()
		}
	}

	var wq waiter.Queue
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		s.finish(e, errors.New("forwarder closed"))
		r.Complete(true)
		abortOuter()
		return nil
	}
	f.accepting[id] = struct{}{}
	f.mu.Unlock()
	giveUp := time.AfterFunc(f.opts.AcceptTimeout, func() {
		f.abortWhere(func(x gvstack.TransportEndpointID) bool { return x == id })
	})
	ep, terr := r.CreateEndpoint(&wq)
	if !giveUp.Stop() && terr == nil {
		// The timeout struck as the handshake completed: its abort may
		// have hit the new endpoint. Treat the connection as timed out.
		ep.Abort()
		ep.Close()
		terr = &tcpip.ErrTimeout{}
	}
	f.mu.Lock()
	delete(f.accepting, id)
	f.mu.Unlock()
	if terr != nil {
		err := fmt.Errorf("inner endpoint for %v: %w", client, netErr(terr))
		s.finish(e, err)
		r.Complete(true)
		abortOuter()
		return err
	}
	r.Complete(false)
	if err := waitOuter(); err != nil {
		// The tcpcrypt handshake failed after the inner one: the
		// application sees a reset instead of a refusal.
		ep.Abort()
		ep.Close()
		s.finish(e, err)
		return err
	}
	inner := &Conn{stream: newTCPStream(ep, &wq, s.writes.forPeer(client.Addr().Unmap().Is6()), s.work), neg: Negotiation{Mode: eno.ModeOff, Reason: eno.ReasonPolicyOff}}
	inner.Conn = inner.stream
	inner.stream.noTimeWait = true // see tcpStream.dropTimeWait
	inner.id = flowID{Local: dst.String(), Remote: client.String()}
	// Keepalive on both legs: the outer one to notice a peer gone, the
	// inner one a client host gone (routed mode); the relay then resets
	// both.
	s.setKeepalive(outer)
	s.setKeepalive(inner)
	// The relay outlives this handler goroutine (see startRelay); it
	// keeps the forwarder's WaitGroup until it ends. Adding while this
	// handler holds a count is safe against a concurrent Close's Wait.
	f.wg.Add(1)
	relaying = true // the relay gives the slot back
	s.startRelay(f.ctx, e, inner, outer, func(err error) {
		release()
		if err != nil {
			s.relayEnded(Outbound, outer.String(), err)
			s.log.Debug("outbound relay ended", "conn", outer.String(), "err", err)
		}
		f.wg.Done()
	})
	return nil
}
