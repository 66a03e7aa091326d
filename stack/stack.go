// Package stack assembles tcpcryptd's userspace TCP/IP stack: a gVisor
// netstack with IPv4, IPv6 and TCP (SACK, window scaling, timestamps,
// receive-buffer auto-tuning) on one NIC whose link endpoint is wrapped by
// the ENO shim. The shim carries TCP-ENO (RFC 8547) options in the segments
// gVisor's TCP sends and records the ones it receives, per connection, in an
// eno.Negotiator. On top of that, Dial and Listen give connections that run
// tcpcrypt (RFC 8548) when ENO negotiated it, and plain TCP otherwise.
//
// gVisor is used only through its public API; tcpip.Error never leaves this
// package: at its edge it becomes a *NetError that unwraps to the kernel's
// errno for the same condition (see errors.go), so callers test
// errors.Is(err, syscall.ECONNREFUSED) as with the kernel's sockets.
package stack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// Defaults for Options fields left zero.
const (
	DefaultNICID           tcpip.NICID = 1
	DefaultMaxFlows                    = 65536
	DefaultHalfOpenTimeout             = 75 * time.Second // like a SYN-SENT lifetime
	// DefaultInboundHalfOpenTimeout covers four lost SYN-ACKs (gVisor
	// resends after 1, 3, 7 and 15 s).
	DefaultInboundHalfOpenTimeout = 20 * time.Second
	DefaultHalfOpenPerSource      = 1024
	DefaultUnclaimedTimeout       = 2 * time.Minute
	DefaultSweepInterval          = 5 * time.Second
	DefaultReceiveBufferMax       = 8 << 20
	DefaultSendBufferMax          = 8 << 20
	defaultBufferDefault          = 1 << 20
	defaultBufferMin              = 4 << 10
)

// Options configure New. Only Link is required.
type Options struct {
	// Link is the link endpoint carrying raw IP packets (a TUN endpoint, or
	// a channel.Endpoint in tests). The stack owns it from New on and
	// closes it on Close.
	Link gvstack.LinkEndpoint
	// NICID of the single NIC (default 1).
	NICID tcpip.NICID
	// Addresses assigned to the NIC.
	Addresses []netip.Prefix
	// Promiscuous accepts packets for any destination address (the
	// outbound forwarder); Spoofing lets endpoints use any local address.
	Promiscuous bool
	Spoofing    bool
	// NoENO builds a stack without the shim: a plain TCP peer that knows
	// nothing of ENO (tests, benchmarks). Dial and Listen then give plain
	// connections; policy "required" refuses everything.
	NoENO bool

	// MaxFlows bounds the ENO flow table (default DefaultMaxFlows).
	MaxFlows int
	// OutboundFlowReserve: flow entries only connections we open (Dial,
	// the forwarder's outer legs) may take; inbound SYNs get at most
	// MaxFlows minus this (default MaxFlows/8).
	OutboundFlowReserve int
	// HalfOpenPerSource bounds the inbound flows not yet accepted per
	// source (an IPv4 address, an IPv6 /64); a new SYN beyond it evicts
	// the source's oldest (default DefaultHalfOpenPerSource).
	HalfOpenPerSource int
	// InboundHalfOpenTimeout drops inbound flows whose handshake did not
	// complete after this long, and aborts their half-open connections
	// (default DefaultInboundHalfOpenTimeout).
	InboundHalfOpenTimeout time.Duration
	// HalfOpenTimeout drops outbound flows still negotiating after this
	// long; UnclaimedTimeout drops negotiated flows that no connection
	// took.
	HalfOpenTimeout  time.Duration
	UnclaimedTimeout time.Duration
	SweepInterval    time.Duration

	// ReceiveBufferMax / SendBufferMax bound TCP buffer auto-tuning.
	ReceiveBufferMax int
	SendBufferMax    int

	// TCPCrypt configures tcpcrypt sessions (nil: defaults). It must not
	// be modified after New.
	TCPCrypt *tcpcrypt.Config
	// HandshakeTimeout bounds a tcpcrypt handshake (default 10s).
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds concurrent passive handshakes per listener
	// (default 256). When they are all taken, a new connection evicts the
	// oldest one still waiting for its peer's first handshake message.
	MaxHandshakes int
	// HandshakesPerSource bounds the handshake slots of a listener one
	// source (IPv4 address, IPv6 /64) holds (default
	// DefaultHandshakesPerSource); its further connections wait for one
	// of them to end.
	HandshakesPerSource int
	// Init1Timeout bounds the wait, from TCP's handshake, for the peer's
	// first tcpcrypt message on a passive connection (default
	// DefaultInit1Timeout); a connection that misses it is reset.
	Init1Timeout time.Duration
	// HandshakeBudget is the key-exchange CPU one source may make us spend
	// on passive handshakes, in X25519 handshakes per second (burst: one
	// second's worth; default DefaultHandshakeBudget). A handshake over
	// budget is reset, never left plain.
	HandshakeBudget float64

	// OnConnDone, if set, is called once for every connection the forwarder
	// or a service took into the table, right after it left the table: info
	// is its final snapshot (bytes included), err is nil for a clean end, a
	// *RelayError for a relay that ended badly, or the setup error (a
	// *RefusedError, a failed outer or backend dial) for a connection that
	// never relayed. It runs on the connection's own goroutine and must not
	// block; the daemon uses it for outcome logs and metrics.
	OnConnDone func(info ConnInfo, err error)

	// Logger (nil: discard).
	Logger *slog.Logger
	// Now is the clock of the flow table (nil: time.Now).
	Now func() time.Time
	// SACKMinRTT: connections to and from a peer whose measured round-trip
	// time is below this run without SACK, hence without gVisor's tail
	// loss probes, which misfire on such paths (peerrtt.go). 0: SACK with
	// every peer.
	SACKMinRTT time.Duration
	// MinRTO is the floor of the retransmission timeout (0: gVisor's, 200
	// ms); see configureTCP.
	MinRTO time.Duration
	// Relays bounds relayed connections, keeps their peers' legs alive
	// and names the addresses routed into the device (relaylimit.go).
	Relays RelayOptions
}

