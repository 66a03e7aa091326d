package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// settleTimeout bounds the wait, after TCP's handshake, for the shim to see
// the segment that settles ENO (our third segment). gVisor sends it before
// or right after Connect returns, so this only guards against surprises.
const settleTimeout = 5 * time.Second

// Dial opens a TCP connection from src (port 0: an ephemeral port; an
// invalid address: the route's source address) to dst through s, with the
// ENO mode p gives for dst. See Stack.Dial.
func Dial(ctx context.Context, s *Stack, src, dst netip.AddrPort, p *Policy) (*Conn, error) {
	return s.Dial(ctx, src, dst, p)
}

// Dial opens a TCP connection from src to dst, offering ENO as policy p
// says for dst. When ENO enables tcpcrypt the tcpcrypt handshake runs
// before Dial returns, and the Conn is encrypted. When ENO falls back the
// Conn is plain TCP, unless the mode is eno.ModeRequired: then the
// connection is reset and the error is a *RefusedError.
//
// The local port is bound before the SYN is sent, so the shim knows the
// connection's 4-tuple (and its negotiator) when the SYN leaves.
func (s *Stack) Dial(ctx context.Context, src, dst netip.AddrPort, p *Policy) (*Conn, error) {
	return s.dial(ctx, src, dst, p, nil)
}

// dial is Dial; encrypting, if non-nil, is called once TCP's handshake is
// done and ENO has enabled tcpcrypt, as the tcpcrypt handshake starts (see
// Forwarder.forward).
func (s *Stack) dial(ctx context.Context, src, dst netip.AddrPort, p *Policy, encrypting func()) (*Conn, error) {
	mode := p.ModeFor(dst.Addr(), dst.Port())
	if mode == eno.ModeRequired && s.shim == nil {
		return nil, &RefusedError{Reason: eno.ReasonLocal, Detail: "stack has no ENO shim"}
	}
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Source: net.TCPAddrFromAddrPort(src), Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	proto := protoOf(dst.Addr())
	var wq waiter.Queue
	ep, terr := s.gv.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, opErr("dial", netErr(terr))
	}
	local := tcpip.FullAddress{NIC: s.nicID, Port: src.Port()}
	if src.Addr().IsValid() && !src.Addr().IsUnspecified() {
		local.Addr = addrFrom(src.Addr())
	} else {
		a, err := s.sourceFor(dst.Addr())
		if err != nil {
			ep.Close()
			return nil, opErr("dial", err)
		}
		local.Addr = a
	}
	if terr := ep.Bind(local); terr != nil {
		ep.Close()
		return nil, opErr("bind", netErr(terr))
	}
	bound, terr := ep.GetLocalAddress()
	if terr != nil {
		ep.Close()
		return nil, opErr("bind", netErr(terr))
	}
	id := gvstack.TransportEndpointID{
		LocalPort: bound.Port, LocalAddress: bound.Addr,
		RemotePort: dst.Port(), RemoteAddress: addrFrom(dst.Addr()),
	}

	var f *flow
	var sess *tcpcrypt.Session
	if s.shim != nil {
		spec, ss := s.activeSpec(mode, dst.Addr())
		if spec.noSACK = s.rtts.near(dst.Addr()); spec.noSACK {
			s.counters.NoSACK.Add(1)
		}
		var err error
		if f, err = s.flows.insert(id, flowActive, spec); err != nil {
			if ss != nil {
				ss.Abandon()
			}
			ep.Close()
			return nil, opErr("dial", err)
		}
		s.flows.claim(f) // the connection owns the session
		sess = ss
	}
	fail := func(err error) (*Conn, error) {
		ep.Close()
		if sess != nil {
			sess.Abandon()
		}
		if f != nil {
			s.flows.remove(f)
		}
		return nil, err
	}

	if err := connect(ctx, ep, &wq, tcpip.FullAddress{NIC: s.nicID, Addr: id.RemoteAddress, Port: id.RemotePort}); err != nil {
		return fail(opErr("dial", err))
	}
	if f != nil {
		s.observeHandshake(dst.Addr(), f)
	}
	c := &Conn{
		stream: newTCPStream(ep, &wq, s.writes.forAddr(id.RemoteAddress), s.work),
		neg:    Negotiation{Mode: mode},
		id:     flowID{Local: netip.AddrPortFrom(netipFrom(id.LocalAddress), id.LocalPort).String(), Remote: dst.String()},
	}
	peer := dst.Addr()
	c.stream.lossy = func() { s.rtts.lost(peer) }
	c.Conn = c.stream
	if f == nil {
		c.neg.Reason = eno.ReasonLocal
		c.neg.Detail = "stack has no ENO shim"
		return c, nil
	}
	c.release = func() { s.flows.remove(f) }
	if err := s.secure(ctx, c, f, sess, encrypting); err != nil {
		return nil, opErr("dial", err)
	}
	return c, nil
}

