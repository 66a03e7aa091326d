// Package proxyproto encodes and parses the binary PROXY protocol header,
// version 2 (HAProxy's "The PROXY protocol", section 2.2), which tcpcryptd
// sends to a service's backend before the relayed bytes: it carries the
// client's address and port, the service's address and port and, for an
// encrypted connection, the tcpcrypt session ID in a TLV of type
// TypeSessionID.
//
// Layout (all integers big endian):
//
//	signature (12) | ver_cmd (1) | fam (1) | len (2) | addresses | TLVs
//
// The encoder writes only what tcpcryptd needs (PROXY or LOCAL over TCP,
// IPv4 or IPv6); the parser accepts any well-formed version 2 header, so
// backends written in Go can use it to read what we send.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Signature opens every version 2 header (section 2.2).
var Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Wire sizes and limits.
const (
	// FixedLen is the size of the fixed part: signature, ver_cmd, fam, len.
	FixedLen = 16
	// MaxLen is the largest header: the fixed part and a 16-bit length.
	MaxLen = FixedLen + 0xFFFF

	addrLenIPv4 = 4 + 4 + 2 + 2   // src, dst, src port, dst port
	addrLenIPv6 = 16 + 16 + 2 + 2 // likewise
	addrLenUnix = 108 + 108       // src, dst paths
	tlvHdrLen   = 3               // type, length (2)
	version2    = 0x2
)

// Command is the low nibble of ver_cmd.
type Command uint8

const (
	// CommandLocal: the connection was made by the proxy itself (health
	// checks); the receiver uses the real connection's addresses.
	CommandLocal Command = 0x0
	// CommandProxy: the connection was relayed on behalf of the client
	// named by the header.
	CommandProxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case CommandLocal:
		return "LOCAL"
	case CommandProxy:
		return "PROXY"
	}
	return fmt.Sprintf("command-0x%x", uint8(c))
}

// Family is the high nibble of the fam byte (address family).
type Family uint8

const (
	FamilyUnspec Family = 0x0
	FamilyInet   Family = 0x1
	FamilyInet6  Family = 0x2
	FamilyUnix   Family = 0x3
)

// Transport is the low nibble of the fam byte.
type Transport uint8

const (
	TransportUnspec Transport = 0x0
	TransportStream Transport = 0x1
	TransportDgram  Transport = 0x2
)

// TLV types of section 2.2.7 that this package names, and ours.
const (
	TypeALPN      = 0x01
	TypeAuthority = 0x02
	TypeCRC32C    = 0x03
	TypeNoop      = 0x04
	TypeUniqueID  = 0x05
	TypeSSL       = 0x20
	TypeNetNS     = 0x30

	// TypeMinCustom..TypeMaxCustom is the range the specification reserves
	// for application-specific data (PP2_TYPE_MIN_CUSTOM, _MAX_CUSTOM).
	TypeMinCustom = 0xE0
	TypeMaxCustom = 0xEF

	// TypeSessionID carries the tcpcrypt session ID (RFC 8548 §3.4; 33
	// bytes for a tcpcrypt session) of the connection, raw bytes, as the
	// value. tcpcryptd sends it only for encrypted connections: its absence
	// means the client's connection was plain TCP.
	//
	// Decision: 0xE7 from the custom range (0xE0-0xEF), which the PROXY
	// specification leaves to applications; no registered type carries a
	// session ID.
	TypeSessionID = 0xE7
)

// TLV is one type-length-value record after the addresses.
type TLV struct {
	Type  byte
	Value []byte
}

// Header is a PROXY protocol version 2 header.
type Header struct {
	Command   Command
	Family    Family    // set by Parse; the encoder derives it from Source unless FamilyInet6 is asked for
	Transport Transport // set by Parse; the encoder always writes TransportStream
	// Source is the client's address and port, Dest the address and port
	// it connected to (the service). Both are zero for LOCAL, and for the
	// families the parser does not decode (UNIX, UNSPEC).
	Source, Dest netip.AddrPort
	TLVs         []TLV
}

