package eno

import (
	"errors"
	"fmt"
)

// Suboption is one TEP suboption of a SYN-form ENO option (RFC 8547 §4.1).
type Suboption struct {
	TEP  byte   // glt, 0x20..0x7f, never includes the v bit
	V    bool   // v bit as sent
	Data []byte // nil when V is false; may be empty when V is true
}

// Byte returns the suboption's first byte as sent: TEP | 0x80 if V.
func (s Suboption) Byte() byte {
	if s.V {
		return s.TEP | vBit
	}
	return s.TEP
}

// SYNOption is a parsed SYN-form ENO option.
type SYNOption struct {
	Global    byte // first global suboption byte (0 if none), z bits as received
	HasGlobal bool
	Subs      []Suboption
	Raw       []byte // whole option as on the wire: kind, len, contents (aliases input; copy to keep)
}

// B reports the passive role bit. A SYN without a global suboption has an
// implicit 0x00 (RFC 8547 §4.2), so b = 0.
func (o SYNOption) B() bool { return o.Global&GlobalB != 0 }

// A reports the application-aware bit (implicit 0 without a global suboption).
func (o SYNOption) A() bool { return o.Global&GlobalA != 0 }

// Vacuous reports whether the option has no TEP suboption (RFC 8547 §4.6).
func (o SYNOption) Vacuous() bool { return len(o.Subs) == 0 }

// Item is one element of SYN-form contents, as returned by
// SuboptionIterator.
type Item struct {
	// Offset is the offset of the item's first byte (its length byte, if
	// any) within the whole option, kind byte at offset 0.
	Offset int
	// Global marks a global suboption (0x00-0x1f); Value holds it.
	Global bool
	Value  byte
	// Sub is the TEP suboption when Global is false. Its Data aliases the
	// iterated bytes.
	Sub Suboption
	// LengthByte reports that Sub was introduced by a length byte.
	LengthByte bool
}

// SuboptionIterator walks the contents of a SYN-form ENO option without
// allocating (RFC 8547 §4.1-§4.4). Use it as
//
//	it := NewSuboptionIterator(contents, 2)
//	for item, ok := it.Next(); ok; item, ok = it.Next() { ... }
//	if err := it.Err(); err != nil { ... }
type SuboptionIterator struct {
	c    []byte
	i    int
	base int
	err  *ParseError
}

// NewSuboptionIterator returns an iterator over SYN-form contents c (the
// option's bytes after kind and length). base is added to the offsets it
// reports; pass 2 when c starts at byte 2 of a whole option.
func NewSuboptionIterator(c []byte, base int) SuboptionIterator {
	return SuboptionIterator{c: c, base: base}
}

// Next returns the next item, or false at the end of the contents or on the
// first error (see Err).
func (it *SuboptionIterator) Next() (Item, bool) {
	if it.err != nil || it.i >= len(it.c) {
		return Item{}, false
	}
	c, i := it.c, it.i
	b := c[i]
	item := Item{Offset: it.base + i}
	switch {
	case b < firstTEP: // global suboption, v = 0, glt < 0x20
		item.Global, item.Value = true, b
		it.i = i + 1
	case b < vBit: // TEP identifier without data
		item.Sub = Suboption{TEP: b}
		it.i = i + 1
	case b < vBit|firstTEP: // length byte 100nnnnn (§4.4)
		n := int(b&0x1f) + 1
		switch {
		case i+1 >= len(c): // length byte in the last position
			it.err = &ParseError{Reason: ParseLengthPastEnd, Offset: it.base + i}
			return Item{}, false
		case c[i+1] < vBit|firstTEP: // next byte has v = 0 or glt < 0x20
			it.err = &ParseError{Reason: ParseLengthNotTEP, Offset: it.base + i + 1}
			return Item{}, false
		case i+2+n > len(c): // data runs past the end (incl. next-to-last position)
			it.err = &ParseError{Reason: ParseLengthPastEnd, Offset: it.base + i}
			return Item{}, false
		}
		item.Sub = Suboption{TEP: c[i+1] &^ vBit, V: true, Data: c[i+2 : i+2+n : i+2+n]}
		item.LengthByte = true
		it.i = i + 2 + n
	default: // TEP identifier with v = 1: data runs to the end of the option
		item.Sub = Suboption{TEP: b &^ vBit, V: true, Data: c[i+1 : len(c) : len(c)]}
		it.i = len(c)
	}
	return item, true
}

// Err returns the error that stopped the iteration, or nil (a nil error, not
// a typed nil pointer).
func (it *SuboptionIterator) Err() error {
	if it.err == nil {
		return nil
	}
	return it.err
}