// Stack is a gVisor netstack with the ENO shim on its NIC.
type Stack struct {
	gv       *gvstack.Stack
	nicID    tcpip.NICID
	shim     *shim      // nil when Options.NoENO
	flows    *flowTable // nil when Options.NoENO
	writes   writeSizes // largest one-packet writes, from the link
	rtts     *peerRTTs  // round-trip times per peer, for SACKMinRTT
	work     *workers   // goroutines for per-connection tasks
	counters Counters
	log      *slog.Logger
	limits   *limitLog         // limit events (floods, evictions, aborts), rate-limited
	hs       *handshakeLimiter // per-source key-exchange budget of passive handshakes
	// evictAge: a passive handshake still waiting for its peer's first
	// message may be evicted for a new connection once it is this old
	// (a quarter of Init1Timeout), not before: a client's Init1 follows
	// TCP's handshake at once, unless it was lost and is resent.
	evictAge time.Duration
	// parkPerSource bounds a listener's connections waiting for their
	// source's share of handshake slots, per source (maxParkedPerSource;
	// tests lower it).
	parkPerSource int
	relays        *relayLimiter // relayed connections, in total and per source
	opts          Options

	table *Table
	// unclaimed handles TCP segments no endpoint claims (the forwarder);
	// nil: gVisor's default (RST). gVisor's handler itself is set once in
	// New, because SetTransportProtocolHandler is not safe while packets
	// flow.
	unclaimed atomic.Pointer[func(gvstack.TransportEndpointID, *gvstack.PacketBuffer) bool]

	lmu       sync.Mutex
	listeners map[listenKey]*Listener // guarded by lmu
	services  map[*Service]struct{}   // guarded by lmu
	forwarder *Forwarder              // guarded by lmu
	closed    bool                    // guarded by lmu

	closeOnce sync.Once
}

