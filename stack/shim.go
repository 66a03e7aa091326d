package stack

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// maxHeaderPrefix is the most header bytes an IPv4 or IPv6 TCP packet can
// have before its payload (60-byte IPv4 header, 60-byte TCP header).
const maxHeaderPrefix = header.IPv4MaximumHeaderSize + header.TCPHeaderMaximumSize

// passiveFactory returns the flow spec for an incoming SYN-only segment
// with the given 4-tuple (local point of view), or false to leave the
// connection without ENO state (plain TCP, or no listener at all).
type passiveFactory func(id gvstack.TransportEndpointID) (flowSpec, bool)

// shim is the ENO link-layer shim: a nested link endpoint between gVisor's
// NIC and the real link endpoint. It appends ENO options to the TCP segments
// the stack sends, and shows the TCP segments the stack receives to the
// flow's ENO negotiator before the stack sees them (RFC 8547 §4.6), so the
// negotiation outcome is known when Connect or Accept returns.
//
// Like gVisor's sniffer it overrides only WritePackets and
// DeliverNetworkPacket; everything else is nested.Endpoint's pass-through.
type shim struct {
	nested.Endpoint

	flows    *flowTable
	counters *Counters
	factory  atomic.Pointer[passiveFactory]
	// abort, if set, aborts the stack's half-open connection with a
	// 4-tuple whose flow the table dropped (flowTable.dead).
	abort atomic.Pointer[func(gvstack.TransportEndpointID)]
	// enoListener, if set, reports whether a connection with this 4-tuple
	// (local point of view) belongs to a listener that may use ENO.
	enoListener atomic.Pointer[func(gvstack.TransportEndpointID) bool]
	// trustRX: the child validates checksums (CapabilityRXChecksumOffload),
	// so the shim need not check them before feeding a negotiator.
	trustRX bool
	// onSweep, if set, runs on every sweep after the flow table's.
	onSweep atomic.Pointer[func()]

	stop chan struct{}
	wg   sync.WaitGroup
}

var _ gvstack.LinkEndpoint = (*shim)(nil)
var _ gvstack.NetworkDispatcher = (*shim)(nil)
var _ gvstack.GSOEndpoint = (*shim)(nil)

// newShim wraps child. It starts the flow sweeper, which runs every
// sweepEvery until close.
func newShim(child gvstack.LinkEndpoint, flows *flowTable, c *Counters, sweepEvery time.Duration) *shim {
	s := &shim{
		flows:    flows,
		counters: c,
		trustRX:  child.Capabilities()&gvstack.CapabilityRXChecksumOffload != 0,
		stop:     make(chan struct{}),
	}
	s.Endpoint.Init(child, s)
	s.wg.Add(1)
	go s.sweeper(sweepEvery)
	return s
}

func (s *shim) setFactory(f passiveFactory) { s.factory.Store(&f) }

func (s *shim) setAbort(f func(gvstack.TransportEndpointID)) { s.abort.Store(&f) }

func (s *shim) setENOListener(f func(gvstack.TransportEndpointID) bool) { s.enoListener.Store(&f) }

// sweeper drops stale flows until stopSweeper, and aborts the half-open
// connections of flows the table dropped. It exits when s.stop closes.
func (s *shim) sweeper(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.flows.sweep()
			if f := s.onSweep.Load(); f != nil {
				(*f)()
			}
		case id := <-s.flows.dead:
			// Unless a new SYN for the same 4-tuple listed a flow
			// again (its connection is the same endpoint).
			if a := s.abort.Load(); a != nil && s.flows.lookup(id) == nil {
				(*a)(id)
			}
		}
	}
}