// checkFraming verifies kind and length of a whole option.
func checkFraming(opt []byte) *ParseError {
	switch {
	case len(opt) < 2:
		return &ParseError{Reason: ParseTooShort, Offset: len(opt)}
	case opt[0] != Kind:
		return &ParseError{Reason: ParseWrongKind, Offset: 0}
	case int(opt[1]) != len(opt): // also rejects lengths 0 and 1
		return &ParseError{Reason: ParseBadOptionLength, Offset: 1}
	}
	return nil
}

// ParseSYNForm parses a whole SYN-form ENO option: kind, length and
// contents, as found by Options. Errors are *ParseError with a Reason; any
// error means the option must be ignored and encryption disabled (RFC 8547
// §4.4). Only the first global suboption counts (§4.2); later ones are
// skipped. Subs[i].Data and Raw alias opt.
func ParseSYNForm(opt []byte) (SYNOption, error) {
	if err := checkFraming(opt); err != nil {
		return SYNOption{}, err
	}
	o := SYNOption{Raw: opt}
	it := NewSuboptionIterator(opt[2:], 2)
	for item, ok := it.Next(); ok; item, ok = it.Next() {
		if item.Global {
			if !o.HasGlobal { // §4.2: ignore all but the first
				o.Global, o.HasGlobal = item.Value, true
			}
			continue
		}
		o.Subs = append(o.Subs, item.Sub)
	}
	if err := it.Err(); err != nil {
		return SYNOption{}, err
	}
	return o, nil
}

// Encoding errors returned (wrapped) by AppendSYNForm.
var (
	ErrTooLong      = errors.New("eno: option longer than 40 bytes")
	ErrBadSuboption = errors.New("eno: unencodable suboption")
)

// AppendSYNForm encodes a SYN-form ENO option (kind, length, contents) and
// appends it to dst. The global suboption, if hasGlobal, comes first; the
// subs follow in order. A suboption with data gets a length byte in front
// (RFC 8547 §4.4), except the last one, whose data runs to the end of the
// option. It fails, leaving dst unchanged, if the global byte is not a
// global suboption with zero z bits (§4.2), if a suboption is unencodable
// (TEP outside 0x20..0x7f, data without the v bit, or a non-last data
// suboption whose data is not 1..32 bytes), or if the option would exceed
// 40 bytes.
func AppendSYNForm(dst []byte, global byte, hasGlobal bool, subs []Suboption) ([]byte, error) {
	n, err := SYNFormLen(global, hasGlobal, subs)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, Kind, byte(n))
	if hasGlobal {
		dst = append(dst, global)
	}
	for i, s := range subs {
		if s.V && i != len(subs)-1 {
			dst = append(dst, vBit|byte(len(s.Data)-1))
		}
		dst = append(dst, s.Byte())
		dst = append(dst, s.Data...)
	}
	if len(dst)-start != n { // cannot happen: SYNFormLen counts the same bytes
		return dst[:start], fmt.Errorf("eno: internal encoding length mismatch")
	}
	return dst, nil
}

// SYNFormLen returns the length of the option AppendSYNForm would encode, or
// the error it would return.
func SYNFormLen(global byte, hasGlobal bool, subs []Suboption) (int, error) {
	n := 2
	if hasGlobal {
		if global >= firstTEP || global&globalZBits != 0 {
			return 0, fmt.Errorf("%w: global suboption %#02x (must be < 0x20 with z bits 0)", ErrBadSuboption, global)
		}
		n++
	}
	for i, s := range subs {
		if s.TEP < firstTEP || s.TEP >= vBit {
			return 0, fmt.Errorf("%w: #%d: TEP identifier %#02x outside 0x20..0x7f", ErrBadSuboption, i, s.TEP)
		}
		if !s.V && len(s.Data) != 0 {
			return 0, fmt.Errorf("%w: #%d: TEP %#02x has data but v = 0", ErrBadSuboption, i, s.TEP)
		}
		if s.V && i != len(subs)-1 {
			if len(s.Data) < 1 || len(s.Data) > maxLengthData {
				return 0, fmt.Errorf("%w: #%d: TEP %#02x is not last and has %d data bytes (a length byte covers 1..32)",
					ErrBadSuboption, i, s.TEP, len(s.Data))
			}
			n++
		}
		n += 1 + len(s.Data)
		if n > MaxOptionLen {
			break
		}
	}
	if n > MaxOptionLen {
		return 0, fmt.Errorf("%w: needs %d+ bytes", ErrTooLong, n)
	}
	return n, nil
}

// NonSYNForm is the 2-byte non-SYN-form option (N = 0) that hosts send when
// the negotiated TEP gives non-SYN contents no meaning, as tcpcrypt does
// (RFC 8547 §4.1). Do not modify it; Negotiator.Outgoing returns copies.
var NonSYNForm = []byte{Kind, 0x02}
