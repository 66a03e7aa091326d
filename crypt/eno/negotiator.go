package eno

import (
	"fmt"
	"sync"
)

// Negotiator is the ENO state machine of one TCP connection (RFC 8547 §4.3-
// §4.8), driven by the segments it sends and receives: the stack's
// link-layer shim calls Outgoing for every segment it is about to send and
// Incoming for every segment received on the flow (RST segments excluded).
// Safe for concurrent use.
//
// Negotiator only decides options. It never asks for SYN data: no tcpcrypt
// TEP defines SYN data, so a SYN+ENO segment we send must carry none
// (§4.7), and that is the stack's job (it sends none and offers no TCP Fast
// Open). Received SYN data is the subject of Incoming's return value.
type Negotiator struct {
	// cfg and active are set at construction and never change.
	cfg    Config
	active bool // constructed by NewActive: we send a SYN-only
	localB bool // the b bit we send

	mu sync.Mutex // guards every field below

	state  State
	reason Reason // why, when state == StateDisabled
	detail string

	// Our SYN-form option, exactly as sent in every SYN and SYN-ACK (§4.6
	// forbids changing it). Active opener: built at construction. Passive
	// opener: built once, from Policy.Answer, when the peer's SYN arrives.
	own        []byte
	ownSubs    []Suboption // parsed from own (aliases it)
	sendSYNOpt bool        // SYN segments carry own (cleared by disable)

	// The peer's SYN-form option: a private copy of the first well-formed
	// one received (the transcript needs the exact bytes, §4.8).
	peerRaw   []byte
	peer      SYNOption // parsed from peerRaw (aliases it)
	peerSeen  bool      // a SYN (any) from the peer has been received
	peerA     bool      // the a bit the peer sent
	peerAKnow bool      // peerA is known (the peer's SYN had one good ENO option)

	sentSYN    bool // a SYN segment carrying ENO was sent
	sentACKENO bool // an ACK segment carrying ENO was sent
	rcvdACKENO bool // the first ACK segment received carried ENO
	firstACK   bool // the first ACK segment has been received
	rcvdNonSYN bool // a non-SYN segment has been received: stop sending ENO

	decided bool   // res holds the negotiated outcome (not yet enabled)
	res     Result // internal; Result() hands out clones
}

// NewActive returns the Negotiator of a connection on which we send the SYN
// (an active opener, possibly ending in a simultaneous open). Our SYN-form
// option carries the global suboption only when it is not 0x00 (b = SetB,
// a = AppAware or MandatoryAppAware), then cfg.Offer.
func NewActive(cfg Config) *Negotiator {
	n := newNegotiator(cfg, true, cfg.SetB)
	if n.state == StateDisabled {
		return n
	}
	g := cfg.global(n.localB)
	opt, err := AppendSYNForm(nil, g, g != 0, cfg.Offer)
	if err != nil {
		n.disable(ReasonConfig, fmt.Sprintf("offer: %v", err))
		return n
	}
	n.setOwn(opt)
	return n
}

// NewPassive returns the Negotiator of a connection on which we answer a
// SYN. A passive opener always sends b = 1 (§4.2) and is therefore B; its
// SYN-ACK option is built from cfg.Policy.Answer when the SYN arrives.
func NewPassive(cfg Config) *Negotiator {
	return newNegotiator(cfg, false, true)
}

func newNegotiator(cfg Config, active, b bool) *Negotiator {
	cfg.Offer = nil // encoded into own by NewActive; not kept
	n := &Negotiator{cfg: cfg, active: active, localB: b}
	switch {
	case cfg.Mode == ModeOff:
		n.disable(ReasonPolicyOff, "")
	case cfg.Mode != ModeOpportunistic && cfg.Mode != ModeRequired:
		n.disable(ReasonConfig, fmt.Sprintf("unknown mode %d", uint8(cfg.Mode)))
	case cfg.Policy == nil:
		n.disable(ReasonConfig, "no TEP policy")
	}
	return n
}

// setOwn freezes our SYN-form option. opt was produced by AppendSYNForm, so
// it parses; parsing it (rather than keeping the inputs) guarantees the
// negotiation uses exactly what is on the wire.
func (n *Negotiator) setOwn(opt []byte) {
	o, err := ParseSYNForm(opt)
	if err != nil { // unreachable: AppendSYNForm output always parses
		n.disable(ReasonConfig, fmt.Sprintf("own option does not parse: %v", err))
		return
	}
	n.own, n.ownSubs, n.sendSYNOpt = opt, o.Subs, true
}

// disable falls back to plain TCP. The first reason wins; every call stops
// all further ENO options (§4.6: "refrain from sending any further ENO
// options").
func (n *Negotiator) disable(r Reason, detail string) {
	n.sendSYNOpt = false
	if n.state == StateDisabled {
		return
	}
	n.state, n.reason, n.detail = StateDisabled, r, detail
	n.decided, n.res = false, Result{}
}

// maybeEnable applies §4.6: "Once a host has both sent and received an ACK
// segment containing an ENO option, encryption MUST be enabled" — given
// that a TEP was negotiated.
func (n *Negotiator) maybeEnable() {
	if n.state == StateNegotiating && n.decided && n.sentACKENO && n.rcvdACKENO {
		n.state = StateEnabled
	}
}

