package stack

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// Negotiator is what the shim needs from a connection's ENO state machine.
// *eno.Negotiator implements it.
type Negotiator interface {
	Outgoing(syn, ack bool) []byte
	Incoming(syn, ack bool, tcpOpts []byte, payloadLen int) (discardSYNData bool)
	State() eno.State
	Result() (eno.Result, error)
}

var _ Negotiator = (*eno.Negotiator)(nil)

// session is the TEP half of a flow. *tcpcrypt.Session implements it; the
// shim only needs Abandon, to release what an unused session reserved.
type session interface {
	Abandon()
}

// ErrFlowTableFull is returned when a flow cannot be registered because the
// table holds Options.MaxFlows flows.
var ErrFlowTableFull = errors.New("stack: ENO flow table full")

type flowKind uint8

const (
	flowActive  flowKind = iota // we send the SYN (Dial)
	flowPassive                 // we answer a SYN (Listen, forwarder)
)

// flowSpec is what a dialer or the passive factory supplies for a new flow.
type flowSpec struct {
	neg  Negotiator
	sess session // nil when no TEP session is attached (tests, ModeOff)
	mode eno.Mode
	// noSACK: the connection's SYN goes to gVisor, or to the wire, without
	// SACK-permitted (a near peer, Options.SACKMinRTT).
	noSACK bool
}

// flow is the ENO state of one TCP connection, keyed by its 4-tuple as the
// local stack sees it (gvstack.TransportEndpointID).
type flow struct {
	id      gvstack.TransportEndpointID
	kind    flowKind
	spec    flowSpec
	created time.Time

	// ready is closed once the negotiator has left eno.StateNegotiating.
	ready chan struct{}

	// mu serialises the shim's calls into the negotiator for this flow and
	// guards the fields below.
	mu           sync.Mutex
	localISN     uint32 // ISN of our SYN or SYN-ACK
	peerISN      uint32 // ISN of the peer's SYN
	haveLocalISN bool
	havePeerISN  bool
	rcvdNonSYN   bool // a non-SYN segment arrived (RFC 8547 §4.6: stop sending ENO)
	sentPlain    bool // a non-SYN segment left without ENO
	settled      bool // ready was closed and the outcome counted
	quiet        bool // nothing more to do per packet
	claimed      bool // a Dial or Accept took the flow; it is removed by its conn
	abandoned    bool // spec.sess.Abandon was called

	// Active opener: between the SYN-ACK and our answer to it, non-SYN
	// segments from the peer are recorded only after our answer (see
	// shim.incoming).
	gotSYNACK  bool
	sentNonSYN bool
	pending    []pendingSeg
	// sndMax: one past the highest sequence number we have sent, while
	// the shim still sees every segment (not quiet); what a segment of
	// the peer's may acknowledge (fromPeer).
	sndMax uint32

	// When our SYN or SYN-ACK left, for the handshake's round-trip time
	// (peerRTTs); retransmitted: it left more than once, so the time says
	// nothing (Karn's rule).
	synSent   time.Time
	synResent bool

	// lost: the flow was unlisted before its negotiation settled (evicted,
	// expired, reset or replaced), so its outcome is unknown and the
	// connection must not go on, plain or not (f.mu).
	lost bool

	// A passive flow nobody claimed yet (an embryo: the connection is
	// half-open, or complete but not yet accepted) is queued, oldest
	// first, in the table's embryo queue and in its source's; t.mu guards
	// these fields.
	src          netip.Prefix // sourcePrefix of the peer
	queued       bool
	prev, next   *flow // table's queue
	sprev, snext *flow // source's queue
}

// flowQueue is a FIFO of embryonic passive flows, linked through the flows
// themselves (one link pair for the table's queue, one for a source's).
type flowQueue struct {
	head, tail *flow
	n          int
}

// sentSYN notes that our SYN or SYN-ACK left at now (f.mu held).
func (f *flow) sentSYN(now time.Time) {
	if f.synSent.IsZero() {
		f.synSent = now
	} else {
		f.synResent = true
	}
}

// peerSeqWindow bounds how far past the peer's ISN the sequence number of
// the first non-SYN segment we accept from it may be: the peer cannot
// have sent more than our receive window before hearing from us, and
// the stack's receive buffer is far below this.
const peerSeqWindow = 16 << 20