// SessionID returns the value of the first TypeSessionID TLV.
func (h *Header) SessionID() ([]byte, bool) {
	for _, t := range h.TLVs {
		if t.Type == TypeSessionID {
			return t.Value, true
		}
	}
	return nil, false
}

// EncodeError reports a header that cannot be encoded.
type EncodeError struct{ Reason string }

func (e *EncodeError) Error() string { return "proxyproto: cannot encode header: " + e.Reason }

// AppendBinary appends the wire encoding of h to b. For CommandProxy,
// Source and Dest must be valid and of one family (IPv4-mapped IPv6
// addresses count as IPv4); the header says TCP over that family, or over
// IPv6 if h.Family is FamilyInet6 (IPv4 addresses are then sent mapped). For
// CommandLocal no addresses are sent (family UNSPEC). It implements
// encoding.BinaryAppender.
func (h *Header) AppendBinary(b []byte) ([]byte, error) {
	var fam Family
	var addrLen int
	src, dst := h.Source.Addr().Unmap(), h.Dest.Addr().Unmap()
	switch h.Command {
	case CommandLocal:
		fam = FamilyUnspec
	case CommandProxy:
		switch {
		case !src.IsValid() || !dst.IsValid():
			return b, &EncodeError{Reason: "PROXY needs a source and a destination address"}
		case h.Family == FamilyInet6:
			// Asked for IPv6: IPv4 addresses go out IPv4-mapped.
			fam, addrLen = FamilyInet6, addrLenIPv6
		case src.Is4() != dst.Is4():
			return b, &EncodeError{Reason: fmt.Sprintf("source %v and destination %v are of different families", src, dst)}
		case h.Family != FamilyUnspec && h.Family != FamilyInet:
			return b, &EncodeError{Reason: fmt.Sprintf("family %d cannot carry %v", h.Family, src)}
		case src.Is4():
			fam, addrLen = FamilyInet, addrLenIPv4
		case h.Family == FamilyInet:
			return b, &EncodeError{Reason: fmt.Sprintf("IPv6 address %v in an IPv4 header", src)}
		default:
			fam, addrLen = FamilyInet6, addrLenIPv6
		}
	default:
		return b, &EncodeError{Reason: fmt.Sprintf("unknown command 0x%x", uint8(h.Command))}
	}
	n := addrLen
	for _, t := range h.TLVs {
		if len(t.Value) > 0xFFFF {
			return b, &EncodeError{Reason: fmt.Sprintf("TLV 0x%02x value of %d bytes exceeds 65535", t.Type, len(t.Value))}
		}
		n += tlvHdrLen + len(t.Value)
	}
	if n > 0xFFFF {
		return b, &EncodeError{Reason: fmt.Sprintf("header body of %d bytes exceeds 65535", n)}
	}
	b = append(b, Signature[:]...)
	b = append(b, version2<<4|byte(h.Command))
	fb := byte(fam) << 4
	if fam != FamilyUnspec {
		fb |= byte(TransportStream)
	}
	b = append(b, fb)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	switch fam {
	case FamilyInet:
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
	case FamilyInet6:
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	if fam != FamilyUnspec {
		b = binary.BigEndian.AppendUint16(b, h.Source.Port())
		b = binary.BigEndian.AppendUint16(b, h.Dest.Port())
	}
	for _, t := range h.TLVs {
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		b = append(b, t.Value...)
	}
	return b, nil
}

// MarshalBinary returns the wire encoding of h (see AppendBinary).
func (h *Header) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// ForConnection builds the header tcpcryptd sends to a backend: PROXY from
// client to service, with a TypeSessionID TLV when sessionID is not empty.
func ForConnection(client, service netip.AddrPort, sessionID []byte) *Header {
	h := &Header{Command: CommandProxy, Source: client, Dest: service}
	if len(sessionID) > 0 {
		h.TLVs = []TLV{{Type: TypeSessionID, Value: bytes.Clone(sessionID)}}
	}
	return h
}
