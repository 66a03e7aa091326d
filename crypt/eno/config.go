package eno

import "fmt"

// Mode selects how ENO is used on a connection.
type Mode uint8

const (
	// ModeOpportunistic (the zero value) offers or answers ENO and falls
	// back to plain TCP when negotiation fails.
	ModeOpportunistic Mode = iota
	// ModeOff sends no ENO option at all, not even a vacuous one. Received
	// SYN data in SYN+ENO segments is still discarded (RFC 8547 §4.7).
	ModeOff
	// ModeRequired negotiates like ModeOpportunistic, but a fallback means
	// the connection must be refused: Negotiator.Required reports it, the
	// caller (the stack) aborts the connection when State is StateDisabled.
	ModeRequired
)

func (m Mode) String() string {
	switch m {
	case ModeOpportunistic:
		return "opportunistic"
	case ModeOff:
		return "off"
	case ModeRequired:
		return "required"
	}
	return fmt.Sprintf("mode-%d", uint8(m))
}

// Role is a host's ENO role (RFC 8547 §4.3): the host that sent b = 0 is A,
// the host that sent b = 1 is B.
type Role uint8

const (
	RoleA Role = iota
	RoleB
)

func (r Role) String() string {
	if r == RoleB {
		return "B"
	}
	return "A"
}

// TEPPolicy lets the TEP (tcpcrypt) take part in negotiation. It is
// implemented by tcpcrypt.Session. The Negotiator calls it with its lock
// held: implementations must not call back into the Negotiator.
type TEPPolicy interface {
	// Answer is called once on host B (passive opener or the b=1 side) with A's parsed SYN option.
	// It returns the suboptions for B's SYN-ACK, in increasing preference (normally exactly one,
	// already known valid). nil/empty => vacuous answer (45 03 01) and fallback.
	Answer(a SYNOption) []Suboption
	// Valid reports RFC 8547 §4.5 rule 2 for TEP id tep, given every suboption A and B sent for it.
	Valid(tep byte, a, b []Suboption) bool
}

// Config configures one connection's Negotiator. The zero value is an
// opportunistic active opener with b = 0 and a = 0, the RFC defaults
// (§4.2), but it needs a Policy and an Offer to negotiate anything.
type Config struct {
	Mode Mode
	// SetB makes an active opener send b = 1 (simultaneous open by prior
	// agreement; RFC 8547 §4.2 requires this API). Passive openers always
	// send b = 1.
	SetB bool
	// AppAware is our a bit (RFC 8547 §4.2; default 0).
	AppAware bool
	// MandatoryAppAware selects mandatory application-aware mode: we send
	// a = 1 (whatever AppAware says) and disable ENO unless the peer sent
	// a = 1 (§4.2, §8.4).
	MandatoryAppAware bool
	// Offer holds our SYN suboptions as active opener (also used in a
	// simultaneous open, where we may end up B). Ignored by NewPassive.
	Offer []Suboption
	// Policy is required unless Mode == ModeOff.
	Policy TEPPolicy
}

// localA is the a bit we send.
func (c *Config) localA() bool { return c.AppAware || c.MandatoryAppAware }

// global returns our global suboption byte for b.
func (c *Config) global(b bool) byte {
	var g byte
	if b {
		g |= GlobalB
	}
	if c.localA() {
		g |= GlobalA
	}
	return g
}

// State is a connection's ENO state.
type State uint8

const (
	// StateNegotiating: the outcome is not known yet.
	StateNegotiating State = iota
	// StateEnabled: an ACK carrying ENO was both sent and received and a
	// TEP was negotiated; the connection MUST now follow the TEP (§4.6).
	StateEnabled
	// StateDisabled: ENO fell back to plain TCP; see Result's FallbackError.
	StateDisabled
)

func (s State) String() string {
	switch s {
	case StateNegotiating:
		return "negotiating"
	case StateEnabled:
		return "enabled"
	case StateDisabled:
		return "disabled"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}

// Result is the outcome of a successful negotiation (RFC 8547 §4).
type Result struct {
	TEP          byte        // negotiated TEP identifier (no v bit)
	TEPByte      byte        // the byte B sent for it, v bit included (session ID byte 0, §5.1)
	Role         Role        // our role
	Transcript   []byte      // A's SYN ENO option || B's SYN ENO option, raw (RFC 8547 §4.8)
	ASubs, BSubs []Suboption // every suboption A resp. B sent for the negotiated TEP (copies)
	PeerAppAware bool        // the a bit the peer sent
}

// clone returns a deep copy of r, so callers never share bytes with the
// Negotiator.
func (r Result) clone() Result {
	r.Transcript = cloneBytes(r.Transcript)
	r.ASubs = cloneSubs(r.ASubs)
	r.BSubs = cloneSubs(r.BSubs)
	return r
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

func cloneSubs(s []Suboption) []Suboption {
	if s == nil {
		return nil
	}
	out := make([]Suboption, len(s))
	for i, x := range s {
		out[i] = Suboption{TEP: x.TEP, V: x.V, Data: cloneBytes(x.Data)}
	}
	return out
}