// fromPeer reports whether a non-SYN segment is one the connection would
// accept from its peer: an ACK of data we sent (up to sndMax), with a
// sequence number at most a window past the peer's ISN. Only such a
// segment ends the active opener's duty to send ENO (RFC 8547 §4.6): a
// blind spoofer would have to guess both sequence spaces to end it early
// and so make B, whose first ACK then lacks ENO, fall back (f.mu held).
func (f *flow) fromPeer(seq, ack uint32, ackf bool) bool {
	if !f.haveLocalISN || !f.havePeerISN || !ackf {
		return false
	}
	acked := ack - (f.localISN + 1)
	inFlight := f.sndMax - (f.localISN + 1)
	return acked <= inFlight && seq-(f.peerISN+1) < peerSeqWindow
}

// sent records an outgoing segment's end for fromPeer (f.mu held).
func (f *flow) sent(seq uint32, n int, syn, fin bool) {
	end := seq + uint32(n)
	if syn {
		end++
	}
	if fin {
		end++
	}
	if syn || int32(end-f.sndMax) > 0 {
		f.sndMax = end
	}
}

// handshakeRTT is the time from our only SYN or SYN-ACK to now, when the
// handshake completed: the round trip plus the peer's turnaround and our
// own wake-up, an upper bound that is exact enough to tell near peers.
func (f *flow) handshakeRTT(now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.synSent.IsZero() || f.synResent {
		return 0, false
	}
	return now.Sub(f.synSent), true
}

// isQuiet reports whether the shim has nothing more to do for f.
func (f *flow) isQuiet() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.quiet
}

// pendingSeg is an incoming non-SYN segment whose negotiator call waits for
// our answer to the SYN-ACK.
type pendingSeg struct {
	ack        bool
	opts       []byte // copy
	payloadLen int
}

// maxPending bounds pendingSeg per flow; more are not recorded (a peer
// does not send many segments before our handshake ACK).
const maxPending = 4

// abandonLocked releases the flow's TEP session unless a connection owns it.
func (f *flow) abandonLocked() {
	if f.spec.sess != nil && !f.claimed && !f.abandoned {
		f.abandoned = true
		f.spec.sess.Abandon()
	}
}

// flowLimits configure a flowTable.
type flowLimits struct {
	max int // flows listed at most
	// reserve: entries only active flows may take; passive flows are
	// listed while fewer than max-reserve passive flows are.
	reserve int
	// perSource bounds the embryonic passive flows of one source
	// (sourcePrefix); a new one beyond it evicts the source's oldest.
	perSource  int
	halfOpen   time.Duration // an active flow still negotiating after this is dropped
	inHalfOpen time.Duration // a passive flow whose handshake did not complete after this is dropped
	unclaim    time.Duration // a settled flow nobody claimed after this is dropped
}

// flowTable holds the flows of one shim. Lookups are per packet while any
// flow is busy, so the fast path checks busy first.
//
// Inbound SYNs come from anyone, with any source address: passive flows
// may use at most max-reserve entries, so Dial always finds room; each
// source may hold perSource flows not yet accepted; and when the passive
// share is full, a new SYN evicts the oldest flow not yet accepted rather
// than being refused. A flood of spoofed SYNs then only shortens how long
// a half-open connection keeps its ENO state (share / flood rate), while a
// legitimate handshake needs it for one round trip.
type flowTable struct {
	lim      flowLimits
	now      func() time.Time
	counters *Counters
	limits   *limitLog

	// alive, if set, reports whether the stack still has an endpoint for a
	// 4-tuple (the sweep's test for a half-open connection that died).
	alive func(gvstack.TransportEndpointID) bool
	// dead receives the 4-tuples of embryonic flows the table dropped
	// (evicted, expired): their half-open connections are aborted by the
	// shim's sweeper (abortHalfOpen), so they do not go on without ENO
	// state. Full: the abort is skipped; accepting such a connection
	// finds no flow and resets it (Listener.settleConn).
	dead chan gvstack.TransportEndpointID

	// busy counts listed flows that are not quiet. When it is zero, packets
	// other than incoming SYNs skip the shim entirely.
	busy atomic.Int64

	mu      sync.RWMutex
	m       map[gvstack.TransportEndpointID]*flow // guarded by mu
	passive int                                   // listed passive flows; guarded by mu
	embryos flowQueue                             // guarded by mu
	bySrc   map[netip.Prefix]*flowQueue           // guarded by mu
}

