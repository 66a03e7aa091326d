package stack

import (
	"net/netip"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
)

func TestPolicyModeFor(t *testing.T) {
	p := &Policy{
		Default: eno.ModeOpportunistic,
		Rules: []Rule{
			{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Mode: eno.ModeOff},
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Port: 443, Mode: eno.ModeRequired},
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Mode: eno.ModeOpportunistic},
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Port: 25, Mode: eno.ModeRequired},
			{Prefix: netip.MustParsePrefix("fd00::/8"), Mode: eno.ModeRequired},
			{Prefix: netip.MustParsePrefix("::ffff:192.168.0.0/112"), Mode: eno.ModeOff},
			{}, // invalid prefix: ignored
		},
	}
	for _, tc := range []struct {
		addr string
		port uint16
		want eno.Mode
	}{
		{"192.0.2.1", 80, eno.ModeOpportunistic},
		{"10.2.3.4", 80, eno.ModeOff},
		{"10.2.3.4", 25, eno.ModeOff}, // the longer prefix wins over the port rule
		{"10.1.2.3", 443, eno.ModeRequired},
		{"10.1.2.3", 80, eno.ModeOpportunistic},
		{"192.0.2.1", 25, eno.ModeRequired},
		{"::ffff:10.2.3.4", 80, eno.ModeOff}, // mapped addresses match IPv4 rules
		{"fd00::5", 1, eno.ModeRequired},
		{"2001:db8::1", 1, eno.ModeOpportunistic},
		{"192.168.1.1", 80, eno.ModeOff}, // IPv4-mapped prefix
	} {
		if got := p.ModeFor(netip.MustParseAddr(tc.addr), tc.port); got != tc.want {
			t.Errorf("ModeFor(%s, %d) = %v, want %v", tc.addr, tc.port, got, tc.want)
		}
	}
	var nilp *Policy
	if nilp.ModeFor(netip.MustParseAddr("10.0.0.1"), 1) != eno.ModeOpportunistic {
		t.Error("nil policy is not opportunistic")
	}
}

func TestCountersSnapshot(t *testing.T) {
	var c Counters
	c.Rewrites.Add(3)
	c.fallback(eno.ReasonStripped)
	c.fallback(eno.ReasonStripped)
	c.fallback(eno.Reason(200)) // out of range: shares the last slot
	m := c.Snapshot()
	if m["rewrites"] != 3 || m["fallback-"+eno.ReasonStripped.String()] != 2 || c.Fallback(eno.Reason(250)) != 1 {
		t.Fatalf("snapshot %v", m)
	}
	if _, ok := m["fallback-"+eno.ReasonNoENO.String()]; ok {
		t.Fatal("zero fallback listed")
	}
}
