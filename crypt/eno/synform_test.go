package eno

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// parseCase is one ParseSYNForm table entry. The same table seeds
// FuzzParseSYNForm.
type parseCase struct {
	name string
	opt  []byte
	// on success:
	global    byte
	hasGlobal bool
	subs      []Suboption
	// on failure:
	reason ParseReason
	offset int
}

func ones(n int) []byte { return bytes.Repeat([]byte{0x11}, n) }

var parseCases = []parseCase{
	// Well-formed options.
	{name: "vacuous-no-global", opt: h("45 02")},
	{name: "figure9-A-SYN", opt: h("45 04 21 23"), subs: []Suboption{{TEP: 0x21}, {TEP: 0x23}}},
	{name: "figure9-B-SYNACK", opt: h("45 04 01 23"), global: 0x01, hasGlobal: true, subs: []Suboption{{TEP: 0x23}}},
	{name: "vacuous-b1", opt: h("45 03 01"), global: 0x01, hasGlobal: true},
	{name: "vacuous-b1-a1", opt: h("45 03 03"), global: 0x03, hasGlobal: true},
	{name: "global-not-first", opt: h("45 04 21 02"), global: 0x02, hasGlobal: true, subs: []Suboption{{TEP: 0x21}}},
	// ENO-7: only the first global suboption counts.
	{name: "ENO-7-second-global-ignored", opt: h("45 06 01 21 02 03"), global: 0x01, hasGlobal: true,
		subs: []Suboption{{TEP: 0x21}}},
	// ENO-8: z bits are kept as received but ignored by B() and A().
	{name: "ENO-8-z-bits-received", opt: h("45 04 1c 21"), global: 0x1c, hasGlobal: true, subs: []Suboption{{TEP: 0x21}}},
	{name: "glt-boundaries", opt: h("45 04 20 7f"), subs: []Suboption{{TEP: 0x20}, {TEP: 0x7f}}},
	// ENO-9: the last data suboption runs to the end without a length byte.
	{name: "ENO-9-last-data-no-length", opt: h("45 06 21 a3 01 02"),
		subs: []Suboption{{TEP: 0x21}, {TEP: 0x23, V: true, Data: h("01 02")}}},
	{name: "last-v1-empty-data", opt: h("45 03 a3"), subs: []Suboption{{TEP: 0x23, V: true, Data: []byte{}}}},
	{name: "v1-swallows-global-looking-bytes", opt: h("45 05 a3 01 21"),
		subs: []Suboption{{TEP: 0x23, V: true, Data: h("01 21")}}},
	// ENO-10: a length byte followed by a TEP byte with v = 1, glt >= 0x20.
	{name: "ENO-10-length-byte-then-tep", opt: h("45 06 80 a2 ff 21"),
		subs: []Suboption{{TEP: 0x22, V: true, Data: h("ff")}, {TEP: 0x21}}},
	{name: "length-byte-a0", opt: h("45 05 80 a0 ff"), subs: []Suboption{{TEP: 0x20, V: true, Data: h("ff")}}},
	{name: "length-byte-ff", opt: h("45 05 80 ff ee"), subs: []Suboption{{TEP: 0x7f, V: true, Data: h("ee")}}},
	{name: "length-byte-exact-end", opt: h("45 06 81 a1 01 02"), subs: []Suboption{{TEP: 0x21, V: true, Data: h("01 02")}}},
	{name: "length-byte-32", opt: append(append(h("45 25 9f a1"), ones(32)...), 0x22),
		subs: []Suboption{{TEP: 0x21, V: true, Data: ones(32)}, {TEP: 0x22}}},
	{name: "last-data-over-32", opt: append(h("45 27 a1"), ones(36)...),
		subs: []Suboption{{TEP: 0x21, V: true, Data: ones(36)}}},
	{name: "resumption-shaped", opt: append(append(h("45 14 01 a3"), ones(9)...), ones(7)...), global: 0x01, hasGlobal: true,
		subs: []Suboption{{TEP: 0x23, V: true, Data: ones(16)}}},
	{name: "repeated-tep", opt: h("45 05 21 21 22"), subs: []Suboption{{TEP: 0x21}, {TEP: 0x21}, {TEP: 0x22}}},
	{name: "two-length-bytes-bad-len", opt: h("45 0a 80 a1 01 80 a2 02 81 a3 03 04"), reason: ParseBadOptionLength, offset: 1},
	{name: "two-length-bytes-ok", opt: h("45 0c 80 a1 01 80 a2 02 81 a3 03 04"),
		subs: []Suboption{{TEP: 0x21, V: true, Data: h("01")}, {TEP: 0x22, V: true, Data: h("02")}, {TEP: 0x23, V: true, Data: h("03 04")}}},

	// Ill-formed framing.
	{name: "empty", opt: nil, reason: ParseTooShort, offset: 0},
	{name: "kind-only", opt: h("45"), reason: ParseTooShort, offset: 1},
	{name: "wrong-kind", opt: h("46 02"), reason: ParseWrongKind, offset: 0},
	{name: "legacy-kind-253", opt: h("fd 06 45 4e 21 23"), reason: ParseWrongKind, offset: 0},
	{name: "len-0", opt: h("45 00"), reason: ParseBadOptionLength, offset: 1},
	{name: "len-1", opt: h("45 01"), reason: ParseBadOptionLength, offset: 1},
	{name: "len-too-big", opt: h("45 05 21 23"), reason: ParseBadOptionLength, offset: 1},
	{name: "len-too-small", opt: h("45 03 21 23"), reason: ParseBadOptionLength, offset: 1},

	// ENO-11, §4.4 rule 1: a length byte runs past the end of the option.
	{name: "ENO-11-length-byte-last", opt: h("45 04 21 80"), reason: ParseLengthPastEnd, offset: 3},
	{name: "ENO-11-length-byte-only", opt: h("45 03 80"), reason: ParseLengthPastEnd, offset: 2},
	{name: "ENO-11-length-byte-next-to-last", opt: h("45 05 21 80 a1"), reason: ParseLengthPastEnd, offset: 3},
	{name: "ENO-11-length-data-short", opt: h("45 06 83 a1 01 02"), reason: ParseLengthPastEnd, offset: 2},
	{name: "ENO-11-length-32-short", opt: append(h("45 23 9f a1"), ones(31)...), reason: ParseLengthPastEnd, offset: 2},
	// ENO-11, §4.4 rule 2: a length byte followed by 0x00-0x9f.
	{name: "ENO-11-length-then-00", opt: h("45 05 80 00 ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-01", opt: h("45 05 80 01 ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-1f", opt: h("45 05 80 1f ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-20", opt: h("45 05 80 20 ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-7f", opt: h("45 05 80 7f ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-80", opt: h("45 05 80 80 a1"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-9f", opt: h("45 05 80 9f ff"), reason: ParseLengthNotTEP, offset: 3},
	{name: "ENO-11-length-then-tep-v0-at-end", opt: h("45 04 80 21"), reason: ParseLengthNotTEP, offset: 3},
	{name: "good-subs-before-late-length", opt: h("45 07 01 21 80 a1 01"),
		global: 0x01, hasGlobal: true, subs: []Suboption{{TEP: 0x21}, {TEP: 0x21, V: true, Data: h("01")}}},
	{name: "ENO-11-error-late", opt: h("45 08 01 21 80 a1 01 80"), reason: ParseLengthPastEnd, offset: 7},
	{name: "ENO-11-error-late-not-tep", opt: h("45 09 01 21 80 a1 01 80 00"), reason: ParseLengthNotTEP, offset: 8},
}

func TestParseSYNForm(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseSYNForm(tc.opt)
			if tc.reason != parseNone {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v (%T), want *ParseError %v", err, err, tc.reason)
				}
				if pe.Reason != tc.reason || pe.Offset != tc.offset {
					t.Fatalf("err = %v (reason %v offset %d), want reason %v offset %d", err, pe.Reason, pe.Offset, tc.reason, tc.offset)
				}
				if !reflect.DeepEqual(o, SYNOption{}) {
					t.Fatalf("failed parse returned %+v", o)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSYNForm(% x): %v", tc.opt, err)
			}
			if o.Global != tc.global || o.HasGlobal != tc.hasGlobal {
				t.Errorf("global = %#x/%v, want %#x/%v", o.Global, o.HasGlobal, tc.global, tc.hasGlobal)
			}
			if !subsEqual(o.Subs, tc.subs) {
				t.Errorf("subs = %+v, want %+v", o.Subs, tc.subs)
			}
			if !bytes.Equal(o.Raw, tc.opt) {
				t.Errorf("Raw = % x, want % x", o.Raw, tc.opt)
			}
			if o.Vacuous() != (len(tc.subs) == 0) {
				t.Errorf("Vacuous = %v", o.Vacuous())
			}
		})
	}
}

// subsEqual compares suboptions, treating nil and empty data alike only
// where V says data is present.
func subsEqual(a, b []Suboption) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].TEP != b[i].TEP || a[i].V != b[i].V || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
		if !a[i].V && a[i].Data != nil || !b[i].V && b[i].Data != nil {
			return false
		}
	}
	return true
}

// ENO-8 and ENO-12/13 (receiving side): z bits are ignored, an absent
// global suboption is an implicit 0x00.
func TestGlobalBits(t *testing.T) {
	for _, tc := range []struct {
		opt  string
		a, b bool
	}{
		{"45 03 21", false, false},    // implicit 0x00
		{"45 03 01", false, true},     // b
		{"45 03 02", true, false},     // a
		{"45 03 03", true, true},      // a and b
		{"45 03 1c", false, false},    // ENO-8: z1 z2 z3 only
		{"45 03 1f", true, true},      // ENO-8: z bits ignored
		{"45 04 00 03", false, false}, // ENO-7: second global ignored
	} {
		o, err := ParseSYNForm(h(tc.opt))
		if err != nil {
			t.Fatalf("%s: %v", tc.opt, err)
		}
		if o.A() != tc.a || o.B() != tc.b {
			t.Errorf("%s: a=%v b=%v, want a=%v b=%v", tc.opt, o.A(), o.B(), tc.a, tc.b)
		}
	}
}

// Every strict prefix of a well-formed option fails to parse (its length
// byte no longer matches).
func TestParseSYNFormNoPrefixParses(t *testing.T) {
	for _, tc := range parseCases {
		if tc.reason != parseNone {
			continue
		}
		for i := range len(tc.opt) {
			if _, err := ParseSYNForm(tc.opt[:i]); err == nil {
				t.Errorf("%s: prefix % x parsed", tc.name, tc.opt[:i])
			}
		}
	}
}

func TestSuboptionIterator(t *testing.T) {
	opt := h("45 0d 01 21 80 a2 ff 02 81 a3 01 02 24")
	it := NewSuboptionIterator(opt[2:], 2)
	type got struct {
		off    int
		global bool
		value  byte
		b      byte
		lb     bool
		data   string
	}
	var items []got
	for item, ok := it.Next(); ok; item, ok = it.Next() {
		items = append(items, got{item.Offset, item.Global, item.Value, item.Sub.Byte(), item.LengthByte, string(item.Sub.Data)})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	want := []got{
		{2, true, 0x01, 0, false, ""},
		{3, false, 0, 0x21, false, ""},
		{4, false, 0, 0xa2, true, "\xff"},
		{7, true, 0x02, 0, false, ""},
		{8, false, 0, 0xa3, true, "\x01\x02"},
		{12, false, 0, 0x24, false, ""},
	}
	if !reflect.DeepEqual(items, want) {
		t.Fatalf("items = %+v\nwant    %+v", items, want)
	}
	// After an error Next keeps returning false and Err stays set.
	bad := NewSuboptionIterator(h("21 80"), 2)
	for _, ok := bad.Next(); ok; _, ok = bad.Next() {
	}
	if _, ok := bad.Next(); ok || bad.Err() == nil {
		t.Fatalf("iterator resumed after error")
	}
}

func TestAppendSYNForm(t *testing.T) {
	for _, tc := range []struct {
		name      string
		global    byte
		hasGlobal bool
		subs      []Suboption
		want      string
	}{
		{"figure9-A", 0, false, []Suboption{{TEP: 0x21}, {TEP: 0x23}}, "45 04 21 23"},
		{"figure9-B", 0x01, true, []Suboption{{TEP: 0x23}}, "45 04 01 23"},
		{"ENO-14-vacuous-b1", 0x01, true, nil, "45 03 01"},
		{"vacuous-no-global", 0, false, nil, "45 02"},
		{"explicit-zero-global", 0, true, []Suboption{{TEP: 0x21}}, "45 04 00 21"},
		// ENO-9: a data suboption that is not last gets a length byte.
		{"ENO-9-length-byte", 0x02, true, []Suboption{{TEP: 0x22, V: true, Data: h("aa bb")}, {TEP: 0x21}}, "45 08 02 81 a2 aa bb 21"},
		{"ENO-9-last-no-length", 0, false, []Suboption{{TEP: 0x21}, {TEP: 0x23, V: true, Data: h("01 02 03")}}, "45 07 21 a3 01 02 03"},
		{"last-v1-empty", 0, false, []Suboption{{TEP: 0x23, V: true}}, "45 03 a3"},
		{"length-32", 0, false, []Suboption{{TEP: 0x21, V: true, Data: ones(32)}, {TEP: 0x22}},
			"45 25 9f a1 " + hexOf(ones(32)) + " 22"},
		{"last-38-bytes", 0, false, []Suboption{{TEP: 0x21, V: true, Data: ones(37)}}, "45 28 a1 " + hexOf(ones(37))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := h("02 04 05 b4")
			got, err := AppendSYNForm(append([]byte(nil), prefix...), tc.global, tc.hasGlobal, tc.subs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:4], prefix) || !bytes.Equal(got[4:], h(tc.want)) {
				t.Fatalf("got % x, want % x after the prefix", got, h(tc.want))
			}
			n, err := SYNFormLen(tc.global, tc.hasGlobal, tc.subs)
			if err != nil || n != len(got)-4 {
				t.Fatalf("SYNFormLen = %d, %v; want %d", n, err, len(got)-4)
			}
			o, err := ParseSYNForm(got[4:])
			if err != nil {
				t.Fatal(err)
			}
			if o.HasGlobal != tc.hasGlobal || o.Global != tc.global || !subsEqual(o.Subs, normSubs(tc.subs)) {
				t.Fatalf("re-parse = %+v", o)
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s []byte
	for _, x := range b {
		s = append(s, digits[x>>4], digits[x&15], ' ')
	}
	return string(s)
}

// normSubs gives V suboptions non-nil data, as parsing does.
func normSubs(subs []Suboption) []Suboption {
	out := cloneSubs(subs)
	for i := range out {
		if out[i].V && out[i].Data == nil {
			out[i].Data = []byte{}
		}
	}
	return out
}

func TestAppendSYNFormErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		global byte
		subs   []Suboption
		want   error
	}{
		{"global-is-tep", 0x21, nil, ErrBadSuboption},
		{"ENO-8-z3-sent", 0x04, nil, ErrBadSuboption},
		{"ENO-8-z2-sent", 0x08, nil, ErrBadSuboption},
		{"ENO-8-z1-sent", 0x10, nil, ErrBadSuboption},
		{"tep-below-0x20", 0x01, []Suboption{{TEP: 0x1f}}, ErrBadSuboption},
		{"tep-with-v-bit", 0x01, []Suboption{{TEP: 0xa1}}, ErrBadSuboption},
		{"data-without-v", 0x01, []Suboption{{TEP: 0x21, Data: h("01")}}, ErrBadSuboption},
		{"ENO-9-not-last-empty-data", 0x01, []Suboption{{TEP: 0x21, V: true}, {TEP: 0x22}}, ErrBadSuboption},
		{"ENO-9-not-last-33-bytes", 0x01, []Suboption{{TEP: 0x21, V: true, Data: ones(33)}, {TEP: 0x22}}, ErrBadSuboption},
		{"too-long-41", 0x01, []Suboption{{TEP: 0x21, V: true, Data: ones(37)}}, ErrTooLong},
		{"too-long-many", 0x01, []Suboption{
			{TEP: 0x21, V: true, Data: ones(32)}, {TEP: 0x22, V: true, Data: ones(32)}, {TEP: 0x23}}, ErrTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := h("01 01")
			got, err := AppendSYNForm(dst, tc.global, true, tc.subs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(got, h("01 01")) {
				t.Fatalf("dst changed on error: % x", got)
			}
		})
	}
}

// randomSubs builds a random encodable suboption list.
func randomSubs(r *rand.Rand) (byte, bool, []Suboption) {
	hasGlobal := r.IntN(2) == 0
	global := byte(r.IntN(4))
	var subs []Suboption
	for range r.IntN(6) {
		s := Suboption{TEP: byte(0x20 + r.IntN(0x60))}
		if r.IntN(3) == 0 {
			s.V = true
			s.Data = make([]byte, 1+r.IntN(8))
			for i := range s.Data {
				s.Data[i] = byte(r.Uint32())
			}
		}
		subs = append(subs, s)
	}
	return global, hasGlobal, subs
}

func TestSYNFormRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	encoded := 0
	for range 5000 {
		g, hg, subs := randomSubs(r)
		opt, err := AppendSYNForm(nil, g, hg, subs)
		if errors.Is(err, ErrTooLong) {
			continue
		}
		if err != nil {
			t.Fatalf("AppendSYNForm(%#x,%v,%+v): %v", g, hg, subs, err)
		}
		encoded++
		o, err := ParseSYNForm(opt)
		if err != nil {
			t.Fatalf("ParseSYNForm(% x): %v", opt, err)
		}
		if o.HasGlobal != hg || (hg && o.Global != g) || !subsEqual(o.Subs, normSubs(subs)) {
			t.Fatalf("round trip of %#x/%v/%+v = %+v", g, hg, subs, o)
		}
	}
	if encoded < 1000 {
		t.Fatalf("only %d encodable cases", encoded)
	}
}

// ENO-4 / ENO-3: the non-SYN form is exactly 45 02 (N = 0).
func TestNonSYNForm(t *testing.T) {
	if !bytes.Equal(NonSYNForm, []byte{Kind, 2}) {
		t.Fatalf("NonSYNForm = % x", NonSYNForm)
	}
}

func TestParseErrorMessages(t *testing.T) {
	_, err := ParseSYNForm(h("45 04 80 21"))
	if got := err.Error(); got != "eno: ill-formed option: length-not-tep at offset 3" {
		t.Fatalf("Error() = %q", got)
	}
	seen := map[string]bool{}
	for r := ParseReason(0); r <= ParseAreaPastEnd; r++ {
		s := r.String()
		if seen[s] || s == "" {
			t.Fatalf("duplicate or empty name %q", s)
		}
		seen[s] = true
	}
	if ParseReason(200).String() != "parse-reason-200" {
		t.Fatal(ParseReason(200).String())
	}
}