// deadQueue bounds the 4-tuples waiting for abortHalfOpen.
const deadQueue = 1024

func newFlowTable(lim flowLimits, now func() time.Time, c *Counters, ll *limitLog) *flowTable {
	if lim.reserve >= lim.max {
		lim.reserve = lim.max - 1
	}
	if lim.perSource <= 0 {
		lim.perSource = lim.max
	}
	if lim.inHalfOpen <= 0 {
		lim.inHalfOpen = lim.halfOpen
	}
	if ll == nil {
		ll = newLimitLog(slog.New(slog.DiscardHandler), limitLogInterval, now)
	}
	return &flowTable{
		lim: lim, now: now, counters: c, limits: ll,
		dead:  make(chan gvstack.TransportEndpointID, deadQueue),
		m:     make(map[gvstack.TransportEndpointID]*flow),
		bySrc: make(map[netip.Prefix]*flowQueue),
	}
}

// Limit events of the flow table (limitLog names).
const (
	limitFlowEvicted       = "ENO flow table: inbound share full, oldest half-open flow evicted"
	limitFlowSourceEvicted = "ENO flow table: source at its half-open limit, its oldest flow evicted"
	limitFlowTableFull     = "ENO flow table full: connection refused"
)

func (t *flowTable) lookup(id gvstack.TransportEndpointID) *flow {
	t.mu.RLock()
	f := t.m[id]
	t.mu.RUnlock()
	return f
}

// insert lists a new flow, replacing (and retiring) any flow listed for the
// same 4-tuple. A passive flow may evict embryonic passive flows to make
// room (see flowTable). It fails with ErrFlowTableFull when there is no
// room.
func (t *flowTable) insert(id gvstack.TransportEndpointID, kind flowKind, spec flowSpec) (*flow, error) {
	f := &flow{id: id, kind: kind, spec: spec, created: t.now(), ready: make(chan struct{})}
	if kind == flowPassive {
		f.src = sourcePrefix(netipFrom(id.RemoteAddress))
	}
	var replaced *flow
	var evicted, srcEvicted []*flow
	t.mu.Lock()
	if old := t.m[id]; old != nil {
		t.unlistLocked(old)
		replaced = old
	}
	if kind == flowPassive {
		if q := t.bySrc[f.src]; q != nil && q.n >= t.lim.perSource {
			v := q.head
			t.unlistLocked(v)
			srcEvicted = append(srcEvicted, v)
		}
		for t.passive >= t.lim.max-t.lim.reserve || len(t.m) >= t.lim.max {
			v := t.embryos.head
			if v == nil {
				break
			}
			t.unlistLocked(v)
			evicted = append(evicted, v)
		}
	}
	full := len(t.m) >= t.lim.max || kind == flowPassive && t.passive >= t.lim.max-t.lim.reserve
	if !full {
		t.m[id] = f
		if kind == flowPassive {
			t.passive++
			t.enqueueLocked(f)
		}
		t.busy.Add(1)
	}
	t.mu.Unlock()
	if replaced != nil {
		t.counters.FlowsReplaced.Add(1)
		t.retire(replaced)
	}
	for _, v := range srcEvicted {
		t.counters.FlowsSourceEvicted.Add(1)
		t.limits.hit(limitFlowSourceEvicted, "source", v.src.String(), "limit", t.lim.perSource)
		t.drop(v)
	}
	for _, v := range evicted {
		t.counters.FlowsEvicted.Add(1)
		t.limits.hit(limitFlowEvicted, "inbound_share", t.lim.max-t.lim.reserve)
		t.drop(v)
	}
	if full {
		t.counters.FlowTableFull.Add(1)
		t.limits.hit(limitFlowTableFull, "max_flows", t.lim.max, "outbound_reserve", t.lim.reserve, "inbound", kind == flowPassive)
		return nil, ErrFlowTableFull
	}
	t.counters.FlowsCreated.Add(1)
	return f, nil
}

// unlistLocked removes f from the map and the queues (t.mu held).
func (t *flowTable) unlistLocked(f *flow) {
	delete(t.m, f.id)
	if f.kind == flowPassive {
		t.passive--
	}
	t.dequeueLocked(f)
}