// stopSweeper stops the sweeper goroutine and waits for it.
func (s *shim) stopSweeper() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// WritePackets implements gvstack.LinkEndpoint. Segments of flows whose
// negotiator wants an ENO option are rebuilt with the option appended (and
// cut in two, or given a smaller GSO segment size, when the option would
// not fit the MTU otherwise); the rest go down unchanged.
func (s *shim) WritePackets(pkts gvstack.PacketBufferList) (int, tcpip.Error) {
	if s.flows.busy.Load() == 0 && !anySYN(pkts) {
		// Fast path: no flow wants an option. (SYNs and SYN-ACKs take the
		// slow path: those of connections opened around Dial are counted,
		// and every handshake is timed, flow.sentSYN.)
		return s.Endpoint.WritePackets(pkts)
	}
	var out gvstack.PacketBufferList
	var mine []*gvstack.PacketBuffer
	// ends[i]: how many packets of out carry pkts up to and including the
	// i-th, to turn the child's count back into ours.
	all := pkts.AsSlice()
	ends := make([]int, 0, len(all))
	for _, pkt := range all {
		if s.orphanSYNACK(pkt) {
			// Dropped on purpose, as if lost on the wire.
			ends = append(ends, out.Len())
			continue
		}
		repl, drop := s.outgoing(pkt)
		switch {
		case drop:
			// Lost on the link as far as TCP knows: it retransmits.
		case repl != nil:
			for _, np := range repl {
				out.PushBack(np)
			}
			mine = append(mine, repl...)
		default:
			out.PushBack(pkt)
		}
		ends = append(ends, out.Len())
	}
	var n int
	var err tcpip.Error
	if out.Len() > 0 {
		n, err = s.Endpoint.WritePackets(out)
	}
	// The child does not take our references (it clones what it keeps).
	for _, p := range mine {
		p.DecRef()
	}
	written := 0
	for _, e := range ends {
		if e > n {
			break
		}
		written++
	}
	return written, err
}

// outgoing handles one outgoing packet. It returns replacement packets
// (owned by the caller) to send instead of pkt, or drop to send nothing, or
// neither to send pkt as it is.
func (s *shim) outgoing(pkt *gvstack.PacketBuffer) (repl []*gvstack.PacketBuffer, drop bool) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber ||
		pkt.NetworkProtocolNumber != header.IPv4ProtocolNumber && pkt.NetworkProtocolNumber != header.IPv6ProtocolNumber {
		return nil, false
	}
	var hb [maxHeaderPrefix]byte
	hdr := hb[:0]
	hdr = append(hdr, pkt.NetworkHeader().Slice()...)
	hdr = append(hdr, pkt.TransportHeader().Slice()...)
	seg, err := parseSegment(hdr, pkt.Size()-len(pkt.LinkHeader().Slice()))
	if err != nil {
		return nil, false
	}
	id := gvstack.TransportEndpointID{
		LocalPort: seg.srcPort, LocalAddress: seg.src,
		RemotePort: seg.dstPort, RemoteAddress: seg.dst,
	}
	f := s.flows.lookup(id)
	if f == nil {
		if seg.syn() && !seg.ackf() {
			s.counters.Unregistered.Add(1) // sent without ENO: nobody registered the flow
		}
		return nil, false
	}
	if seg.rst() {
		// Decision: RFC 8547 §4.6 asks for ENO in "every segment" until a
		// non-SYN segment arrives; a RST ends the connection, so an option
		// on it could serve no purpose. RSTs are never grown nor shown to
		// the negotiator (eno.Negotiator documents the same contract).
		return nil, false
	}
	// A near peer's connection goes without SACK (Options.SACKMinRTT):
	// our SYN does not offer it. spec is fixed when the flow is listed.
	noSACK := seg.syn() && !seg.ackf() && f.spec.noSACK
	f.mu.Lock()
	if seg.syn() {
		f.sentSYN(s.flows.now())
	}
	if f.quiet {
		f.mu.Unlock()
		if noSACK {
			return one(s.withoutSACK(pkt, &seg)), false
		}
		return nil, false
	}
	if seg.syn() {
		f.localISN, f.haveLocalISN = seg.seq, true
	}
	f.sent(seg.seq, seg.payloadLen, seg.syn(), seg.fin())
	opt := f.spec.neg.Outgoing(seg.syn(), seg.ackf())
	if !seg.syn() {
		if opt == nil {
			f.sentPlain = true
		}
		if !f.sentNonSYN {
			f.sentNonSYN = true
			s.replayPending(f)
		}
	}
	s.flows.update(f)
	f.mu.Unlock()
	if opt == nil {
		if noSACK {
			return one(s.withoutSACK(pkt, &seg)), false
		}
		return nil, false
	}
	if seg.syn() {
		return one(s.synWithENO(pkt, &seg, opt, noSACK)), false
	}
	return s.withENO(pkt, &seg, opt)
}