// connect runs ep.Connect and waits for the handshake or ctx.
func connect(ctx context.Context, ep tcpip.Endpoint, wq *waiter.Queue, remote tcpip.FullAddress) error {
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr := ep.Connect(remote)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			return ctxErr(ctx)
		case <-ch:
		}
		terr = ep.LastError()
	}
	return netErr(terr)
}

// sourceFor returns the source address the stack would use towards dst.
func (s *Stack) sourceFor(dst netip.Addr) (tcpip.Address, error) {
	r, terr := s.gv.FindRoute(s.nicID, tcpip.Address{}, addrFrom(dst), protoOf(dst), false)
	if terr != nil {
		return tcpip.Address{}, fmt.Errorf("no route to %v: %w", dst, netErr(terr))
	}
	defer r.Release()
	return r.LocalAddress(), nil
}

// activeSpec builds the negotiator (and tcpcrypt session) of a dial.
func (s *Stack) activeSpec(mode eno.Mode, peer netip.Addr) (flowSpec, *tcpcrypt.Session) {
	if mode == eno.ModeOff {
		return flowSpec{neg: eno.NewActive(eno.Config{Mode: eno.ModeOff}), mode: mode}, nil
	}
	sess := s.tcpcrypt().NewSession(peer.Unmap().String(), s.sessionPolicy(peer))
	neg := eno.NewActive(eno.Config{Mode: mode, Offer: sess.Offer(), Policy: sess})
	return flowSpec{neg: neg, sess: sess, mode: mode}, sess
}

// secure settles a connection whose TCP handshake is done: it waits for the
// flow's ENO outcome, then runs tcpcrypt (Enabled), keeps it plain
// (Disabled, opportunistic) or resets it (Disabled, required). On error c
// has been reset and its flow released. encrypting, if non-nil, is called
// as the tcpcrypt handshake starts.
func (s *Stack) secure(ctx context.Context, c *Conn, f *flow, sess *tcpcrypt.Session, encrypting func()) error {
	settle := time.NewTimer(settleTimeout)
	defer settle.Stop()
	select {
	case <-f.ready:
	case <-ctx.Done():
		s.abortConn(c, sess)
		return ctxErr(ctx)
	case <-settle.C:
		// Defensive: the segment that settles ENO passes the shim before
		// Connect or Accept returns. If it somehow did not, turn ENO off so
		// the shim stops sending it and both ends can agree on plain TCP;
		// if encryption got enabled meanwhile, Disable refuses and we go on.
		if d, ok := f.spec.neg.(interface{ Disable(eno.Reason, string) bool }); ok {
			d.Disable(eno.ReasonLocal, "negotiation did not settle in time")
		}
	}
	if f.wasLost() {
		// The flow was dropped before it settled (evicted, expired,
		// reset or replaced): the outcome is unknown, and plain TCP
		// could be a downgrade. Reset the connection.
		s.counters.NoFlowAtAccept.Add(1)
		s.abortConn(c, sess)
		return errors.New("stack: ENO state dropped before the negotiation settled")
	}
	res, err := f.spec.neg.Result()
	if err != nil {
		var fe *eno.FallbackError
		reason, detail := eno.ReasonLocal, "negotiation did not settle"
		if errors.As(err, &fe) {
			reason, detail = fe.Reason, fe.Detail
		}
		if sess != nil {
			sess.Abandon()
		}
		c.neg.Reason, c.neg.Detail = reason, detail
		if c.neg.Mode == eno.ModeRequired {
			s.counters.RequiredRefusals.Add(1)
			s.abortConn(c, nil)
			return &RefusedError{Reason: reason, Detail: detail}
		}
		return nil
	}
	if sess == nil { // unreachable: Enabled needs a TEP policy
		s.abortConn(c, nil)
		return errors.New("stack: ENO enabled without a tcpcrypt session")
	}
	hctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	if encrypting != nil {
		encrypting()
	}
	tc, err := sess.Handshake(hctx, c.stream, res)
	if err != nil {
		// Handshake has already reset the stream (RFC 8548 §3.3).
		s.counters.HandshakeErrors.Add(1)
		c.closeOnce.Do(c.done)
		return fmt.Errorf("tcpcrypt handshake: %w", err)
	}
	s.counters.Handshakes.Add(1)
	if tc.Resumed() {
		s.counters.Resumed.Add(1)
	}
	c.tc = tc
	c.Conn = tc
	c.neg.Encrypted = true
	c.neg.Reason = eno.ReasonNone
	c.neg.Role = tc.Role()
	c.neg.TEP = tc.TEP()
	c.neg.AEAD = tc.AEAD()
	c.neg.Resumed = tc.Resumed()
	c.neg.SessionID = tc.SessionID()
	return nil
}

// abortConn resets c, abandons sess (if any) and releases the flow.
func (s *Stack) abortConn(c *Conn, sess *tcpcrypt.Session) {
	if sess != nil {
		sess.Abandon()
	}
	c.Abort()
}
