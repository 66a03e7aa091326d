package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// ParseReason says why bytes are not a PROXY v2 header.
type ParseReason uint8

const (
	ReasonShort     ParseReason = iota + 1 // fewer bytes than the header needs (more may follow)
	ReasonSignature                        // the 12-byte signature is missing
	ReasonVersion                          // the version nibble is not 2
	ReasonCommand                          // a command other than LOCAL or PROXY
	ReasonFamily                           // an unknown address family or transport
	ReasonLength                           // the length is too short for the addresses
	ReasonTLV                              // a TLV runs past the end of the header
)

func (r ParseReason) String() string {
	switch r {
	case ReasonShort:
		return "short"
	case ReasonSignature:
		return "bad-signature"
	case ReasonVersion:
		return "bad-version"
	case ReasonCommand:
		return "bad-command"
	case ReasonFamily:
		return "bad-family"
	case ReasonLength:
		return "bad-length"
	case ReasonTLV:
		return "bad-tlv"
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// ParseError reports bytes that are not a valid PROXY v2 header.
type ParseError struct {
	Reason ParseReason
	Detail string
	// Need is, for ReasonShort, the total number of bytes the header needs
	// as far as it is known (FixedLen until the length field is read).
	Need int
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("proxyproto: %s: %s", e.Reason, e.Detail)
}

// ErrShort is matched (errors.Is) by a ParseError with ReasonShort.
var ErrShort = errors.New("proxyproto: header incomplete")

// Is makes errors.Is(err, ErrShort) true for ReasonShort.
func (e *ParseError) Is(target error) bool { return target == ErrShort && e.Reason == ReasonShort }

func perr(r ParseReason, format string, args ...any) *ParseError {
	return &ParseError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Parse parses the header at the start of b and returns it with the
// number of bytes it takes. TLV values are copied; the header does not
// alias b. If b holds only part of a header the error is a *ParseError
// with ReasonShort (errors.Is(err, ErrShort)) whose Need says how many
// bytes to have.
//
// Addresses are decoded for TCP or UDP over IPv4 and IPv6; for UNSPEC and
// UNIX they are skipped (Source and Dest stay zero), as section 2.2 lets a
// receiver do.
func Parse(b []byte) (*Header, int, error) {
	if len(b) < FixedLen {
		// A prefix of the signature is still a possible header.
		n := min(len(b), len(Signature))
		if !bytes.Equal(b[:n], Signature[:n]) {
			return nil, 0, perr(ReasonSignature, "no PROXY v2 signature")
		}
		e := perr(ReasonShort, "%d of %d bytes of the fixed part", len(b), FixedLen)
		e.Need = FixedLen
		return nil, 0, e
	}
	if !bytes.Equal(b[:12], Signature[:]) {
		return nil, 0, perr(ReasonSignature, "no PROXY v2 signature")
	}
	if v := b[12] >> 4; v != version2 {
		return nil, 0, perr(ReasonVersion, "version %d, want 2", v)
	}
	h := &Header{Command: Command(b[12] & 0x0F)}
	if h.Command != CommandLocal && h.Command != CommandProxy {
		return nil, 0, perr(ReasonCommand, "command 0x%x is neither LOCAL nor PROXY", uint8(h.Command))
	}
	h.Family, h.Transport = Family(b[13]>>4), Transport(b[13]&0x0F)
	if h.Family > FamilyUnix || h.Transport > TransportDgram {
		return nil, 0, perr(ReasonFamily, "address family/transport byte 0x%02x", b[13])
	}
	bodyLen := int(binary.BigEndian.Uint16(b[14:16]))
	total := FixedLen + bodyLen
	if len(b) < total {
		e := perr(ReasonShort, "%d of %d bytes", len(b), total)
		e.Need = total
		return nil, 0, e
	}
	body := b[FixedLen:total]
	var addrLen int
	switch h.Family {
	case FamilyInet:
		addrLen = addrLenIPv4
	case FamilyInet6:
		addrLen = addrLenIPv6
	case FamilyUnix:
		addrLen = addrLenUnix
	}
	if len(body) < addrLen {
		return nil, 0, perr(ReasonLength, "length %d is shorter than the %d bytes of addresses", len(body), addrLen)
	}
	switch h.Family {
	case FamilyInet:
		src, _ := netip.AddrFromSlice(body[0:4])
		dst, _ := netip.AddrFromSlice(body[4:8])
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case FamilyInet6:
		src, _ := netip.AddrFromSlice(body[0:16])
		dst, _ := netip.AddrFromSlice(body[16:32])
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	}
	rest := body[addrLen:]
	for len(rest) > 0 {
		if len(rest) < tlvHdrLen {
			return nil, 0, perr(ReasonTLV, "%d trailing bytes are too few for a TLV", len(rest))
		}
		typ, n := rest[0], int(binary.BigEndian.Uint16(rest[1:3]))
		if len(rest) < tlvHdrLen+n {
			return nil, 0, perr(ReasonTLV, "TLV 0x%02x of %d bytes runs past the header (%d left)", typ, n, len(rest)-tlvHdrLen)
		}
		h.TLVs = append(h.TLVs, TLV{Type: typ, Value: bytes.Clone(rest[tlvHdrLen : tlvHdrLen+n])})
		rest = rest[tlvHdrLen+n:]
	}
	return h, total, nil
}

// ReadHeader reads exactly one header from r: the fixed part, then the
// length it announces, and not a byte more, so the connection's data stays
// in r. A stream that ends inside the header gives io.ErrUnexpectedEOF
// (io.EOF if it ends before the first byte).
func ReadHeader(r io.Reader) (*Header, error) {
	buf := make([]byte, FixedLen, 64)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("proxyproto: read header: %w", err)
	}
	if _, _, err := Parse(buf); err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Reason != ReasonShort {
			return nil, err
		}
		if pe.Need > FixedLen {
			buf = append(buf, make([]byte, pe.Need-FixedLen)...)
			if _, err := io.ReadFull(r, buf[FixedLen:]); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("proxyproto: read header: %w", err)
			}
		}
	}
	h, _, err := Parse(buf)
	return h, err
}
