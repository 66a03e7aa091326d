package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// sessionID33 is a made-up 33-byte session ID: TEP byte 0x23, then 1..32.
func sessionID33() []byte {
	b := []byte{0x23}
	for i := 1; i <= 32; i++ {
		b = append(b, byte(i))
	}
	return b
}

// headerCases are the builders the table tests and the fuzz seeds share.
func headerCases() []struct {
	name string
	h    *Header
} {
	return []struct {
		name string
		h    *Header
	}{
		{"ipv4 with session ID", ForConnection(netip.MustParseAddrPort("192.0.2.10:51000"), netip.MustParseAddrPort("10.254.78.1:443"), sessionID33())},
		{"ipv4 plain", ForConnection(netip.MustParseAddrPort("192.0.2.10:51000"), netip.MustParseAddrPort("10.254.78.1:443"), nil)},
		{"ipv6 with session ID", ForConnection(netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[fd7c:e771::1]:8443"), sessionID33())},
		{"ipv4-mapped", ForConnection(netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), netip.MustParseAddrPort("10.0.0.1:2"), nil)},
		{"local", &Header{Command: CommandLocal}},
		{"several TLVs", &Header{Command: CommandProxy, Source: netip.MustParseAddrPort("198.51.100.1:1234"), Dest: netip.MustParseAddrPort("198.51.100.2:80"),
			TLVs: []TLV{{Type: TypeNoop, Value: nil}, {Type: TypeAuthority, Value: []byte("example.org")}, {Type: TypeSessionID, Value: []byte{1, 2, 3}}}}},
	}
}

// TestGoldenIPv4 checks the encoder against bytes written out by hand from
// the specification (section 2.2), not against our own parser.
func TestGoldenIPv4(t *testing.T) {
	h := ForConnection(netip.MustParseAddrPort("192.0.2.10:51000"), netip.MustParseAddrPort("10.254.78.1:443"), []byte{0xAA, 0xBB})
	got, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := "0d0a0d0a000d0a515549540a" + // signature
		"21" + // version 2, PROXY
		"11" + // AF_INET, STREAM
		"0011" + // 12 bytes of addresses + 3 + 2 of TLV = 17
		"c000020a" + "0afe4e01" + // 192.0.2.10, 10.254.78.1
		"c738" + "01bb" + // 51000, 443
		"e7" + "0002" + "aabb" // session ID TLV
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding\n got %x\nwant %s", got, want)
	}
}

func TestGoldenIPv6Local(t *testing.T) {
	h := ForConnection(netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2"), nil)
	got, _ := h.MarshalBinary()
	want := "0d0a0d0a000d0a515549540a" + "21" + "21" + "0024" +
		"20010db8000000000000000000000001" + "20010db8000000000000000000000002" + "0001" + "0002"
	if hex.EncodeToString(got) != want {
		t.Fatalf("ipv6\n got %x\nwant %s", got, want)
	}
	got, _ = (&Header{Command: CommandLocal}).MarshalBinary()
	if want := "0d0a0d0a000d0a515549540a" + "20" + "00" + "0000"; hex.EncodeToString(got) != want {
		t.Fatalf("local\n got %x\nwant %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range headerCases() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			trailing := append(bytes.Clone(b), "GET / HTTP/1.1\r\n"...)
			got, n, err := Parse(trailing)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if n != len(b) {
				t.Fatalf("consumed %d, header is %d", n, len(b))
			}
			if got.Command != tc.h.Command {
				t.Fatalf("command %v, want %v", got.Command, tc.h.Command)
			}
			if tc.h.Command == CommandProxy {
				wantFam := FamilyInet
				if !tc.h.Source.Addr().Unmap().Is4() {
					wantFam = FamilyInet6
				}
				if got.Family != wantFam || got.Transport != TransportStream {
					t.Fatalf("family %v transport %v", got.Family, got.Transport)
				}
				if got.Source.Addr() != tc.h.Source.Addr().Unmap() || got.Source.Port() != tc.h.Source.Port() ||
					got.Dest.Addr() != tc.h.Dest.Addr().Unmap() || got.Dest.Port() != tc.h.Dest.Port() {
					t.Fatalf("addresses %v -> %v, want %v -> %v", got.Source, got.Dest, tc.h.Source, tc.h.Dest)
				}
			}
			if len(got.TLVs) != len(tc.h.TLVs) {
				t.Fatalf("TLVs %v, want %v", got.TLVs, tc.h.TLVs)
			}
			for i := range got.TLVs {
				if got.TLVs[i].Type != tc.h.TLVs[i].Type || !bytes.Equal(got.TLVs[i].Value, tc.h.TLVs[i].Value) {
					t.Fatalf("TLV %d: %v, want %v", i, got.TLVs[i], tc.h.TLVs[i])
				}
			}
			wantID, wantOK := tc.h.SessionID()
			gotID, gotOK := got.SessionID()
			if gotOK != wantOK || !bytes.Equal(gotID, wantID) {
				t.Fatalf("session ID %x %v, want %x %v", gotID, gotOK, wantID, wantOK)
			}
			// The parsed header must not alias the input.
			for i := range trailing {
				trailing[i] = 0
			}
			if id, ok := got.SessionID(); ok && !bytes.Equal(id, wantID) {
				t.Fatal("parsed TLV aliases the input buffer")
			}
		})
	}
}