// one wraps a single replacement packet (nil: none).
func one(p *gvstack.PacketBuffer) []*gvstack.PacketBuffer {
	if p == nil {
		return nil
	}
	return []*gvstack.PacketBuffer{p}
}

// synWithENO returns a copy of the SYN or SYN-ACK pkt with the option opt
// appended (and without SACK-permitted if noSACK), or nil to send pkt as it
// is: a SYN that cannot grow is counted in NoRoom and leaves without ENO,
// so the connection runs plain as the peer's answer will show; a SYN never
// carries data from gVisor, so only a full options area could cause it.
func (s *shim) synWithENO(pkt *gvstack.PacketBuffer, seg *segment, opt []byte, noSACK bool) *gvstack.PacketBuffer {
	flat := flatten(pkt)
	link := len(pkt.LinkHeader().Slice())
	ipPkt := flat[link:]
	if noSACK {
		dropSACKPermitted(ipPkt, seg)
	}
	grown, err := appendOption(ipPkt, seg, opt, int(s.MTU()))
	if err != nil {
		s.countGrowError(err)
		if noSACK {
			return rebuildOutgoing(pkt, flat[:link], ipPkt, seg, gvstack.GSO{})
		}
		return nil
	}
	s.counters.Rewrites.Add(1)
	return rebuildOutgoing(pkt, flat[:link], grown, seg, gvstack.GSO{})
}

func (s *shim) countGrowError(err error) {
	switch segmentReason(err) {
	case SegNoOptionSpace, SegExceedsMTU:
		s.counters.NoRoom.Add(1)
	default:
		s.counters.RewriteErrors.Add(1)
	}
}

// withENO returns the non-SYN segment pkt with the ENO option opt, as one
// or more packets that each fit the MTU, or drop.
//
// RFC 8547 §4.6 (ENO-18): until it receives a non-SYN segment, the active
// opener puts 45 02 on every segment, whatever sends it: the third
// segment, Init1, a resumed session's data (sent at once, in GSO
// super-packets over the TUN device), retransmissions, window probes.
// The shim lowers the MSS the peer announced by the option's size
// (inClampMSS, with our own MTU as a ceiling), so gVisor's segments leave
// room for it. Where they still do not:
//
//   - A GSO super-packet gets the option in its header template, which the
//     host copies into every segment it cuts, with the segment size lowered
//     so each segment still fits the MTU (GSOMSSLowered). This keeps the
//     offload; cutting a 64 KB super-packet into 45 packets here would not.
//   - A single segment that the option would push over the MTU is cut in
//     two here (Split): the same bytes, each piece with the option.
//     Lowering gVisor's MSS after the fact is not possible, and a
//     segment sent without the option could be the first ACK segment B
//     sees (the third segment lost), making B fall back while we encrypt.
//   - A segment whose options area is full cannot carry the option at all:
//     it is dropped (NoRoom), never sent without ENO; TCP retransmits it.
//     gVisor fills the options area only with SACK blocks, which need
//     data from B, and B's first data segment ends the requirement, so this
//     does not happen with gVisor.
func (s *shim) withENO(pkt *gvstack.PacketBuffer, seg *segment, opt []byte) ([]*gvstack.PacketBuffer, bool) {
	flat := flatten(pkt)
	link := len(pkt.LinkHeader().Slice())
	ipPkt := flat[link:]
	mtu := int(s.MTU())
	gso := pkt.GSOOptions
	hostGSO := gso.NeedsCsum && gso.MSS > 0 &&
		(gso.Type == gvstack.GSOTCPv4 || gso.Type == gvstack.GSOTCPv6)
	if hostGSO && seg.payloadLen > int(gso.MSS) {
		grown, err := appendOptionPartial(ipPkt, seg, opt)
		if err != nil {
			s.countGrowError(err)
			return nil, true
		}
		if mtu > 0 {
			room := mtu - seg.ipHdrLen - seg.tcpHdrLen
			if room <= 0 {
				s.counters.NoRoom.Add(1)
				return nil, true
			}
			if room < int(gso.MSS) {
				gso.MSS = uint16(room)
				s.counters.GSOMSSLowered.Add(1)
			}
		}
		s.counters.Rewrites.Add(1)
		return one(rebuildOutgoing(pkt, flat[:link], grown, seg, gso)), false
	}
	grown, err := appendOption(ipPkt, seg, opt, 0)
	if err != nil {
		s.countGrowError(err)
		return nil, true
	}
	s.counters.Rewrites.Add(1)
	if mtu <= 0 || seg.ipLen <= mtu {
		return one(rebuildOutgoing(pkt, flat[:link], grown, seg, gvstack.GSO{})), false
	}
	pieces := splitSegment(grown, seg, mtu)
	if pieces == nil {
		s.counters.NoRoom.Add(1)
		return nil, true
	}
	s.counters.Split.Add(1)
	out := make([]*gvstack.PacketBuffer, 0, len(pieces))
	for _, b := range pieces {
		ps := *seg
		ps.ipLen = len(b)
		ps.payloadLen = ps.ipLen - ps.ipHdrLen - ps.tcpHdrLen
		out = append(out, rebuildOutgoing(pkt, flat[:link], b, &ps, gvstack.GSO{}))
	}
	return out, false
}

