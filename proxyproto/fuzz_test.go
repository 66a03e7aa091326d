package proxyproto

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: Parse never panics, reports a typed reason for every failure,
// consumes no more than it was given, and what it accepts as a PROXY header
// over IPv4/IPv6 TCP re-encodes to the same bytes.
func FuzzParse(f *testing.F) {
	for _, tc := range headerCases() {
		b, err := tc.h.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason < ReasonShort || pe.Reason > ReasonTLV {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if n < FixedLen || n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		if h.Command == CommandProxy && (h.Family == FamilyInet || h.Family == FamilyInet6) && h.Transport == TransportStream {
			out, err := h.MarshalBinary()
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if !bytes.Equal(out, b[:n]) {
				t.Fatalf("re-encoding differs\n in %x\nout %x", b[:n], out)
			}
		}
	})
}