func TestMappedInIPv6Header(t *testing.T) {
	h := &Header{Command: CommandProxy, Family: FamilyInet6,
		Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Dest: netip.MustParseAddrPort("192.0.2.2:2")}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Parse(b)
	if err != nil || got.Family != FamilyInet6 || got.Source.Addr() != netip.MustParseAddr("::ffff:192.0.2.1") {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestPlainConnectionHasNoSessionTLV(t *testing.T) {
	h := ForConnection(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"), nil)
	if len(h.TLVs) != 0 {
		t.Fatalf("plain header has TLVs %v", h.TLVs)
	}
	if _, ok := h.SessionID(); ok {
		t.Fatal("plain header reports a session ID")
	}
}

func TestEveryPrefixIsShort(t *testing.T) {
	for _, tc := range headerCases() {
		b, _ := tc.h.MarshalBinary()
		for i := range len(b) {
			_, _, err := Parse(b[:i])
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason != ReasonShort || !errors.Is(err, ErrShort) {
				t.Fatalf("%s: prefix %d/%d: err %v, want short", tc.name, i, len(b), err)
			}
			if i >= FixedLen && pe.Need != len(b) {
				t.Fatalf("%s: prefix %d: need %d, want %d", tc.name, i, pe.Need, len(b))
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	valid, _ := headerCases()[0].h.MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	tests := []struct {
		name string
		in   []byte
		want ParseReason
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ReasonSignature},
		{"v1 text header", []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"), ReasonSignature},
		{"bad signature byte", mut(func(b []byte) []byte { b[5] ^= 1; return b }), ReasonSignature},
		{"version 1", mut(func(b []byte) []byte { b[12] = 0x11; return b }), ReasonVersion},
		{"command 2", mut(func(b []byte) []byte { b[12] = 0x22; return b }), ReasonCommand},
		{"family 4", mut(func(b []byte) []byte { b[13] = 0x41; return b }), ReasonFamily},
		{"transport 3", mut(func(b []byte) []byte { b[13] = 0x13; return b }), ReasonFamily},
		{"length below addresses", mut(func(b []byte) []byte { b[14], b[15] = 0, 11; return b[:16+11] }), ReasonLength},
		{"ipv6 family, ipv4 length", mut(func(b []byte) []byte { b[13] = 0x21; b[14], b[15] = 0, 12; return b[:16+12] }), ReasonLength},
		{"TLV past end", mut(func(b []byte) []byte { b[16+12+2] = 0xFF; return b }), ReasonTLV},
		{"two stray bytes", mut(func(b []byte) []byte {
			b[14], b[15] = 0, 14
			return append(b[:16+12], 0xE7, 0)
		}), ReasonTLV},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(tc.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a *ParseError", err)
			}
			if pe.Reason != tc.want {
				t.Fatalf("reason %v (%v), want %v", pe.Reason, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want.String()) {
				t.Fatalf("message %q does not name the reason", err)
			}
		})
	}
}

func TestParseSkipsUnixAndUnspec(t *testing.T) {
	b := append([]byte{}, Signature[:]...)
	b = append(b, 0x21, 0x31, 0x00, 216+3)
	b = append(b, make([]byte, 216)...)
	b = append(b, TypeNoop, 0, 0)
	h, n, err := Parse(b)
	if err != nil || n != len(b) {
		t.Fatalf("unix: %v n=%d", err, n)
	}
	if h.Family != FamilyUnix || h.Source.IsValid() || len(h.TLVs) != 1 {
		t.Fatalf("unix header %+v", h)
	}
	b = append(append([]byte{}, Signature[:]...), 0x21, 0x00, 0x00, 0x00)
	if h, _, err := Parse(b); err != nil || h.Family != FamilyUnspec {
		t.Fatalf("unspec proxy: %+v %v", h, err)
	}
}

func TestEncodeErrors(t *testing.T) {
	v4, v6 := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::1]:1")
	tests := []struct {
		name string
		h    *Header
	}{
		{"mixed families", &Header{Command: CommandProxy, Source: v4, Dest: v6}},
		{"no source", &Header{Command: CommandProxy, Dest: v4}},
		{"ipv6 in an ipv4 header", &Header{Command: CommandProxy, Family: FamilyInet, Source: v6, Dest: v6}},
		{"unix family", &Header{Command: CommandProxy, Family: FamilyUnix, Source: v4, Dest: v4}},
		{"bad command", &Header{Command: 7, Source: v4, Dest: v4}},
		{"huge TLV", &Header{Command: CommandProxy, Source: v4, Dest: v4, TLVs: []TLV{{Type: 1, Value: make([]byte, 0x10000)}}}},
		{"huge body", &Header{Command: CommandProxy, Source: v4, Dest: v4, TLVs: []TLV{{Type: 1, Value: make([]byte, 0xFFF0)}, {Type: 2, Value: make([]byte, 0x20)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.h.AppendBinary([]byte("x"))
			var ee *EncodeError
			if !errors.As(err, &ee) {
				t.Fatalf("err %v, want *EncodeError", err)
			}
			if string(b) != "x" {
				t.Fatalf("failed encode changed the buffer: %q", b)
			}
		})
	}
}

func TestReadHeaderLeavesData(t *testing.T) {
	for _, tc := range headerCases() {
		b, _ := tc.h.MarshalBinary()
		r := bufio.NewReader(io.MultiReader(bytes.NewReader(b[:7]), bytes.NewReader(b[7:]), strings.NewReader("payload")))
		h, err := ReadHeader(r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.Command != tc.h.Command {
			t.Fatalf("%s: command %v", tc.name, h.Command)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "payload" {
			t.Fatalf("%s: data after header %q", tc.name, rest)
		}
	}
}

func TestReadHeaderErrors(t *testing.T) {
	b, _ := headerCases()[0].h.MarshalBinary()
	if _, err := ReadHeader(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := ReadHeader(bytes.NewReader(b[:20])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body: %v", err)
	}
	if _, err := ReadHeader(bytes.NewReader(b[:10])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated fixed part: %v", err)
	}
	if _, err := ReadHeader(strings.NewReader("GET / HTTP/1.1\r\n\r\n")); err == nil {
		t.Fatal("HTTP accepted as a PROXY header")
	}
}

func TestStrings(t *testing.T) {
	if CommandProxy.String() != "PROXY" || CommandLocal.String() != "LOCAL" || Command(9).String() == "" {
		t.Fatal("command names")
	}
	if ParseReason(99).String() == "" || !reflect.DeepEqual(ReasonTLV.String(), "bad-tlv") {
		t.Fatal("reason names")
	}
}