// withoutSACK returns a copy of the outgoing SYN pkt (described by seg)
// whose SACK-permitted option is overwritten by NOPs, or nil to send pkt as
// it is (it offers no SACK).
func (s *shim) withoutSACK(pkt *gvstack.PacketBuffer, seg *segment) *gvstack.PacketBuffer {
	flat := flatten(pkt)
	link := len(pkt.LinkHeader().Slice())
	if !dropSACKPermitted(flat[link:], seg) {
		return nil
	}
	return rebuildOutgoing(pkt, flat[:link], flat[link:], seg, gvstack.GSO{})
}

// flatten copies pkt's bytes, link header included, into one slice.
func flatten(pkt *gvstack.PacketBuffer) []byte {
	flat := make([]byte, 0, pkt.Size())
	for _, v := range pkt.AsSlices() {
		flat = append(flat, v...)
	}
	return flat
}

// anySYN reports whether pkts hold an outgoing TCP SYN or SYN-ACK.
func anySYN(pkts gvstack.PacketBufferList) bool {
	for _, pkt := range pkts.AsSlice() {
		if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
			continue
		}
		th := pkt.TransportHeader().Slice()
		if len(th) >= header.TCPMinimumSize && header.TCP(th).Flags()&header.TCPFlagSyn != 0 {
			return true
		}
	}
	return false
}

// rebuildOutgoing makes a new outgoing PacketBuffer from the rewritten IP
// packet b, keeping pkt's metadata. gso is the new packet's GSO options:
// GSONone when b carries a complete checksum and fits the MTU, or a GSO
// super-packet's options (b then carries a partial checksum).
func rebuildOutgoing(pkt *gvstack.PacketBuffer, link, b []byte, seg *segment, gso gvstack.GSO) *gvstack.PacketBuffer {
	hl := seg.ipHdrLen + seg.tcpHdrLen
	np := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		ReserveHeaderBytes: len(link) + hl,
		Payload:            buffer.MakeWithData(b[hl:]),
	})
	copy(np.TransportHeader().Push(seg.tcpHdrLen), b[seg.ipHdrLen:hl])
	copy(np.NetworkHeader().Push(seg.ipHdrLen), b[:seg.ipHdrLen])
	if len(link) > 0 {
		copy(np.LinkHeader().Push(len(link)), link)
	}
	np.NetworkProtocolNumber = pkt.NetworkProtocolNumber
	np.TransportProtocolNumber = pkt.TransportProtocolNumber
	np.EgressRoute = pkt.EgressRoute
	np.Hash = pkt.Hash
	np.Owner = pkt.Owner
	np.PktType = pkt.PktType
	np.Mark = pkt.Mark
	np.NICID = pkt.NICID
	np.GSOOptions = gso
	return np
}

