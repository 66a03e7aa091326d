package stack

import (
	"errors"
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

	// When our SYN or SYN-ACK left, for the handshake's round-trip time
	// (peerRTTs); retransmitted: it left more than once, so the time says
	// nothing (Karn's rule).
	synSent   time.Time
	synResent bool
}

// sentSYN notes that our SYN or SYN-ACK left at now (f.mu held).
func (f *flow) sentSYN(now time.Time) {
	if f.synSent.IsZero() {
		f.synSent = now
	} else {
		f.synResent = true
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

// flowTable holds the flows of one shim. Lookups are per packet while any
// flow is busy, so the fast path checks busy first.
type flowTable struct {
	max      int
	halfOpen time.Duration // a flow still negotiating after this is dropped
	unclaim  time.Duration // a settled flow nobody claimed after this is dropped
	now      func() time.Time
	counters *Counters

	// busy counts listed flows that are not quiet. When it is zero, packets
	// other than incoming SYNs skip the shim entirely.
	busy atomic.Int64

	mu sync.RWMutex
	m  map[gvstack.TransportEndpointID]*flow // guarded by mu
}

func newFlowTable(max int, halfOpen, unclaim time.Duration, now func() time.Time, c *Counters) *flowTable {
	return &flowTable{
		max: max, halfOpen: halfOpen, unclaim: unclaim, now: now, counters: c,
		m: make(map[gvstack.TransportEndpointID]*flow),
	}
}

func (t *flowTable) lookup(id gvstack.TransportEndpointID) *flow {
	t.mu.RLock()
	f := t.m[id]
	t.mu.RUnlock()
	return f
}

// insert lists a new flow, replacing (and retiring) any flow listed for the
// same 4-tuple. It fails with ErrFlowTableFull when the table is full.
func (t *flowTable) insert(id gvstack.TransportEndpointID, kind flowKind, spec flowSpec) (*flow, error) {
	f := &flow{id: id, kind: kind, spec: spec, created: t.now(), ready: make(chan struct{})}
	t.mu.Lock()
	old := t.m[id]
	if old == nil && len(t.m) >= t.max {
		t.mu.Unlock()
		t.counters.FlowTableFull.Add(1)
		return nil, ErrFlowTableFull
	}
	t.m[id] = f
	t.busy.Add(1)
	t.mu.Unlock()
	t.counters.FlowsCreated.Add(1)
	if old != nil {
		t.counters.FlowsReplaced.Add(1)
		t.retire(old)
	}
	return f, nil
}

// remove unlists f if it is still the flow listed for its 4-tuple.
func (t *flowTable) remove(f *flow) {
	t.mu.Lock()
	if t.m[f.id] != f {
		t.mu.Unlock()
		return
	}
	delete(t.m, f.id)
	t.mu.Unlock()
	t.counters.FlowsRemoved.Add(1)
	t.retire(f)
}

// retire finishes an unlisted flow: it stops counting as busy, wakes any
// waiter and, unless a connection owns it, abandons its TEP session.
func (t *flowTable) retire(f *flow) {
	f.mu.Lock()
	wasQuiet := f.quiet
	f.quiet = true
	settled := f.settled
	f.settled = true
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
func (t *flowTable) claim(f *flow) {
	f.mu.Lock()
	f.claimed = true
	f.mu.Unlock()
}

// sweep drops flows still negotiating after halfOpen and settled flows that
// nobody claimed within unclaim. It returns how many it dropped.
func (t *flowTable) sweep() int {
	now := t.now()
	var drop []*flow
	t.mu.Lock()
	for id, f := range t.m {
		f.mu.Lock()
		age := now.Sub(f.created)
		stale := (!f.settled && age > t.halfOpen) || (f.settled && !f.claimed && age > t.unclaim)
		f.mu.Unlock()
		if stale {
			delete(t.m, id)
			drop = append(drop, f)
		}
	}
	t.mu.Unlock()
	for _, f := range drop {
		t.counters.FlowsExpired.Add(1)
		t.retire(f)
	}
	return len(drop)
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
	for id, f := range t.m {
		delete(t.m, id)
		all = append(all, f)
	}
	t.mu.Unlock()
	for _, f := range all {
		t.counters.FlowsRemoved.Add(1)
		t.retire(f)
	}
}
