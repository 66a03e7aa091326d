package netcfg

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

func natRuleCases() []NATRule {
	return []NATRule{
		{Kind: NATMasquerade, Src: netip.MustParseAddr("10.77.9.2"), Dev: "tcpc0"},
		{Kind: NATMasquerade, Src: netip.MustParseAddr("fd77:9::2"), Dev: "tun.0-x"},
		{Kind: NATDNAT, Port: 8443, To: netip.MustParseAddrPort("10.77.9.10:443"), Dev: "tcpc0"},
		{Kind: NATDNAT, Port: 65535, To: netip.MustParseAddrPort("[fd77:9::10]:1"), Dev: "t"},
		{Kind: NATDNATLocal, Port: 8443, To: netip.MustParseAddrPort("10.77.9.10:443")},
		{Kind: NATDNATLocal, Port: 1, To: netip.MustParseAddrPort("[fd77:9::10]:65535")},
		{Kind: NATCapture, Lo: netip.MustParseAddr("1.0.0.0"), Hi: netip.MustParseAddr("126.255.255.255"), Mark: CaptureMark, Own: OwnMark},
		{Kind: NATCapture, Lo: netip.MustParseAddr("2000::"), Hi: netip.MustParseAddr("2000::"), Mark: 1, Own: 0xffffffff},
		{Kind: NATCaptureRestore, Mark: CaptureMark},
		{Kind: NATForwardDrop, Dev: "tcpc0"},
		{Kind: NATCaptureRestoreIn, Mark: CaptureMark, Dev: "tcpc0"},
		{Kind: NATForwardDrop, Dev: "tcpc0", IPv6: true},
	}
}

func TestNATRuleText(t *testing.T) {
	for _, r := range natRuleCases() {
		got, err := ParseNATRule(r.String())
		if err != nil || got != r {
			t.Errorf("ParseNATRule(%q) = %v, %v", r.String(), got, err)
		}
	}
	for _, bad := range []string{
		"", "masquerade", "masquerade from 10.0.0.1 oif != ", "masquerade from 10.0.0.1 oif == tcpc0",
		"masquerade from 10.0.0.01 oif != tcpc0", "masquerade from ::ffff:10.0.0.1 oif != tcpc0",
		"masquerade from fe80::1%eth0 oif != tcpc0", "masquerade  from 10.0.0.1 oif != tcpc0",
		"dnat tcp dport 0 to 10.0.0.1:1 iif != t", "dnat tcp dport 08 to 10.0.0.1:1 iif != t",
		"dnat tcp dport 8 to 10.0.0.1:0 iif != t", "dnat tcp dport 70000 to 10.0.0.1:1 iif != t",
		"dnat udp dport 8 to 10.0.0.1:1 iif != t", "dnat tcp dport 8 to 10.0.0.1:1 iif != a-very-long-name",
		"dnat-local tcp dport 8 to 10.0.0.1:1 iif != t", "dnat-local tcp dport 0 to 10.0.0.1:1",
		"dnat-local tcp dport 8 to 10.0.0.1:0", "dnat-local tcp dport 8 to 10.0.0.1", "dnat-local tcp dport 8 to",
		"dnat-local udp dport 8 to 10.0.0.1:1", "dnat-local tcp dport 8 to [fe80::1%eth0]:1",
		"capture tcp daddr 10.0.0.2-10.0.0.1 mark 0x1 unless 0x2",  // empty range
		"capture tcp daddr 10.0.0.1-::1 mark 0x1 unless 0x2",       // mixed families
		"capture tcp daddr 10.0.0.1-10.0.0.2 mark 0x1 unless 0x1",  // the same mark
		"capture tcp daddr 10.0.0.1-10.0.0.2 mark 0x0 unless 0x2",  // mark 0
		"capture tcp daddr 10.0.0.1-10.0.0.2 mark 1 unless 0x2",    // not hex
		"capture tcp daddr 10.0.0.1-10.0.0.2 mark 0x01 unless 0x2", // not canonical
		"capture tcp daddr 10.0.0.1 mark 0x1 unless 0x2",           // no range
		"capture udp daddr 10.0.0.1-10.0.0.2 mark 0x1 unless 0x2",  // not tcp
		"capture-restore mark 0x0", "capture-restore mark 0x100000000", "capture-restore",
		"capture-restore-in mark 0x1", "capture-restore-in mark 0x0 iif t", "capture-restore-in mark 0x1 iif a/b",
		"forward-drop ipv4 iif != a oif != b", "forward-drop ip iif != a oif != a", "forward-drop ipv4 iif != oif != ",
	} {
		if r, err := ParseNATRule(bad); err == nil {
			t.Errorf("ParseNATRule(%q) accepted: %v", bad, r)
		}
	}
}

