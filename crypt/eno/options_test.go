package eno

import (
	"bytes"
	"errors"
	"testing"
)

// optionsCase is one Options table entry. The same table seeds FuzzOptions.
type optionsCase struct {
	name   string
	area   []byte
	enos   []string // hex of each ENO option found
	legacy bool
	reason ParseReason // parseNone: no error
	offset int
}

var optionsCases = []optionsCase{
	{name: "empty", area: nil},
	{name: "no-eno", area: area(optMSS, optSACKOK, optNOP, optWS)},
	{name: "figure9-SYN", area: synArea(h("45 04 21 23")), enos: []string{"45 04 21 23"}},
	{name: "non-SYN-form", area: ackArea(h("45 02")), enos: []string{"45 02"}},
	{name: "eno-first", area: area(h("45 03 01"), optMSS), enos: []string{"45 03 01"}},
	{name: "eno-after-nops", area: area(optNOP, optNOP, optNOP, h("45 02")), enos: []string{"45 02"}},
	// ENO-5 / ENO-6: several kind-69 options are all reported.
	{name: "ENO-5-two-eno", area: area(h("45 03 21"), optNOP, h("45 03 22")), enos: []string{"45 03 21", "45 03 22"}},
	{name: "ENO-6-two-non-syn", area: ackArea(h("45 02 45 02")), enos: []string{"45 02", "45 02"}},
	{name: "eol-ends-scan", area: area(optMSS, []byte{kindEOL}, h("45 02")), enos: nil},
	{name: "eol-then-garbage", area: area(h("45 02"), []byte{kindEOL}, h("ff")), enos: []string{"45 02"}},
	// ENO-1: legacy kind 253 with ExID 0x454E is detected, other ExIDs not.
	{name: "ENO-1-legacy", area: area(optMSS, h("fd 06 45 4e 21 23")), legacy: true},
	{name: "ENO-1-legacy-and-69", area: area(h("fd 05 45 4e 21"), h("45 03 21")), enos: []string{"45 03 21"}, legacy: true},
	{name: "legacy-exid-only", area: h("fd 04 45 4e"), legacy: true},
	{name: "kind-253-other-exid", area: h("fd 06 45 4f 21 23")},
	{name: "kind-253-short", area: h("fd 03 45")},
	{name: "kind-253-len-2", area: h("fd 02")},
	{name: "eno-max-size", area: append(h("45 28 a1"), ones(37)...), enos: []string{"45 28 a1 " + hexOf(ones(37))}},

	// Malformed options areas.
	{name: "too-long", area: append(h("45 02"), make([]byte, 39)...), reason: ParseAreaTooLong, offset: 40},
	{name: "truncated-kind", area: area(optMSS, h("45")), reason: ParseAreaTruncated, offset: 4},
	{name: "truncated-other-kind", area: h("02"), reason: ParseAreaTruncated, offset: 0},
	{name: "eno-len-0", area: h("45 00"), reason: ParseAreaBadLength, offset: 1},
	{name: "eno-len-1", area: h("45 01 01"), reason: ParseAreaBadLength, offset: 1},
	{name: "other-len-1", area: area(h("45 02"), h("08 01")), enos: []string{"45 02"}, reason: ParseAreaBadLength, offset: 3},
	{name: "eno-past-end", area: area(optMSS, h("45 05 21 23")), reason: ParseAreaPastEnd, offset: 5},
	{name: "eno-then-past-end", area: area(h("45 03 21"), h("02 04 05")), enos: []string{"45 03 21"}, reason: ParseAreaPastEnd, offset: 4},
}

func TestOptions(t *testing.T) {
	for _, tc := range optionsCases {
		t.Run(tc.name, func(t *testing.T) {
			enos, legacy, err := Options(tc.area)
			if tc.reason == parseNone {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Reason != tc.reason || pe.Offset != tc.offset {
					t.Fatalf("err = %v, want reason %v at %d", err, tc.reason, tc.offset)
				}
			}
			if legacy != tc.legacy {
				t.Errorf("legacy = %v, want %v", legacy, tc.legacy)
			}
			if len(enos) != len(tc.enos) {
				t.Fatalf("enos = % x, want %v", enos, tc.enos)
			}
			for i := range enos {
				if !bytes.Equal(enos[i], h(tc.enos[i])) {
					t.Errorf("eno[%d] = % x, want %s", i, enos[i], tc.enos[i])
				}
			}
		})
	}
}

// Options returns slices aliasing the area, capped so that appending to one
// cannot overwrite the following options.
func TestOptionsAliasing(t *testing.T) {
	a := area(h("45 03 21"), optMSS)
	enos, _, err := Options(a)
	if err != nil || len(enos) != 1 {
		t.Fatal(enos, err)
	}
	if &enos[0][0] != &a[0] {
		t.Fatal("ENO option does not alias the area")
	}
	if cap(enos[0]) != 3 {
		t.Fatalf("cap = %d, want 3", cap(enos[0]))
	}
	_ = append(enos[0], 0xff)
	if a[3] != optMSS[0] {
		t.Fatal("append through the returned slice overwrote the area")
	}
}