// enqueueLocked appends the embryonic passive flow f to the table's queue
// and its source's (t.mu held).
func (t *flowTable) enqueueLocked(f *flow) {
	f.queued = true
	f.prev, f.next = t.embryos.tail, nil
	if t.embryos.tail != nil {
		t.embryos.tail.next = f
	} else {
		t.embryos.head = f
	}
	t.embryos.tail = f
	t.embryos.n++
	q := t.bySrc[f.src]
	if q == nil {
		q = &flowQueue{}
		t.bySrc[f.src] = q
	}
	f.sprev, f.snext = q.tail, nil
	if q.tail != nil {
		q.tail.snext = f
	} else {
		q.head = f
	}
	q.tail = f
	q.n++
}

// dequeueLocked takes f out of the queues if it is in them (t.mu held).
func (t *flowTable) dequeueLocked(f *flow) {
	if !f.queued {
		return
	}
	f.queued = false
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		t.embryos.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		t.embryos.tail = f.prev
	}
	t.embryos.n--
	f.prev, f.next = nil, nil
	q := t.bySrc[f.src]
	if f.sprev != nil {
		f.sprev.snext = f.snext
	} else {
		q.head = f.snext
	}
	if f.snext != nil {
		f.snext.sprev = f.sprev
	} else {
		q.tail = f.sprev
	}
	f.sprev, f.snext = nil, nil
	if q.n--; q.n == 0 {
		delete(t.bySrc, f.src)
	}
}

// remove unlists f if it is still the flow listed for its 4-tuple.
func (t *flowTable) remove(f *flow) {
	if t.unlist(f) {
		t.counters.FlowsRemoved.Add(1)
		t.retire(f)
	}
}

// unlist removes f from the table if it is still listed, and reports
// whether it was.
func (t *flowTable) unlist(f *flow) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[f.id] != f {
		return false
	}
	t.unlistLocked(f)
	return true
}

// drop retires the unlisted flow f and, if it is a passive flow nobody
// claimed, queues its 4-tuple for abortHalfOpen while there is room.
func (t *flowTable) drop(f *flow) {
	t.retire(f)
	f.mu.Lock()
	claimed := f.claimed
	f.mu.Unlock()
	if f.kind != flowPassive || claimed {
		return // a connection owns it: never abort that one
	}
	select {
	case t.dead <- f.id:
	default:
	}
}

// retire finishes an unlisted flow: it stops counting as busy, wakes any
// waiter and, unless a connection owns it, abandons its TEP session.
func (t *flowTable) retire(f *flow) {
	f.mu.Lock()
	wasQuiet := f.quiet
	f.quiet = true
	settled := f.settled
	f.settled = true
	if !settled {
		f.lost = true
	}
	f.abandonLocked()
	f.mu.Unlock()
	if !wasQuiet {
		t.busy.Add(-1)
	}
	if !settled {
		close(f.ready)
	}
}

// update runs after every negotiator call on f (f.mu held): it settles the
// flow once negotiation is over and marks it quiet once the shim has
// nothing more to add or record (RFC 8547 §4.6: ENO goes into every segment
// until encryption is disabled or a non-SYN segment has been received).
func (t *flowTable) update(f *flow) {
	st := f.spec.neg.State()
	if st == eno.StateNegotiating {
		return
	}
	if !f.settled {
		f.settled = true
		close(f.ready)
		if st == eno.StateEnabled {
			t.counters.Enabled.Add(1)
		} else {
			_, err := f.spec.neg.Result()
			var fe *eno.FallbackError
			r := eno.ReasonNone
			if errors.As(err, &fe) {
				r = fe.Reason
			}
			t.counters.fallback(r)
			f.abandonLocked()
		}
	}
	if !f.quiet && (st == eno.StateDisabled || f.rcvdNonSYN || f.sentPlain) {
		f.quiet = true
		t.busy.Add(-1)
	}
}

// claim marks f as taken by a connection, which removes it when it closes.
// It reports false if f is no longer listed (evicted or expired meanwhile):
// the connection then has no ENO state.
func (t *flowTable) claim(f *flow) bool {
	t.mu.Lock()
	listed := t.m[f.id] == f
	if listed {
		t.dequeueLocked(f)
	}
	f.mu.Lock()
	f.claimed = true
	f.mu.Unlock()
	t.mu.Unlock()
	return listed
}

