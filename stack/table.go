package stack

import (
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Direction says which way a relayed connection goes.
type Direction uint8

const (
	// Outbound: a local application's connection (inner, plain) upgraded
	// by the forwarder to an outer connection with ENO offered.
	Outbound Direction = iota + 1
	// Inbound: a remote peer's connection to a service (outer, ENO
	// answered) relayed to a local backend (inner, plain).
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "unknown"
}

// ConnState is the lifecycle state of a table entry.
type ConnState uint32

const (
	StateConnecting ConnState = iota // the outer (outbound) or backend (inbound) leg is being set up
	StateRelaying                    // both legs up, data flows
	StateClosing                     // one direction finished or failed; the other is draining
)

func (s ConnState) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateRelaying:
		return "relaying"
	case StateClosing:
		return "closing"
	}
	return "unknown"
}

// Tuple is a TCP 4-tuple from the stack's point of view.
type Tuple struct {
	Local, Remote netip.AddrPort
}

// ConnInfo is a snapshot of one table entry.
type ConnInfo struct {
	ID        uint64
	Direction Direction
	State     ConnState
	Inner     Tuple // the plain leg (local application or backend)
	Outer     Tuple // the leg that negotiates ENO
	Start     time.Time

	Encrypted bool
	TEP       kex.ID
	AEAD      schedule.AEADID
	Resumed   bool
	SessionID []byte
	Reason    eno.Reason // why the outer leg is not encrypted (ReasonNone if it is)

	// Bytes relayed: from the inner leg to the outer one, and back.
	BytesInnerToOuter uint64
	BytesOuterToInner uint64
}

// tableEntry is one relayed connection. The relay that owns it updates the
// counters; everything else is written before the entry is visible or
// under the table lock.
type tableEntry struct {
	info  ConnInfo // immutable fields + negotiation, guarded by Table.mu after insert
	state atomic.Uint32
	in2out,
	out2in atomic.Uint64
	abort func() // resets both legs (Table.Abort); set once the relay runs
}

// Table lists the connections a Stack relays. Safe for concurrent use.
type Table struct {
	next atomic.Uint64
	mu   sync.Mutex
	m    map[uint64]*tableEntry // guarded by mu
	// byTuple indexes every entry's inner and outer tuples, each in both
	// orientations, so an application can find its connection from its
	// own socket's view (which is the stack's view reversed). Guarded by mu.
	byTuple map[Tuple]uint64
}

func newTable() *Table {
	return &Table{m: make(map[uint64]*tableEntry), byTuple: make(map[Tuple]uint64)}
}

// index lists tu (both orientations) for entry id (t.mu held).
func (t *Table) index(id uint64, tu Tuple) {
	if !tu.Local.IsValid() || !tu.Remote.IsValid() {
		return
	}
	t.byTuple[tu] = id
	t.byTuple[Tuple{Local: tu.Remote, Remote: tu.Local}] = id
}

// unindex removes tu for entry id, unless another entry took it over
// (t.mu held).
func (t *Table) unindex(id uint64, tu Tuple) {
	for _, k := range []Tuple{tu, {Local: tu.Remote, Remote: tu.Local}} {
		if t.byTuple[k] == id {
			delete(t.byTuple, k)
		}
	}
}

// remove unlists e and returns its last snapshot.
func (t *Table) remove(e *tableEntry) ConnInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, e.info.ID)
	t.unindex(e.info.ID, e.info.Inner)
	t.unindex(e.info.ID, e.info.Outer)
	return e.snapshot()
}

// Lookup finds the connection one of whose legs has the 4-tuple (local,
// remote), seen from either end: the application's own socket, the
// stack's side of either leg, or the wire.
func (t *Table) Lookup(local, remote netip.AddrPort) (ConnInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.byTuple[Tuple{Local: local, Remote: remote}]
	if !ok {
		return ConnInfo{}, false
	}
	return t.m[id].snapshot(), true
}

// add lists a new entry and returns it.
func (t *Table) add(dir Direction, inner, outer Tuple, start time.Time) *tableEntry {
	e := &tableEntry{info: ConnInfo{ID: t.next.Add(1), Direction: dir, Inner: inner, Outer: outer, Start: start}}
	t.mu.Lock()
	t.m[e.info.ID] = e
	t.index(e.info.ID, inner)
	t.index(e.info.ID, outer)
	t.mu.Unlock()
	return e
}

// setOuter records the outer leg's tuple and negotiation.
func (t *Table) setOuter(e *tableEntry, outer Tuple, n Negotiation) {
	t.mu.Lock()
	t.unindex(e.info.ID, e.info.Outer)
	t.index(e.info.ID, outer)
	e.info.Outer = outer
	e.info.Encrypted = n.Encrypted
	e.info.TEP, e.info.AEAD, e.info.Resumed = n.TEP, n.AEAD, n.Resumed
	e.info.SessionID = append([]byte(nil), n.SessionID...)
	e.info.Reason = n.Reason
	t.mu.Unlock()
}

// setInner records the inner leg's tuple.
func (t *Table) setInner(e *tableEntry, inner Tuple) {
	t.mu.Lock()
	t.unindex(e.info.ID, e.info.Inner)
	t.index(e.info.ID, inner)
	e.info.Inner = inner
	t.mu.Unlock()
}

func (t *Table) setAbort(e *tableEntry, f func()) {
	t.mu.Lock()
	e.abort = f
	t.mu.Unlock()
}

// snapshot returns e's current info (t.mu held).
func (e *tableEntry) snapshot() ConnInfo {
	ci := e.info
	ci.SessionID = append([]byte(nil), ci.SessionID...)
	ci.State = ConnState(e.state.Load())
	ci.BytesInnerToOuter = e.in2out.Load()
	ci.BytesOuterToInner = e.out2in.Load()
	return ci
}

// finish removes e from the table and reports its end to
// Options.OnConnDone.
func (s *Stack) finish(e *tableEntry, err error) {
	ci := s.table.remove(e)
	if f := s.opts.OnConnDone; f != nil {
		f(ci, err)
	}
}

// Len returns the number of entries.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// List returns a snapshot of every entry, oldest first.
func (t *Table) List() []ConnInfo {
	t.mu.Lock()
	out := make([]ConnInfo, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e.snapshot())
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Abort resets both legs of the relayed connection id. It reports whether
// the connection was found with its relay running.
func (t *Table) Abort(id uint64) bool {
	t.mu.Lock()
	e := t.m[id]
	var f func()
	if e != nil {
		f = e.abort
	}
	t.mu.Unlock()
	if f == nil {
		return false
	}
	f()
	return true
}

// tupleOf returns a connection's tuple (zero parts for non-TCP addresses).
func tupleOf(c net.Conn) Tuple {
	return Tuple{Local: addrPortOf(c.LocalAddr()), Remote: addrPortOf(c.RemoteAddr())}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok && ta != nil {
		return unmapAP(ta.AddrPort())
	}
	return netip.AddrPort{}
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Table returns the stack's connection table (connections the forwarder
// and the services relay).
func (s *Stack) Table() *Table { return s.table }