// FuzzParseNATRule: whatever parses prints back to the same text and validates.
func FuzzParseNATRule(f *testing.F) {
	for _, r := range natRuleCases() {
		f.Add(r.String())
	}
	f.Add("dnat tcp dport 8 to [::1]:1 iif != t")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseNATRule(s)
		if err != nil {
			return
		}
		if r.String() != s || r.validate() != nil {
			t.Fatalf("%q parsed to %v", s, r)
		}
	})
}

func journalCases() []Change {
	nat := natRuleCases()
	return []Change{
		{Kind: ChangeLink, Link: &Link{Name: "tcpc0", MTU: 1500}},
		{Kind: ChangeAddr, Addr: &Addr{Dev: "tcpc0", Prefix: netip.MustParsePrefix("10.77.9.1/24")}},
		{Kind: ChangeRoute, Route: &Route{Table: 2300, Dst: netip.MustParsePrefix("2001:db8::/32"), Dev: "tcpc0", Proto: RouteProtocol}},
		{Kind: ChangeRoute, Route: &Route{Table: 2300, Dst: netip.MustParsePrefix("10.1.0.0/16"), Throw: true, Proto: RouteProtocol}},
		{Kind: ChangeRule, Rule: &Rule{Priority: 10300, V6: true, From: netip.MustParsePrefix("fd77:9::2/128"), Table: 254, Proto: RouteProtocol}},
		{Kind: ChangeRule, Rule: &Rule{Priority: 10301, IPProto: 6, IifName: "x", Table: 2300, Proto: RouteProtocol}},
		{Kind: ChangeSysctl, Sysctl: &Sysctl{Key: "net/ipv6/conf/eth0.100/accept_ra", Value: "1"}},
		{Kind: ChangeNATTable},
		{Kind: ChangeNATRule, NAT: &nat[0]},
		{Kind: ChangeNATRule, NAT: &nat[2]},
		{Kind: ChangeNATRule, NAT: &nat[6]},
		{Kind: ChangeNATRule, NAT: &nat[8]},
		{Kind: ChangeNATRule, NAT: &nat[10]},
		{Kind: ChangeRule, Rule: &Rule{Priority: 10301, IPProto: 6, Mark: CaptureMark, Table: 2300, Proto: RouteProtocol}},
		{Kind: ChangeRule, Rule: &Rule{Priority: 10301, To: netip.MustParsePrefix("198.18.0.5/32"), IPProto: 6, Table: 2300, Proto: RouteProtocol}},
	}
}

func TestJournalCodec(t *testing.T) {
	b, err := json.Marshal(journalCases())
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseJournal(b)
	if err != nil || !reflect.DeepEqual(got, journalCases()) {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	for _, bad := range []string{
		`{}`, `[{"kind":"route"}]`, `[{"kind":"bogus"}]`, `[{"kind":"sysctl","sysctl":{"key":"kernel/x","value":"1"}}]`,
		`[{"kind":"sysctl","sysctl":{"key":"net/../x","value":"1"}}]`, `[{"kind":"nat-rule","nat":"masquerade"}]`,
		`[{"kind":"addr","addr":{"dev":"x","prefix":"10.0.0.1"}}]`,
	} {
		if _, err := parseJournal([]byte(bad)); err == nil {
			t.Errorf("parseJournal(%s) accepted", bad)
		}
	}
}

// FuzzParseJournal: no input panics; what parses survives a marshal round trip.
func FuzzParseJournal(f *testing.F) {
	b, _ := json.Marshal(journalCases())
	f.Add(b)
	for _, c := range journalCases() {
		b, _ := json.Marshal([]Change{c})
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := parseJournal(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(cs)
		if err != nil {
			t.Fatalf("marshal of parsed journal: %v", err)
		}
		cs2, err := parseJournal(again)
		if err != nil || !reflect.DeepEqual(cs, cs2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