// completed takes the passive flow f, whose handshake completed (the
// peer's first ACK arrived), out of the embryo queues: it is no longer
// half-open, counts no more against its source and is not evicted; it
// waits for the listener to claim it (unclaim).
func (t *flowTable) completed(f *flow) {
	t.mu.Lock()
	if t.m[f.id] == f {
		t.dequeueLocked(f)
	}
	t.mu.Unlock()
}

// wasLost reports whether f was unlisted before it settled.
func (f *flow) wasLost() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lost
}

// sweep drops active flows still negotiating after halfOpen, passive
// flows nobody claimed whose handshake did not complete within inHalfOpen,
// and settled flows that nobody claimed within unclaim; and passive flows
// whose half-open connection the stack no longer has (it gave up the
// SYN-ACK retransmissions, or took a RST the shim did not match). It
// returns how many it dropped.
func (t *flowTable) sweep() int {
	now := t.now()
	var drop, probe []*flow
	t.mu.Lock()
	for _, f := range t.m {
		f.mu.Lock()
		age := now.Sub(f.created)
		var stale bool
		switch {
		case f.kind == flowPassive && !f.claimed && !f.rcvdNonSYN:
			// Handshake not seen complete. (A flow that fell back at
			// the SYN is quiet and never records the ACK: it gets no
			// longer than a half-open one either.)
			stale = age > t.lim.inHalfOpen
		case !f.settled:
			stale = age > t.lim.halfOpen
		default:
			stale = !f.claimed && age > t.lim.unclaim
		}
		// A SYN-ACK sent twice came from a half-open endpoint of the
		// stack (cookies are never retransmitted): if that endpoint is
		// gone, so is the connection.
		dying := !stale && f.kind == flowPassive && !f.claimed && f.synResent
		f.mu.Unlock()
		if stale {
			t.unlistLocked(f)
			drop = append(drop, f)
		} else if dying && t.alive != nil {
			probe = append(probe, f)
		}
	}
	t.mu.Unlock()
	for _, f := range drop {
		t.counters.FlowsExpired.Add(1)
		t.drop(f)
	}
	n := len(drop)
	for _, f := range probe {
		if !t.alive(f.id) && t.unlist(f) {
			t.counters.FlowsDied.Add(1)
			t.retire(f)
			n++
		}
	}
	return n
}

// resetBy unlists the passive flow f, not yet claimed and whose handshake
// has not completed, when a RST with sequence number seq arrives for it
// that resets the half-open connection: seq is exactly the one after the
// peer's ISN (RFC 5961 §3.2; what a host that never sent the SYN answers
// to our SYN-ACK, RFC 9293 §3.10.7.1). It reports whether it did.
func (t *flowTable) resetBy(f *flow, seq uint32) bool {
	f.mu.Lock()
	ok := f.kind == flowPassive && !f.claimed && !f.rcvdNonSYN && f.havePeerISN && seq == f.peerISN+1
	f.mu.Unlock()
	if !ok || !t.unlist(f) {
		return false
	}
	t.counters.FlowsReset.Add(1)
	t.retire(f)
	return true
}

// dropUnclaimed drops the passive flows nobody claimed for which gone
// reports true (a closed listener's: their connections are reset with it),
// and returns how many.
func (t *flowTable) dropUnclaimed(gone func(gvstack.TransportEndpointID) bool) int {
	var cand []*flow
	t.mu.RLock()
	for _, f := range t.m {
		if f.kind != flowPassive {
			continue
		}
		f.mu.Lock()
		claimed := f.claimed
		f.mu.Unlock()
		if !claimed {
			cand = append(cand, f)
		}
	}
	t.mu.RUnlock()
	n := 0
	for _, f := range cand {
		if gone(f.id) && t.unlist(f) {
			t.counters.FlowsRemoved.Add(1)
			t.drop(f)
			n++
		}
	}
	return n
}

// len returns the number of listed flows.
func (t *flowTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// clear unlists every flow (stack shutdown).
func (t *flowTable) clear() {
	t.mu.Lock()
	all := make([]*flow, 0, len(t.m))
	for _, f := range t.m {
		all = append(all, f)
	}
	for _, f := range all {
		t.unlistLocked(f)
	}
	t.mu.Unlock()
	for _, f := range all {
		t.counters.FlowsRemoved.Add(1)
		t.retire(f)
	}
}
