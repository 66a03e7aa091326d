package stack

import (
	"sync/atomic"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

// maxReasons bounds the eno.Reason values counted individually; larger
// values share the last slot.
const maxReasons = 32

// Counters are the per-packet and per-flow event counters of a Stack's ENO
// shim and connection layer. Per-packet events are counted, never logged.
// All fields are updated atomically; read them with Snapshot.
type Counters struct {
	// Shim, outgoing.
	Rewrites      atomic.Uint64 // segments grown by an ENO option
	NoRoom        atomic.Uint64 // ENO option wanted, no room: a non-SYN segment dropped (TCP retransmits), a SYN sent without
	MSSClamped    atomic.Uint64 // SYN-ACKs whose MSS was lowered to keep room for the non-SYN ENO option
	Split         atomic.Uint64 // segments cut in two so each piece fits the MTU with the ENO option
	GSOMSSLowered atomic.Uint64 // GSO super-packets given a smaller segment size so each segment fits the MTU with ENO
	RewriteErrors atomic.Uint64 // segments the shim could not parse or rewrite
	Unregistered  atomic.Uint64 // outgoing SYNs of flows nobody registered (sent without ENO)

	// Shim, incoming.
	Inspected      atomic.Uint64 // incoming segments handed to a negotiator
	BadChecksum    atomic.Uint64 // incoming segments not given to a negotiator: bad checksum
	OutOfWindow    atomic.Uint64 // incoming segments not given to a negotiator: ACK of the wrong ISN
	SYNDataDropped atomic.Uint64 // SYN payloads discarded (RFC 8547 §4.7)

	// Flow table.
	FlowsCreated   atomic.Uint64
	FlowsRemoved   atomic.Uint64
	FlowsExpired   atomic.Uint64 // removed by the half-open / unclaimed timeout
	FlowTableFull  atomic.Uint64 // flows refused because the table was full
	FlowsReplaced  atomic.Uint64 // a new SYN for a 4-tuple whose old flow was still listed
	NoFlowAtAccept atomic.Uint64 // accepted connections whose flow state was gone (reset unless policy is off)
	// Hostile inbound SYNs (spoofed floods): see flowTable.
	SYNsDropped        atomic.Uint64 // inbound SYNs dropped: no room for their ENO state (never answered plain)
	FlowsEvicted       atomic.Uint64 // oldest not-yet-accepted inbound flows evicted for a new SYN (inbound share full)
	FlowsSourceEvicted atomic.Uint64 // the same, because the SYN's source (address, IPv6 /64) was at its limit
	FlowsReset         atomic.Uint64 // half-open inbound flows freed by a RST
	FlowsDied          atomic.Uint64 // half-open inbound flows freed because the stack gave up the connection
	OrphanSYNACKs      atomic.Uint64 // SYN-ACKs of ENO listeners dropped: their flow was gone (never sent plain)

	// Negotiation outcomes.
	Enabled   atomic.Uint64
	Fallbacks [maxReasons]atomic.Uint64 // indexed by eno.Reason

	// Connection layer.
	Handshakes       atomic.Uint64 // tcpcrypt handshakes completed
	Resumed          atomic.Uint64 // of which resumed from a cached secret (RFC 8548 §3.5)
	HandshakeErrors  atomic.Uint64
	RequiredRefusals atomic.Uint64 // connections reset because policy required ENO
	ForwardLoops     atomic.Uint64 // forwarded SYNs from our own egress address (a routing loop), refused
	NoSACK           atomic.Uint64 // connections with a near peer opened without SACK (Options.SACKMinRTT)

	// Resumption cache (RFC 8548 §3.5), copied from tcpcrypt.Cache.Stats on
	// every sweep (resumecache.go).
	ResumeChains       atomic.Uint64 // chains held
	ResumeExpired      atomic.Uint64 // chains erased at the end of their lifetime
	ResumeEvictedOwn   atomic.Uint64 // chains dropped for a newer one of the same peer or prefix
	ResumeEvictedOther atomic.Uint64 // chains dropped for another prefix's (cache full, theirs the largest share)
	// Hostile-peer limits.
	RekeyFloods atomic.Uint64 // relays reset: the peer ran too many key generations ahead (tcpcrypt.ErrRekeyFlood)
	// Passive handshake limits (listen.go, handshakelimit.go); each event
	// resets the connection, none leaves it plain.
	HandshakesEvicted   atomic.Uint64 // waiting for the peer's first message, evicted to free a slot
	Init1Timeouts       atomic.Uint64 // no first message within Options.Init1Timeout
	HandshakeSourceBusy atomic.Uint64 // too many connections of one source waiting for its HandshakesPerSource slots
	HandshakeCPULimited atomic.Uint64 // source's key-exchange budget (Options.HandshakeBudget) spent
	// Relay limits and checks (RelayOptions).
	RelayLimitTotal  atomic.Uint64 // connections reset: a direction's relays at MaxOutbound/MaxInbound
	RelayLimitSource atomic.Uint64 // connections reset: their source's relays at MaxPerSource
	PeerTimeouts     atomic.Uint64 // relays reset because a peer stopped answering (keepalive or retransmission timeout)
	BackendLoops     atomic.Uint64 // backend dials refused: the address is routed into the device
}

func (c *Counters) fallback(r eno.Reason) {
	i := int(r)
	if i >= maxReasons {
		i = maxReasons - 1
	}
	c.Fallbacks[i].Add(1)
}

// Fallback returns how many flows fell back to plain TCP for reason r.
func (c *Counters) Fallback(r eno.Reason) uint64 {
	i := int(r)
	if i >= maxReasons {
		i = maxReasons - 1
	}
	return c.Fallbacks[i].Load()
}

// Snapshot returns the counters as name → value, with fallbacks named
// "fallback-<reason>" (only non-zero ones).
func (c *Counters) Snapshot() map[string]uint64 {
	m := map[string]uint64{
		"rewrites":          c.Rewrites.Load(),
		"no-room":           c.NoRoom.Load(),
		"mss-clamped":       c.MSSClamped.Load(),
		"split":             c.Split.Load(),
		"gso-mss-lowered":   c.GSOMSSLowered.Load(),
		"rewrite-errors":    c.RewriteErrors.Load(),
		"unregistered-syn":  c.Unregistered.Load(),
		"inspected":         c.Inspected.Load(),
		"bad-checksum":      c.BadChecksum.Load(),
		"out-of-window":     c.OutOfWindow.Load(),
		"syn-data-dropped":  c.SYNDataDropped.Load(),
		"no-sack":           c.NoSACK.Load(),
		"flows-created":     c.FlowsCreated.Load(),
		"flows-removed":     c.FlowsRemoved.Load(),
		"flows-expired":     c.FlowsExpired.Load(),
		"flow-table-full":   c.FlowTableFull.Load(),
		"flows-replaced":    c.FlowsReplaced.Load(),
		"no-flow-at-accept": c.NoFlowAtAccept.Load(),
		"syns-dropped":      c.SYNsDropped.Load(),
		"flows-evicted":     c.FlowsEvicted.Load(),
		"flows-src-evicted": c.FlowsSourceEvicted.Load(),
		"flows-reset":       c.FlowsReset.Load(),
		"flows-died":        c.FlowsDied.Load(),
		"orphan-syn-acks":   c.OrphanSYNACKs.Load(),
		"enabled":           c.Enabled.Load(),
		"handshakes":        c.Handshakes.Load(),
		"resumed":           c.Resumed.Load(),
		"handshake-errors":  c.HandshakeErrors.Load(),
		"required-refusals": c.RequiredRefusals.Load(),
		"forward-loops":     c.ForwardLoops.Load(),

		"resume-chains":         c.ResumeChains.Load(),
		"resume-expired":        c.ResumeExpired.Load(),
		"resume-evicted-own":    c.ResumeEvictedOwn.Load(),
		"resume-evicted-other":  c.ResumeEvictedOther.Load(),
		"rekey-floods":          c.RekeyFloods.Load(),
		"handshakes-evicted":    c.HandshakesEvicted.Load(),
		"init1-timeouts":        c.Init1Timeouts.Load(),
		"handshake-source-busy": c.HandshakeSourceBusy.Load(),
		"handshake-cpu-limited": c.HandshakeCPULimited.Load(),
	}
	m["relay-limit-total"] = c.RelayLimitTotal.Load()
	m["relay-limit-source"] = c.RelayLimitSource.Load()
	m["peer-timeouts"] = c.PeerTimeouts.Load()
	m["backend-loops"] = c.BackendLoops.Load()
	for i := range c.Fallbacks {
		if v := c.Fallbacks[i].Load(); v != 0 {
			m["fallback-"+eno.Reason(i).String()] = v
		}
	}
	return m
}
