package stack

import (
	"net/netip"
	"testing"
	"time"
)

// The connection table answers by either leg's 4-tuple, seen from either
// end (the application's socket is the stack's view reversed), follows
// tuple changes, and forgets everything of an entry it removes.
func TestTableLookupByEitherTuple(t *testing.T) {
	ap := netip.MustParseAddrPort
	tb := newTable()
	// Outbound: the application 10.1.0.5:40000 connected to 192.0.2.80:443;
	// the stack answered as 192.0.2.80:443 and dialled from its egress
	// address.
	inner := Tuple{Local: ap("192.0.2.80:443"), Remote: ap("10.1.0.5:40000")}
	e := tb.add(Outbound, inner, Tuple{}, time.Now())
	outer := Tuple{Local: ap("10.254.77.2:51000"), Remote: ap("192.0.2.80:443")}
	tb.setOuter(e, outer, Negotiation{Encrypted: true, SessionID: []byte{0x23, 1, 2}})
	other := tb.add(Inbound, Tuple{Local: ap("[fd00::1]:1"), Remote: ap("[fd00::2]:2")}, Tuple{}, time.Now())

	for _, tc := range []struct {
		name          string
		local, remote string
		want          uint64
	}{
		{"application's socket", "10.1.0.5:40000", "192.0.2.80:443", e.info.ID},
		{"stack's inner leg", "192.0.2.80:443", "10.1.0.5:40000", e.info.ID},
		{"stack's outer leg", "10.254.77.2:51000", "192.0.2.80:443", e.info.ID},
		{"server's view of the wire", "192.0.2.80:443", "10.254.77.2:51000", e.info.ID},
		{"ipv6 entry", "[fd00::2]:2", "[fd00::1]:1", other.info.ID},
		{"unknown", "10.1.0.5:40001", "192.0.2.80:443", 0},
	} {
		ci, ok := tb.Lookup(ap(tc.local), ap(tc.remote))
		if ok != (tc.want != 0) || ci.ID != tc.want {
			t.Errorf("%s: Lookup = %d, %v; want %d", tc.name, ci.ID, ok, tc.want)
		}
		if ok && ci.ID == e.info.ID && (!ci.Encrypted || len(ci.SessionID) != 3) {
			t.Errorf("%s: snapshot %+v", tc.name, ci)
		}
	}

	// A changed outer tuple replaces the old one.
	tb.setOuter(e, Tuple{Local: ap("10.254.77.2:51001"), Remote: ap("192.0.2.80:443")}, Negotiation{})
	if _, ok := tb.Lookup(ap("10.254.77.2:51000"), ap("192.0.2.80:443")); ok {
		t.Error("old outer tuple still found")
	}
	if _, ok := tb.Lookup(ap("10.254.77.2:51001"), ap("192.0.2.80:443")); !ok {
		t.Error("new outer tuple not found")
	}

	tb.remove(e)
	tb.remove(other)
	if tb.Len() != 0 || len(tb.byTuple) != 0 {
		t.Fatalf("after removal: %d entries, %d index keys", tb.Len(), len(tb.byTuple))
	}
}