// New builds and starts a stack.
func New(o Options) (*Stack, error) {
	if o.Link == nil {
		return nil, errors.New("stack: Options.Link is nil")
	}
	o = o.withDefaults()
	s := &Stack{
		nicID:     o.NICID,
		log:       o.Logger.With("component", "stack"),
		opts:      o,
		listeners: make(map[listenKey]*Listener),
		services:  make(map[*Service]struct{}),
		table:     newTable(),
		writes:    newWriteSizes(o.Link),
		rtts:      newPeerRTTs(o.SACKMinRTT, o.Now),
		work:      newWorkers(workerIdle, maxIdleWorker),
	}
	s.limits = newLimitLog(s.log, limitLogInterval, o.Now)
	s.hs = newHandshakeLimiter(o.HandshakeBudget, o.Now)
	s.evictAge = o.Init1Timeout / 4
	s.parkPerSource = maxParkedPerSource
	s.relays = newRelayLimiter(o.Relays)
	s.gv = gvstack.New(gvstack.Options{
		NetworkProtocols:   []gvstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []gvstack.TransportProtocolFactory{tcp.NewProtocol},
	})
	if err := s.configureTCP(o); err != nil {
		s.gv.Destroy()
		return nil, err
	}
	s.gv.SetTransportProtocolHandler(tcp.ProtocolNumber, s.handleUnclaimed)
	link := o.Link
	if !o.NoENO {
		s.flows = newFlowTable(flowLimits{
			max: o.MaxFlows, reserve: o.OutboundFlowReserve, perSource: o.HalfOpenPerSource,
			halfOpen: o.HalfOpenTimeout, inHalfOpen: o.InboundHalfOpenTimeout, unclaim: o.UnclaimedTimeout,
		}, o.Now, &s.counters, s.limits)
		s.flows.alive = func(id gvstack.TransportEndpointID) bool { return s.endpointFor(id) != nil }
		s.shim = newShim(o.Link, s.flows, &s.counters, o.SweepInterval)
		s.shim.setFactory(s.passiveFlow)
		if tc := o.TCPCrypt; tc != nil && tc.Cache != nil {
			sweep := s.sweepResumption
			s.shim.onSweep.Store(&sweep)
		}
		s.shim.setAbort(s.abortHalfOpen)
		s.shim.setENOListener(s.enoListener)
		link = s.shim
	}
	if err := s.configureNIC(o, link); err != nil {
		if s.shim != nil {
			s.shim.stopSweeper()
		}
		o.Link.Attach(nil) // the NIC may be up and reading: see Close
		s.gv.Destroy()
		return nil, err
	}
	return s, nil
}

