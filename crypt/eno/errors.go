package eno

import "fmt"

// ParseReason says why an ENO option or a TCP options area is ill-formed.
// String gives a short kebab-case word for counters and logs.
type ParseReason uint8

// Parse failure reasons.
const (
	parseNone ParseReason = iota
	// ParseTooShort: fewer than two bytes, so no kind and length.
	ParseTooShort
	// ParseWrongKind: the kind byte is not 69.
	ParseWrongKind
	// ParseBadOptionLength: the option's length byte is below 2 or does not
	// match the bytes given (RFC 8547 §4.1, Figure 1: Len = N+2).
	ParseBadOptionLength
	// ParseLengthPastEnd: a length byte says the suboption data would run past
	// the end of the option, including a length byte in the last or the
	// next-to-last position (RFC 8547 §4.4, rule 1).
	ParseLengthPastEnd
	// ParseLengthNotTEP: a length byte is followed by a byte in 0x00-0x9f,
	// i.e. not a TEP identifier with v = 1 (RFC 8547 §4.4, rule 2).
	ParseLengthNotTEP
	// ParseAreaTooLong: the TCP options area is longer than 40 bytes.
	ParseAreaTooLong
	// ParseAreaTruncated: the area ends right after an option kind, before its
	// length byte.
	ParseAreaTruncated
	// ParseAreaBadLength: an option in the area has a length byte below 2.
	ParseAreaBadLength
	// ParseAreaPastEnd: an option's length runs past the end of the area.
	ParseAreaPastEnd
)

var parseReasonNames = [...]string{
	parseNone:            "none",
	ParseTooShort:        "too-short",
	ParseWrongKind:       "wrong-kind",
	ParseBadOptionLength: "bad-option-length",
	ParseLengthPastEnd:   "length-past-end",
	ParseLengthNotTEP:    "length-not-tep",
	ParseAreaTooLong:     "area-too-long",
	ParseAreaTruncated:   "area-truncated",
	ParseAreaBadLength:   "area-bad-length",
	ParseAreaPastEnd:     "area-past-end",
}

func (r ParseReason) String() string {
	if int(r) < len(parseReasonNames) {
		return parseReasonNames[r]
	}
	return fmt.Sprintf("parse-reason-%d", uint8(r))
}

// ParseError reports an ill-formed ENO option or TCP options area. Per
// RFC 8547 §4.4 and §4.6 an ill-formed SYN-form option means: ignore it and
// disable encryption.
type ParseError struct {
	Reason ParseReason
	// Offset is the byte offset of the offending byte within the option (for
	// option errors) or within the options area (for area errors).
	Offset int
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("eno: ill-formed option: %s at offset %d", e.Reason, e.Offset)
}

// Reason says why ENO was disabled on a connection. String gives a short
// kebab-case word for counters and logs.
type Reason uint8

// Fallback reasons.
const (
	ReasonNone Reason = iota
	// ReasonPolicyOff: ENO is off by configuration (Mode == ModeOff).
	ReasonPolicyOff
	// ReasonNoENO: the peer sent no ENO in its SYN or SYN-ACK (§4.6 rule 1).
	ReasonNoENO
	// ReasonStripped: ENO was missing from the first ACK received, the third
	// segment for a passive opener (§4.6 rule 1, Figure 11).
	ReasonStripped
	// ReasonMalformed: an ill-formed SYN-form option or options area was
	// received up to and including the first ACK (§4.4, §4.6 rule 1).
	ReasonMalformed
	// ReasonMultipleENO: a SYN carried more than one ENO option (§4.1).
	ReasonMultipleENO
	// ReasonSameRole: both hosts sent the same b bit (§4.3, §4.6 rule 3);
	// this is also what an echoing middlebox produces (§8.1).
	ReasonSameRole
	// ReasonAppAware: mandatory application-aware mode and the peer sent
	// a = 0 (§4.2, §4.6 rule 3).
	ReasonAppAware
	// ReasonNoCommonTEP: no TEP identifier was listed by both hosts (§4.5).
	ReasonNoCommonTEP
	// ReasonVacuous: a SYN-form option with no TEP suboption was sent or
	// received (§4.6).
	ReasonVacuous
	// ReasonTEPRejected: TEPs were listed by both sides but the TEP policy
	// found none valid (§4.5 rules 2 and 3), or its answer was unencodable.
	ReasonTEPRejected
	// ReasonLegacyOption: the peer's SYN carried the legacy kind-253/ExID
	// 0x454E encoding of ENO (RFC 8547 §11), alone or next to kind 69.
	ReasonLegacyOption
	// ReasonLocal: the local host disabled ENO (Negotiator.Disable), e.g. when
	// retransmitting a SYN-only without ENO (§4.6).
	ReasonLocal
	// ReasonConfig: the Config cannot be used (no TEPPolicy, or an Offer that
	// does not encode into one option).
	ReasonConfig
)

var reasonNames = [...]string{
	ReasonNone:         "none",
	ReasonPolicyOff:    "policy-off",
	ReasonNoENO:        "no-eno",
	ReasonStripped:     "stripped",
	ReasonMalformed:    "malformed",
	ReasonMultipleENO:  "multiple-eno",
	ReasonSameRole:     "same-role",
	ReasonAppAware:     "app-aware",
	ReasonNoCommonTEP:  "no-common-tep",
	ReasonVacuous:      "vacuous",
	ReasonTEPRejected:  "tep-rejected",
	ReasonLegacyOption: "legacy-option",
	ReasonLocal:        "local",
	ReasonConfig:       "config",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// FallbackError says why negotiation fell back to plain TCP. It is returned
// by Negotiator.Result once the connection's ENO state is StateDisabled.
type FallbackError struct {
	Reason Reason
	Detail string
}

func (e *FallbackError) Error() string {
	if e.Detail == "" {
		return "eno: fallback to plain TCP: " + e.Reason.String()
	}
	return "eno: fallback to plain TCP: " + e.Reason.String() + ": " + e.Detail
}