// DeliverNetworkPacket implements gvstack.NetworkDispatcher: it records
// incoming TCP segments in their flow's negotiator (creating a passive flow
// for a SYN-only segment) and then hands the packet to the stack, without
// its payload when RFC 8547 §4.7 says SYN data must be discarded.
func (s *shim) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer) {
	if proto != header.IPv4ProtocolNumber && proto != header.IPv6ProtocolNumber {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	size := pkt.Data().Size()
	hdr, ok := pkt.Data().PullUp(min(size, maxHeaderPrefix))
	if !ok {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	seg, err := parseSegment(hdr, size)
	if err != nil {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	if seg.rst() {
		// A RST that resets a half-open connection frees its flow now,
		// not when the flow expires: the answer of a spoofed SYN's
		// real owner to our SYN-ACK. The stack sees the RST too.
		if f := s.flows.lookup(gvstack.TransportEndpointID{
			LocalPort: seg.dstPort, LocalAddress: seg.dst,
			RemotePort: seg.srcPort, RemoteAddress: seg.src,
		}); f != nil && (s.trustRX || checksumsValid(pkt.Data().AsRange().ToSlice(), &seg)) {
			s.flows.resetBy(f, seg.seq)
		}
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	synOnly := seg.syn() && !seg.ackf()
	if !synOnly && s.flows.busy.Load() == 0 {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	switch s.incoming(pkt, hdr, &seg) {
	case inStrip:
		s.deliverStripped(proto, pkt, &seg)
	case inClampMSS:
		s.deliverClamped(proto, pkt, &seg)
	case inNoSACK:
		s.deliverNoSACK(proto, pkt, &seg)
	case inRefuse:
		s.refuse(&seg)
	case inDrop:
		// Nothing: the peer retransmits its SYN.
	default:
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
	}
}

// inAction is what to do with an incoming segment after the shim saw it.
type inAction uint8

const (
	inDeliver  inAction = iota // hand it to the stack unchanged
	inStrip                    // hand it over without its payload (RFC 8547 §4.7)
	inRefuse                   // answer with a RST; the stack never sees it
	inClampMSS                 // hand it over with its MSS option lowered (roomForENO)
	inNoSACK                   // hand it over without SACK-permitted (an inner leg's or a near peer's SYN)
	inDrop                     // drop it: a SYN for which no ENO state can be kept
)

// roomForENO is what the non-SYN ENO option takes in a segment: 45 02,
// NOP-padded to a 4-byte boundary.
const roomForENO = 4

// incoming feeds one incoming segment to its flow's negotiator and says
// what to do with it.
func (s *shim) incoming(pkt *gvstack.PacketBuffer, hdr []byte, seg *segment) inAction {
	id := gvstack.TransportEndpointID{
		LocalPort: seg.dstPort, LocalAddress: seg.dst,
		RemotePort: seg.srcPort, RemoteAddress: seg.src,
	}
	f := s.flows.lookup(id)
	if !seg.syn() && (f == nil || f.isQuiet()) {
		return inDeliver // the common case while other flows negotiate
	}
	if !s.trustRX {
		// Never let a corrupted segment steer negotiation; the stack will
		// drop it anyway.
		if !checksumsValid(pkt.Data().AsRange().ToSlice(), seg) {
			s.counters.BadChecksum.Add(1)
			return inDeliver
		}
	}
	opts := seg.options(hdr)
	// RFC 8547 §4.7 (ENO-25): the data of a SYN carrying ENO is discarded
	// whatever becomes of ENO, even when it is disabled: no TEP we speak
	// defines SYN data.
	keep := inDeliver
	if seg.syn() && seg.payloadLen > 0 && synDataMustGo(opts) {
		s.counters.SYNDataDropped.Add(1)
		keep = inStrip
	}
	synOnly := seg.syn() && !seg.ackf()
	if synOnly && f != nil && f.kind == flowPassive && !f.sameSYN(seg.seq) && f.handshakeDone() {
		// Decision: a new SYN for a connection past its handshake (forged
		// by anyone who knows the 4-tuple) neither replaces its flow nor
		// reaches its negotiator; the stack answers it with a challenge
		// ACK (RFC 5961 §4).
		return keep
	}
	if synOnly && (f == nil || f.kind == flowPassive && !f.sameSYN(seg.seq)) {
		var listened, drop bool
		if f, listened, drop = s.newPassive(id); f == nil {
			if drop {
				return inDrop
			}
			if !listened && keep == inDeliver {
				// No listener: a connection the forwarder will take, an
				// inner leg from the host's kernel. Without SACK,
				// gVisor runs no RACK and no tail loss probes on it
				// (see configureTCP): on a path of microseconds they
				// misfire.
				return inNoSACK
			}
			return keep // no ENO state for this connection
		}
	}
	if f == nil {
		return keep
	}
	var refused, completed bool
	defer func() { // after f.mu is released
		if refused {
			s.flows.remove(f)
		}
		if completed {
			s.flows.completed(f)
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet {
		return withoutSACKIf(keep, synOnly && f.kind == flowPassive && f.spec.noSACK)
	}
	if f.spec.neg.State() == eno.StateNegotiating && seg.ackf() && (!f.haveLocalISN || seg.ack != f.localISN+1) {
		// Decision: while negotiating, an ACK segment that does not
		// acknowledge exactly our SYN (stale, spoofed or out of window) is
		// not "the first ACK segment" of RFC 8547 §4.6: the stack will
		// reject it, so it must not decide the negotiation either.
		s.counters.OutOfWindow.Add(1)
		return keep
	}
	if seg.syn() {
		f.peerISN, f.havePeerISN = seg.seq, true
	}
	if f.kind == flowActive && !seg.syn() && f.gotSYNACK && !f.fromPeer(seg.seq, seg.ack, seg.ackf()) {
		// Decision: after the SYN-ACK, only a segment the connection
		// would accept counts as "a non-SYN segment received" (RFC 8547
		// §4.6), which ends ENO on our segments. A spoofed or stale one
		// would otherwise end it while the third segment may yet be
		// lost, and B would fall back on our next ACK.
		s.counters.OutOfWindow.Add(1)
		return keep
	}
	if f.kind == flowActive && !seg.syn() && f.gotSYNACK && !f.sentNonSYN {
		// Decision: the stack has yet to answer the SYN-ACK it received
		// just before this segment. TCP processes segments in order, so our
		// answer (the third segment, with ENO) logically precedes this
		// segment; the negotiator sees them in that order. Otherwise a
		// peer's duplicate ACK racing our answer would end ENO (RFC 8547
		// §4.6: no ENO after a non-SYN segment was received) before the
		// third segment could carry it (TestACKRightAfterSYNACK).
		if len(f.pending) < maxPending {
			f.pending = append(f.pending, pendingSeg{ack: seg.ackf(), opts: append([]byte(nil), opts...), payloadLen: seg.payloadLen})
		}
		return keep
	}
	if seg.syn() && seg.ackf() {
		f.gotSYNACK = true
	}
	s.counters.Inspected.Add(1)
	// The negotiator's discard answer is the rule applied above.
	_ = f.spec.neg.Incoming(seg.syn(), seg.ackf(), opts, seg.payloadLen)
	if !seg.syn() {
		completed = f.kind == flowPassive && !f.rcvdNonSYN
		f.rcvdNonSYN = true
	}
	s.flows.update(f)
	if seg.syn() && seg.ackf() && f.kind == flowActive && keep == inDeliver &&
		f.spec.neg.State() != eno.StateDisabled {
		// RFC 8547 §4.6 (ENO-18): as active opener we put 45 02 on every
		// segment until we receive a non-SYN segment. A resumed session
		// sends full-sized data at once, and a full-sized segment has no
		// room for the option unless gVisor's segments are smaller: lower
		// the MSS the peer announced, as the stack sees it, by the
		// option's size. Without this a lost third segment leaves B with a
		// first ACK lacking ENO: B falls back while we encrypt
		// (TestENO18_ResumedDataCarriesENO).
		return inClampMSS
	}
	if synOnly && f.kind == flowPassive && f.spec.mode == eno.ModeRequired && f.spec.neg.State() == eno.StateDisabled {
		// Decision: encryption is required and this SYN already rules it
		// out (no usable ENO): refuse the connection as a closed port
		// would, before the stack answers, rather than completing the TCP
		// handshake only to reset it.
		s.counters.RequiredRefusals.Add(1)
		refused = true
		return inRefuse
	}
	return withoutSACKIf(keep, synOnly && f.kind == flowPassive && f.spec.noSACK)
}

// withoutSACKIf turns delivering an incoming SYN unchanged into delivering
// it without SACK-permitted when cond holds (a near peer,
// Options.SACKMinRTT): our SYN-ACK then offers no SACK either.
func withoutSACKIf(a inAction, cond bool) inAction {
	if cond && a == inDeliver {
		return inNoSACK
	}
	return a
}

// synDataMustGo applies RFC 8547 §4.7 to a SYN's options: its data is
// discarded if it carries an ENO option (kind 69, or the legacy kind
// 253/ExID 0x454E), or an options area too malformed to tell.
func synDataMustGo(opts []byte) bool {
	enos, legacy, err := eno.Options(opts)
	return len(enos) > 0 || legacy || err != nil
}

// replayPending feeds the segments held back by incoming (f.mu held).
func (s *shim) replayPending(f *flow) {
	for _, p := range f.pending {
		s.counters.Inspected.Add(1)
		f.spec.neg.Incoming(false, p.ack, p.opts, p.payloadLen)
		f.rcvdNonSYN = true
	}
	f.pending = nil
}

// sameSYN reports whether a SYN with sequence number seq is a retransmission
// of the SYN that created this passive flow.
func (f *flow) sameSYN(seq uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.havePeerISN && f.peerISN == seq
}

// handshakeDone reports whether the passive flow f saw the peer's first
// ACK or was claimed by an accepted connection.
func (f *flow) handshakeDone() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.claimed || f.rcvdNonSYN
}

// orphanSYNACK reports whether the outgoing packet pkt is a SYN-ACK of a
// listener that may use ENO for a connection without a flow: its flow was
// evicted or expired while the stack still answers. Such a SYN-ACK must not
// leave: without ENO it would make the peer fall back to plain TCP (RFC
// 8547 §4.6), a downgrade. Dropped, it is retransmitted by the stack or
// provoked again by the peer's retransmitted SYN, which lists a new flow.
func (s *shim) orphanSYNACK(pkt *gvstack.PacketBuffer) bool {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return false
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize || th.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) != header.TCPFlagSyn|header.TCPFlagAck {
		return false
	}
	nh := pkt.NetworkHeader().Slice()
	var src, dst tcpip.Address
	switch {
	case pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber && len(nh) >= header.IPv4MinimumSize:
		src, dst = header.IPv4(nh).SourceAddress(), header.IPv4(nh).DestinationAddress()
	case pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber && len(nh) >= header.IPv6MinimumSize:
		src, dst = header.IPv6(nh).SourceAddress(), header.IPv6(nh).DestinationAddress()
	default:
		return false
	}
	id := gvstack.TransportEndpointID{
		LocalPort: th.SourcePort(), LocalAddress: src,
		RemotePort: th.DestinationPort(), RemoteAddress: dst,
	}
	if s.flows.lookup(id) != nil {
		return false
	}
	if l := s.enoListener.Load(); l == nil || !(*l)(id) {
		return false
	}
	s.counters.OrphanSYNACKs.Add(1)
	// The connection has no use without its flow: abort it (later, on
	// the sweeper: the stack is sending it now), rather than let the
	// stack retransmit into this drop until it gives up.
	select {
	case s.flows.dead <- id:
	default:
	}
	return true
}

// newPassive creates the flow for an incoming SYN through the factory;
// listened reports whether a listener wanted it (false: the forwarder's).
// drop reports that the SYN must be dropped: the listener may use ENO but
// no flow could be listed for it.
//
// Decision: without a flow the stack would answer the SYN without ENO and
// the connection would be plain, a downgrade anyone able to fill the table
// could cause. Dropped, the SYN is retransmitted by its sender and may
// find room then. SYNs without ENO are dropped too: whether a SYN carried
// ENO is not known when the connection is accepted, so a connection
// without a flow is reset there (Listener.settleConn); a dropped SYN gets
// another chance. Only a listener whose policy is off, for which every
// connection is plain anyway, takes SYNs without a flow.
func (s *shim) newPassive(id gvstack.TransportEndpointID) (f *flow, listened, drop bool) {
	fp := s.factory.Load()
	if fp == nil {
		return nil, false, false
	}
	spec, ok := (*fp)(id)
	if !ok {
		return nil, false, false
	}
	f, err := s.flows.insert(id, flowPassive, spec)
	if err != nil {
		if spec.sess != nil {
			spec.sess.Abandon()
		}
		if spec.mode == eno.ModeOff {
			return nil, true, false
		}
		s.counters.SYNsDropped.Add(1)
		return nil, true, true
	}
	return f, true, false
}

// deliverStripped hands the stack a copy of pkt without its TCP payload.
func (s *shim) deliverStripped(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer, seg *segment) {
	flat := pkt.Data().AsRange().ToSlice()
	b := stripPayload(flat, seg)
	np := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	np.RXChecksumValidated = pkt.RXChecksumValidated
	s.Endpoint.DeliverNetworkPacket(proto, np)
	np.DecRef()
}

// deliverClamped hands the stack a copy of pkt whose MSS option is lowered
// by roomForENO below the smaller of the peer's MSS and the one our own
// MTU allows. gVisor sizes segments by the smaller of the two; lowering
// only the peer's would leave no room when the peer announces more than
// our MTU carries (a jumbo-frame or loopback peer).
func (s *shim) deliverClamped(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer, seg *segment) {
	b := pkt.Data().AsRange().ToSlice()
	ceiling := 0
	if mtu := int(s.MTU()); mtu > 0 {
		ipHdr := header.IPv4MinimumSize
		if seg.v6 {
			ipHdr = header.IPv6MinimumSize
		}
		ceiling = mtu - ipHdr - header.TCPMinimumSize
	}
	if !clampMSS(b, seg, ceiling, roomForENO) {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	s.counters.MSSClamped.Add(1)
	np := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	np.RXChecksumValidated = pkt.RXChecksumValidated
	s.Endpoint.DeliverNetworkPacket(proto, np)
	np.DecRef()
}

// deliverNoSACK hands the SYN seg to the stack with its SACK-permitted
// option overwritten by NOPs, so the connection runs without SACK.
func (s *shim) deliverNoSACK(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer, seg *segment) {
	b := pkt.Data().AsRange().ToSlice()
	if !dropSACKPermitted(b, seg) {
		s.Endpoint.DeliverNetworkPacket(proto, pkt)
		return
	}
	np := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	np.RXChecksumValidated = pkt.RXChecksumValidated
	s.Endpoint.DeliverNetworkPacket(proto, np)
	np.DecRef()
}

// refuse answers the SYN-only segment seg with a RST (RFC 9293 §3.10.7.1:
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>) written straight to the link.
func (s *shim) refuse(seg *segment) {
	b := buildRST(seg)
	hl := len(b) - header.TCPMinimumSize
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		ReserveHeaderBytes: int(s.MaxHeaderLength()) + len(b),
	})
	copy(pkt.TransportHeader().Push(header.TCPMinimumSize), b[hl:])
	copy(pkt.NetworkHeader().Push(hl), b[:hl])
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	if seg.v6 {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	}
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	s.Endpoint.AddHeader(pkt)
	var l gvstack.PacketBufferList
	l.PushBack(pkt)
	if _, err := s.Endpoint.WritePackets(l); err != nil {
		s.counters.RewriteErrors.Add(1)
	}
	pkt.DecRef()
}