// Outgoing returns the ENO option (whole: kind, length, contents) to append
// to a segment we are about to send with the given SYN and ACK flags, or nil
// for none. The caller must send what it gets: Outgoing records it. The
// returned slice is a fresh copy.
//
//   - SYN-only (active opener): our SYN-form option, the same bytes on every
//     retransmission (§4.6).
//   - SYN-ACK: passive opener: b = 1 plus the Policy's answer, the same bytes
//     on every retransmission; a vacuous 45 03 01 (a = 0) if the answer was
//     empty (allowed because the SYN carried ENO, §4.6). Simultaneous open:
//     the same bytes as our SYN-only. After a fallback: nothing (§4.6 allows
//     an active opener to leave ENO out of its simultaneous-open SYN-ACK).
//   - non-SYN: the non-SYN form 45 02 until ENO is disabled or a non-SYN
//     segment has been received (§4.6), so in particular in the active
//     opener's third segment.
func (n *Negotiator) Outgoing(syn, ack bool) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	opt := n.option(syn, ack)
	if opt == nil {
		return nil
	}
	if syn {
		n.sentSYN = true
	}
	if ack { // SYN-ACKs included
		n.sentACKENO = true
		n.maybeEnable()
	}
	return cloneBytes(opt)
}

// Peek returns what Outgoing would return for a segment with these flags,
// without recording anything. A caller that may fail to fit the option
// into the segment should Peek first and call Outgoing only once it knows
// the option will be sent: an ACK recorded as carrying ENO that did not
// can enable encryption on this side only (a type-2 failure, §9).
func (n *Negotiator) Peek(syn, ack bool) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return cloneBytes(n.option(syn, ack))
}

// option returns the option for a segment with these flags (not a copy),
// or nil.
func (n *Negotiator) option(syn, ack bool) []byte {
	if syn {
		if !n.sendSYNOpt || (!ack && !n.active) { // a passive opener sends no SYN-only
			return nil
		}
		return n.own
	}
	if n.state == StateDisabled || n.rcvdNonSYN || !n.sentSYN {
		return nil
	}
	return NonSYNForm
}

// Incoming records a received segment: its flags, its TCP options area
// (the bytes after the 20-byte fixed header) and its payload length.
//
// It returns discardSYNData=true when the segment is a SYN with payload that
// carries an ENO option (kind 69, or the legacy kind 253/0x454E, or an area
// too malformed to tell): since no TEP we implement defines SYN data, such
// data is discarded in every case (§4.7), even with ENO off by
// configuration. The caller must then drop the payload, acknowledge only
// the peer's ISN and take data only from non-SYN segments.
//
// Decision: non-SYN segments received before any SYN from the peer, and
// non-SYN segments without ACK, are ignored: TCP discards them (RFC 9293
// §3.10.7.2-4), so they are not part of the handshake and must not force a
// fallback or stop our ENO options.
func (n *Negotiator) Incoming(syn, ack bool, tcpOpts []byte, payloadLen int) (discardSYNData bool) {
	enos, legacy, err := Options(tcpOpts)
	discardSYNData = syn && payloadLen > 0 && (len(enos) > 0 || legacy || err != nil)

	n.mu.Lock()
	defer n.mu.Unlock()
	if syn {
		n.incomingSYN(ack, enos, legacy, err)
	} else {
		n.incomingNonSYN(ack, enos, err)
	}
	return discardSYNData
}

// incomingSYN handles a received SYN-only or SYN-ACK.
func (n *Negotiator) incomingSYN(ack bool, enos [][]byte, legacy bool, areaErr error) {
	opt, reason, detail := classifySYN(enos, legacy, areaErr)
	first := !n.peerSeen
	n.peerSeen = true
	if first && reason == ReasonNone {
		n.peerA, n.peerAKnow = opt.A(), true // readable even after a fallback (§4.2)
	}
	// §4.6 rule 1 covers every segment received up to and including the
	// first ACK segment.
	inRule1 := !n.firstACK
	isFirstACK := ack && !n.firstACK
	if ack {
		n.firstACK = true
	}
	if n.state == StateDisabled && !n.sendSYNOpt {
		return // fallen back: the rest is plain TCP
	}
	if !inRule1 {
		return // a SYN after the first ACK (a late duplicate): nothing to decide
	}
	if reason != ReasonNone {
		if !first {
			detail += " (in a later SYN)"
		}
		n.disable(reason, detail)
		return
	}
	if first {
		n.peerRaw = cloneBytes(opt.Raw)
		n.peer, _ = ParseSYNForm(n.peerRaw) // same bytes as opt: parses
		n.decide()
	}
	// Decision: a later SYN (a retransmission, or the SYN-ACK after the
	// SYN-only of a simultaneous open) whose option is well-formed but
	// differs from the first is ignored and the first one kept. §4.6
	// forbids a host to change it, so a difference is a middlebox's doing;
	// the transcript makes the TEP fail if the first copy was the altered
	// one, while disabling here could put us out of step with a peer that
	// has already enabled encryption.
	if isFirstACK && n.state == StateNegotiating {
		n.rcvdACKENO = true
		n.maybeEnable()
	}
}

