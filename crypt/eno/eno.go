// Package eno implements TCP-ENO, the TCP Encryption Negotiation Option
// (RFC 8547).
//
// It has two halves:
//
//   - the option codec: SYN-form options (ParseSYNForm, AppendSYNForm and
//     the allocation-free SuboptionIterator underneath), the non-SYN form
//     (NonSYNForm), and Options, which finds ENO options in a TCP options
//     area and reports why an area or option is ill-formed (*ParseError);
//   - the per-connection negotiation state machine (Negotiator), driven by
//     the segments a connection sends and receives. It assigns the roles A
//     and B from the b bits, picks the negotiated TEP (the last valid TEP in
//     B's option, RFC 8547 §4.5), keeps the exact bytes of both SYN-form
//     options for the transcript (§4.8), applies every fallback rule of §4.6
//     and enables encryption only once an ACK carrying ENO was both sent and
//     received.
//
// The package knows nothing of packets or of any TEP: a TEP (tcpcrypt) takes
// part through the TEPPolicy interface, and the network stack's link-layer
// shim calls Negotiator.Outgoing and Negotiator.Incoming.
//
// docs/conformance/rfc8547.md lists every RFC 8547 requirement (ENO-n)
// with the test that covers it or the reason none applies; the choices
// made where the RFC leaves room are in docs/decisions.md.
package eno

import "errors"

// Kind is the TCP option kind of ENO (RFC 8547 §11, Table 2).
const Kind = 69

// Global suboption bits (RFC 8547 §4.2, Figure 5).
const (
	GlobalB byte = 0x01 // passive role bit
	GlobalA byte = 0x02 // application-aware bit
)

// Wire constants of the option format (RFC 8547 §4.1, §4.4, §11).
const (
	// MaxOptionLen is the largest ENO option that fits a TCP header: the whole
	// TCP options area is at most 40 bytes.
	MaxOptionLen = 40
	// maxAreaLen is the largest TCP options area (data offset 15 words).
	maxAreaLen = 40

	globalZBits   byte = 0x1c // z1, z2, z3: sent as 0, ignored on receipt
	vBit          byte = 0x80
	firstTEP      byte = 0x20 // glt >= 0x20 is a TEP identifier
	maxLengthData      = 32   // a length byte covers 1..32 data bytes

	kindEOL     = 0
	kindNOP     = 1
	kindExp     = 253    // RFC 6994 experimental option, used by legacy ENO
	legacyExID  = 0x454E // ExID of legacy ENO under kind 253 ("EN")
	legacyMinLn = 4      // kind, len and the 2-byte ExID
)

// ErrPending is returned by Negotiator.Result while negotiation is still
// running.
var ErrPending = errors.New("eno: negotiation pending")