func (o Options) withDefaults() Options {
	if o.NICID == 0 {
		o.NICID = DefaultNICID
	}
	o.Relays = o.Relays.withDefaults()
	if o.MaxFlows <= 0 {
		o.MaxFlows = DefaultMaxFlows
	}
	if o.OutboundFlowReserve <= 0 {
		o.OutboundFlowReserve = o.MaxFlows / 8
	}
	if o.HalfOpenPerSource <= 0 {
		o.HalfOpenPerSource = DefaultHalfOpenPerSource
	}
	if o.InboundHalfOpenTimeout <= 0 {
		o.InboundHalfOpenTimeout = DefaultInboundHalfOpenTimeout
	}
	if o.HalfOpenTimeout <= 0 {
		o.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if o.UnclaimedTimeout <= 0 {
		o.UnclaimedTimeout = DefaultUnclaimedTimeout
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.ReceiveBufferMax <= 0 {
		o.ReceiveBufferMax = DefaultReceiveBufferMax
	}
	if o.SendBufferMax <= 0 {
		o.SendBufferMax = DefaultSendBufferMax
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = 256
	}
	if o.HandshakesPerSource <= 0 {
		o.HandshakesPerSource = DefaultHandshakesPerSource
	}
	if o.Init1Timeout <= 0 {
		o.Init1Timeout = DefaultInit1Timeout
	}
	if o.HandshakeBudget <= 0 {
		o.HandshakeBudget = DefaultHandshakeBudget
	}
	if o.TCPCrypt == nil {
		o.TCPCrypt = &tcpcrypt.Config{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// configureTCP turns on SACK and receive-buffer moderation and sets the
// buffer ranges. Window scaling follows from the maximum receive buffer
// (gVisor offers wscale for the auto-tuning maximum); timestamps are always
// offered by gVisor.
func (s *Stack) configureTCP(o Options) error {
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	// RACK loss detection, with its tail loss probes, is gVisor's default
	// and stays on for connections that negotiate SACK: outer legs, over
	// real networks, recover from loss half again as fast with it
	// (TestImpairedBulkTransfer: 9 s against 14 s). The forwarder's inner
	// legs run without SACK, hence without RACK (the shim drops their SYN's
	// SACK-permitted, inNoSACK), and so do outer legs to peers measured
	// nearer than Options.SACKMinRTT (peerrtt.go): gVisor schedules a probe 2·SRTT after each
	// send with no floor (RFC 8985 has one; Linux uses 10 ms), and on a leg
	// of microseconds between the host's kernel and us it fired between
	// batches of ACKs, retransmitted spuriously and kept cutting the
	// congestion window (gvisor.dev issue 9778). Measured with
	// tcpcryptd-bench -only bulk, whose legs are all sub-millisecond: RACK
	// off everywhere gave 1.35-2.7x the throughput (57 instead of 95 TUN
	// packets per MB); off on the inner legs only, part of that
	// (docs/performance-history.md). Over real networks the probe timer is sane. The price:
	// an inner leg that does cross a lossy link (a LAN routed into the
	// device) recovers from loss without SACK, by duplicate ACKs and RTO.
	recovery := tcpip.TCPRecovery(tcpip.TCPRACKLossDetection)
	// gVisor's RTO floor is 200 ms. Losses that a small congestion window
	// cannot repair by duplicate ACKs (fewer than three segments behind
	// them) each wait that long at least, and longer while retransmissions
	// are lost as well (docs/loss-recovery.md). The timeout still follows
	// the measured round trip above the floor, so only short paths see it.
	minRTO := tcpip.TCPMinRTOOption(o.MinRTO)
	if o.MinRTO <= 0 {
		minRTO = tcpip.TCPMinRTOOption(tcp.MinRTO)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: defaultBufferMin, Default: min(defaultBufferDefault, o.ReceiveBufferMax), Max: o.ReceiveBufferMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: defaultBufferMin, Default: min(defaultBufferDefault, o.SendBufferMax), Max: o.SendBufferMax}
	for _, opt := range []struct {
		name string
		v    tcpip.SettableTransportProtocolOption
	}{
		{"SACK", &sack},
		{"receive buffer moderation", &moderate},
		{"loss recovery", &recovery},
		{"receive buffer range", &rcv},
		{"send buffer range", &snd},
		{"minimum RTO", &minRTO},
	} {
		if err := s.gv.SetTransportProtocolOption(tcp.ProtocolNumber, opt.v); err != nil {
			return fmt.Errorf("stack: could not set TCP %s: %s", opt.name, err)
		}
	}
	return nil
}

func (s *Stack) configureNIC(o Options, link gvstack.LinkEndpoint) error {
	if err := s.gv.CreateNICWithOptions(o.NICID, link, gvstack.NICOptions{Name: "tcpcryptd"}); err != nil {
		return fmt.Errorf("stack: create NIC %d: %w", o.NICID, netErr(err))
	}
	for _, p := range o.Addresses {
		if err := s.AddAddress(p); err != nil {
			return err
		}
	}
	if err := s.gv.SetPromiscuousMode(o.NICID, o.Promiscuous); err != nil {
		return fmt.Errorf("stack: promiscuous mode: %w", netErr(err))
	}
	if err := s.gv.SetSpoofing(o.NICID, o.Spoofing); err != nil {
		return fmt.Errorf("stack: spoofing: %w", netErr(err))
	}
	s.gv.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: o.NICID},
		{Destination: header.IPv6EmptySubnet, NIC: o.NICID},
	})
	return nil
}

// AddAddress assigns p's address to the NIC.
func (s *Stack) AddAddress(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("stack: invalid address prefix %v", p)
	}
	a := p.Addr().Unmap()
	proto := header.IPv4ProtocolNumber
	if a.Is6() {
		proto = header.IPv6ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(a.AsSlice()), PrefixLen: p.Bits()},
	}
	if err := s.gv.AddProtocolAddress(s.nicID, pa, gvstack.AddressProperties{}); err != nil {
		return fmt.Errorf("stack: add address %v: %w", p, netErr(err))
	}
	return nil
}

// handleUnclaimed passes TCP segments no endpoint claims to the forwarder,
// if one runs.
func (s *Stack) handleUnclaimed(id gvstack.TransportEndpointID, pkt *gvstack.PacketBuffer) bool {
	if h := s.unclaimed.Load(); h != nil {
		return (*h)(id, pkt)
	}
	return false
}

// endpointFor returns the stack's TCP endpoint with exactly the 4-tuple id
// (not a listener that would take its packets), or nil.
func (s *Stack) endpointFor(id gvstack.TransportEndpointID) tcpip.Endpoint {
	protos := []tcpip.NetworkProtocolNumber{header.IPv6ProtocolNumber}
	if id.LocalAddress.Len() == 4 {
		protos = []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber}
	}
	for _, p := range protos {
		te, ok := s.gv.FindTransportEndpoint(p, tcp.ProtocolNumber, id, s.nicID).(tcpip.Endpoint)
		if !ok {
			continue
		}
		if info, ok := te.Info().(*gvstack.TransportEndpointInfo); ok && info.ID == id {
			return te
		}
	}
	return nil
}