// classifySYN applies §4.1, §4.4 and §11 to the ENO options found in a SYN:
// exactly one well-formed kind-69 option is usable.
//
// Decision (legacy kind 253, ExID 0x454E, §11): we never send it (ENO-1).
// Received in a SYN next to a kind-69 option, it makes two ENO options in
// one SYN, which §4.1 says to treat as none: fallback. Received alone, we
// do not speak the legacy encoding (its transcript and roles differ), so it
// counts as no ENO: fallback. Both report ReasonLegacyOption so operators
// can count legacy peers. In non-SYN segments it is ignored: only kind 69
// acknowledges ENO.
func classifySYN(enos [][]byte, legacy bool, areaErr error) (SYNOption, Reason, string) {
	switch {
	case areaErr != nil:
		return SYNOption{}, ReasonMalformed, "options area: " + areaErr.Error()
	case legacy && len(enos) > 0:
		return SYNOption{}, ReasonLegacyOption, "kind 69 and legacy kind 253/0x454E in one SYN"
	case legacy:
		return SYNOption{}, ReasonLegacyOption, "only legacy kind 253/0x454E ENO"
	case len(enos) == 0:
		return SYNOption{}, ReasonNoENO, "SYN without ENO"
	case len(enos) > 1:
		return SYNOption{}, ReasonMultipleENO, fmt.Sprintf("%d ENO options in one SYN", len(enos))
	}
	opt, err := ParseSYNForm(enos[0])
	if err != nil {
		return SYNOption{}, ReasonMalformed, err.Error()
	}
	return opt, ReasonNone, ""
}

// incomingNonSYN handles a received segment without SYN.
func (n *Negotiator) incomingNonSYN(ack bool, enos [][]byte, areaErr error) {
	if !n.peerSeen || !ack {
		return // see the Decision on Incoming
	}
	n.rcvdNonSYN = true // §4.6: stop sending ENO from now on
	defer n.checkStuck()
	if n.firstACK {
		return
	}
	n.firstACK = true
	if n.state == StateDisabled {
		n.sendSYNOpt = false
		return
	}
	// §4.6 rule 1: the first ACK must carry ENO. Any kind-69 option counts,
	// several count as one, contents are ignored (§4.1); a kind-69 option
	// found before a malformed part of the area still counts.
	if len(enos) == 0 {
		if areaErr != nil {
			n.disable(ReasonMalformed, "first ACK: options area: "+areaErr.Error())
		} else {
			n.disable(ReasonStripped, "first ACK without ENO")
		}
		return
	}
	n.rcvdACKENO = true
	n.maybeEnable()
}

// checkStuck falls back when encryption can no longer be enabled: a non-SYN
// segment has arrived, so we send no more ENO options (§4.6), yet we never
// sent an ACK segment carrying one. It happens only if the caller sent a
// SYN-ACK or ACK without consulting Outgoing; without it the connection
// would stay StateNegotiating for ever.
func (n *Negotiator) checkStuck() {
	if n.state == StateNegotiating && n.rcvdNonSYN && !n.sentACKENO {
		n.disable(ReasonLocal, "no ACK segment carrying ENO was sent before the peer's first non-SYN segment")
	}
}

// State returns the connection's ENO state.
func (n *Negotiator) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Result is valid once State()==StateEnabled; otherwise the error is a
// *FallbackError (disabled) or ErrPending (still negotiating). The Result
// is a deep copy.
func (n *Negotiator) Result() (Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state {
	case StateEnabled:
		return n.res.clone(), nil
	case StateDisabled:
		return Result{}, &FallbackError{Reason: n.reason, Detail: n.detail}
	}
	return Result{}, ErrPending
}

// Required reports whether the connection is in ModeRequired: a fallback
// (StateDisabled) means the caller must refuse or abort it.
func (n *Negotiator) Required() bool { return n.cfg.Mode == ModeRequired }

// Role returns our role as given by the b bit we send (§4.3). It is the
// connection's role only if negotiation succeeds.
func (n *Negotiator) Role() Role {
	if n.localB {
		return RoleB
	}
	return RoleA
}

// PeerAppAware returns the a bit the peer sent in its SYN-form option
// (§4.2 requires an API to read it), also when ENO fell back; known is
// false if no single well-formed ENO option was received in the peer's
// first SYN.
func (n *Negotiator) PeerAppAware() (a, known bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peerA, n.peerAKnow
}

// Disable turns ENO off while the connection is still negotiating, with
// reason r (ReasonLocal if r is ReasonNone): no more ENO options are sent.
// An active opener may do so between retransmissions of its SYN-only, to
// get past middleboxes that drop SYNs with ENO (§4.6). It returns false,
// and changes nothing, once encryption is enabled: then only aborting the
// connection is safe.
func (n *Negotiator) Disable(r Reason, detail string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == StateEnabled {
		return false
	}
	if r == ReasonNone {
		r = ReasonLocal
	}
	n.disable(r, detail)
	return true
}
