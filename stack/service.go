package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// BackendDialer connects an inbound connection to its backend (usually a
// local kernel socket). It may write a preamble (e.g. a PROXY header
// carrying c's session ID) before returning. A returned *net.TCPConn is
// reset with SO_LINGER 0 when the relay aborts. A dialer that resolves
// names or dials kernel sockets should pass every address to
// Stack.CheckBackend before connecting to it.
type BackendDialer func(ctx context.Context, c *Conn) (net.Conn, error)

// BackendLoopError is CheckBackend's refusal: the backend address is
// routed into the device, so a connection to it would come back to the
// stack (to the same service, whose next backend dial would do the same).
type BackendLoopError struct {
	Addr netip.AddrPort
	Why  string // what routes it into the device (a configuration key)
}

func (e *BackendLoopError) Error() string {
	return fmt.Sprintf("backend %v is routed into the device (%s): dialing it would loop back to tcpcryptd; point the backend at the real server, e.g. 127.0.0.1:port", e.Addr, e.Why)
}

// CheckBackend refuses a backend address that the host routes into the
// device: one of the stack's own addresses (service or egress addresses),
// or one RelayOptions.RoutedIn names. A backend there is a loop: each
// connection to the service dials the service again, and one client
// connection chains connections until descriptors run out. Refusals are
// counted (Counters.BackendLoops) and logged at most once per interval.
func (s *Stack) CheckBackend(ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	why := ""
	// The NIC's configured addresses, not gVisor's CheckLocalAddress,
	// which with spoofing on (the forwarder) says yes to every address.
	for _, p := range s.opts.Addresses {
		if p.Addr().Unmap() == a {
			why = "an address of the stack"
		}
	}
	if f := s.opts.Relays.RoutedIn; why == "" && f != nil && a.IsValid() {
		why = f(a)
	}
	if why == "" {
		return nil
	}
	s.counters.BackendLoops.Add(1)
	s.limits.hit(evBackendLoop, "backend", ap.String(), "routed_by", why)
	return &BackendLoopError{Addr: ap, Why: why}
}

// Service terminates inbound connections on one address and port: it
// accepts them with ENO answered (host B) and relays the decrypted stream
// to a backend.
//
// Each connection's backend dial runs on the goroutine that settled it
// (Listener.handle), and its relay then runs on its own. Close stops
// accepting, resets the relayed connections and waits for every goroutine.
type Service struct {
	st      *Stack
	l       *Listener
	dial    BackendDialer
	timeout time.Duration

	ctx       context.Context // cancelled by Close: aborts dials and relays
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Serve listens on addr and port with policy p and relays every accepted
// connection to the backend dial returns. dialTimeout bounds dial
// (default 10s).
func (s *Stack) Serve(addr netip.Addr, port uint16, p *Policy, dial BackendDialer, dialTimeout time.Duration) (*Service, error) {
	if dial == nil {
		return nil, errors.New("stack: Serve needs a backend dialer")
	}
	if dialTimeout <= 0 {
		dialTimeout = 10 * time.Second
	}
	sv := &Service{st: s, dial: dial, timeout: dialTimeout}
	sv.ctx, sv.cancel = context.WithCancel(context.Background())
	l, err := s.listen(addr, port, p, sv.serve)
	if err != nil {
		sv.cancel()
		return nil, err
	}
	sv.l = l
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		sv.Close()
		return nil, errors.New("stack: closed")
	}
	s.services[sv] = struct{}{}
	s.lmu.Unlock()
	return sv, nil
}

// Addr returns the service's listening address.
func (sv *Service) Addr() net.Addr { return sv.l.Addr() }

// Close stops the service, resets its relayed connections and waits.
func (sv *Service) Close() error {
	sv.closeOnce.Do(func() {
		sv.cancel()
		sv.l.Close()
		sv.wg.Wait()
		sv.st.lmu.Lock()
		delete(sv.st.services, sv)
		sv.st.lmu.Unlock()
	})
	return nil
}

// serve owns one inbound connection: backend dial, then relay. It runs
// within the listener's settle, which Close waits for (l.Close) before it
// waits for the relays (sv.wg).
func (sv *Service) serve(c *Conn) {
	s := sv.st
	// Over the relay limits the client is reset before its backend is
	// dialed (its handshake is already done: the listener settles
	// connections before handing them over).
	release, err := s.acquireRelay(Inbound, tupleOf(c).Remote.Addr())
	if err != nil {
		c.Abort()
		s.log.Debug("inbound connection refused", "conn", c.String(), "err", err)
		return
	}
	relaying := false
	defer func() {
		if !relaying {
			release()
		}
	}()
	s.setKeepalive(c)
	e := s.table.add(Inbound, Tuple{}, tupleOf(c), time.Now())
	s.table.setOuter(e, tupleOf(c), c.Negotiation())
	ctx, cancel := context.WithTimeout(sv.ctx, sv.timeout)
	b, err := sv.dial(ctx, c)
	cancel()
	if err != nil {
		c.Abort()
		s.finish(e, fmt.Errorf("backend dial: %w", err))
		s.log.Debug("backend dial failed", "conn", c.String(), "err", err)
		return
	}
	s.table.setInner(e, tupleOf(b))
	var leg relayLeg = &netLeg{Conn: b}
	if rl, ok := b.(relayLeg); ok {
		leg = rl
	}
	// The relay outlives this goroutine (see startRelay) and holds the
	// service's WaitGroup until it ends.
	sv.wg.Add(1)
	relaying = true // the relay gives the slot back
	s.startRelay(sv.ctx, e, leg, c, func(err error) {
		release()
		if err != nil {
			s.relayEnded(Inbound, c.String(), err)
			s.log.Debug("inbound relay ended", "conn", c.String(), "err", err)
		}
		sv.wg.Done()
	})
}