// abortHalfOpen resets the half-open connection with 4-tuple id whose ENO
// flow the table dropped: without its flow the stack would go on answering
// (its SYN-ACK retransmissions) without ENO. A connection that completed
// meanwhile has no flow either and is reset when accepted.
func (s *Stack) abortHalfOpen(id gvstack.TransportEndpointID) {
	ep := s.endpointFor(id)
	if ep == nil {
		return
	}
	// Linger 0: the peer gets a RST, not a FIN.
	ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	ep.Abort()
}

// tcpcrypt returns the tcpcrypt configuration sessions are made from.
func (s *Stack) tcpcrypt() *tcpcrypt.Config { return s.opts.TCPCrypt }

// sessionPolicy is the tcpcrypt policy of a connection with peer: frames
// sized to leave as one packet each (see writeSizes).
func (s *Stack) sessionPolicy(peer netip.Addr) tcpcrypt.Policy {
	return tcpcrypt.Policy{MaxFrame: s.writes.forPeer(peer.Unmap().Is6())}
}

// GVisor returns the underlying gVisor stack (for the forwarder and tests).
func (s *Stack) GVisor() *gvstack.Stack { return s.gv }

// NICID returns the ID of the stack's NIC.
func (s *Stack) NICID() tcpip.NICID { return s.nicID }

// Counters returns the stack's counters.
func (s *Stack) Counters() *Counters { return &s.counters }

// Flows returns the number of connections with ENO state in the shim.
func (s *Stack) Flows() int {
	if s.flows == nil {
		return 0
	}
	return s.flows.len()
}

// HalfOpenFlows returns the number of inbound connections with ENO state
// whose handshake has not completed and that no listener accepted yet
// (those a SYN flood holds).
func (s *Stack) HalfOpenFlows() int {
	if s.flows == nil {
		return 0
	}
	s.flows.mu.RLock()
	defer s.flows.mu.RUnlock()
	return s.flows.embryos.n
}

// ENO reports whether the stack has the ENO shim.
func (s *Stack) ENO() bool { return s.shim != nil }

// Close stops the forwarder and the services (resetting what they relay),
// closes every listener, aborts every endpoint, stops the shim's sweeper
// and the stack's goroutines, and closes the link endpoint. It returns once
// they have all stopped.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		s.lmu.Lock()
		s.closed = true
		fwd := s.forwarder
		svcs := make([]*Service, 0, len(s.services))
		for sv := range s.services {
			svcs = append(svcs, sv)
		}
		ls := make([]*Listener, 0, len(s.listeners))
		for _, l := range s.listeners {
			ls = append(ls, l)
		}
		s.lmu.Unlock()
		if fwd != nil {
			fwd.Close()
		}
		for _, sv := range svcs {
			sv.Close()
		}
		for _, l := range ls {
			l.Close()
		}
		if s.shim != nil {
			s.shim.stopSweeper()
		}
		s.gv.Close()
		// Stop inbound delivery before gVisor's Wait. Wait detaches the NIC
		// with the stack's lock held and waits for the link's reader; a
		// reader in the middle of delivering a packet needs that lock, so a
		// packet arriving during shutdown would hang both
		// (TestStopUnderInboundTraffic). Detached here, without the lock,
		// the reader finishes its packet and exits; the NIC's own detach
		// later finds it stopped. Outgoing packets (the resets of the
		// aborted endpoints) still leave.
		s.opts.Link.Attach(nil)
		s.gv.Wait()
		if s.flows != nil {
			s.flows.clear()
		}
		s.work.close()
	})
	return nil
}

// addrFrom converts a netip address to gVisor's, unmapping IPv4-in-IPv6.
func addrFrom(a netip.Addr) tcpip.Address {
	return tcpip.AddrFromSlice(a.Unmap().AsSlice())
}

// netipFrom converts a gVisor address to netip.
func netipFrom(a tcpip.Address) netip.Addr {
	na, _ := netip.AddrFromSlice(a.AsSlice())
	return na
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return header.IPv4ProtocolNumber
	}
	return header.IPv6ProtocolNumber
}
