package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// The attacker's packets are what a server must take for a client's: IPv4
// and TCP checksums that verify, the SYN's ENO option a valid SYN form
// from host A offering X25519, the ACK's the non-SYN form; and what it
// reads back is parsed to the same fields.
func TestFloodPackets(t *testing.T) {
	src, dst := [4]byte{10, 201, 3, 4}, [4]byte{10, 77, 3, 1}
	verify := func(name string, p []byte) tcp4Seg {
		t.Helper()
		if checksum(p[:20], 0) != 0 {
			t.Errorf("%s: IPv4 header checksum does not verify", name)
		}
		if got := int(p[2])<<8 | int(p[3]); got != len(p) {
			t.Errorf("%s: total length %d, packet %d bytes", name, got, len(p))
		}
		var ph uint32
		for _, a := range [][4]byte{src, dst} {
			ph += (uint32(a[0])<<8 | uint32(a[1])) + (uint32(a[2])<<8 | uint32(a[3]))
		}
		ph += 6 + uint32(len(p)-20)
		if checksum(p[20:], ph) != 0 {
			t.Errorf("%s: TCP checksum does not verify", name)
		}
		seg, ok := parseTCP4(p)
		if !ok || seg.src != src || seg.dst != dst || seg.sport != 40000 || seg.dport != 5001 || !seg.eno {
			t.Fatalf("%s: parsed %+v, ok %v", name, seg, ok)
		}
		return seg
	}

	syn := appendSYN(nil, src, dst, 40000, 5001, 0xfffffff0)
	seg := verify("SYN", syn)
	if seg.flags != tcpSYN || seg.seq != 0xfffffff0 {
		t.Errorf("SYN: flags %#x seq %#x", seg.flags, seg.seq)
	}
	enos, _, err := eno.Options(syn[40:])
	if err != nil || len(enos) != 1 {
		t.Fatalf("SYN: ENO options %q, %v", enos, err)
	}
	o, err := eno.ParseSYNForm(enos[0])
	if err != nil || o.B() || len(o.Subs) != 1 || o.Subs[0].TEP != byte(kex.X25519) {
		t.Fatalf("SYN: ENO option %+v, %v; want host A offering X25519", o, err)
	}

	ack := appendACK(nil, src, dst, 40000, 5001, 0xfffffff1, 7)
	seg = verify("ACK", ack)
	if seg.flags != tcpACK || seg.seq != 0xfffffff1 || seg.ack != 7 {
		t.Errorf("ACK: flags %#x seq %#x ack %d", seg.flags, seg.seq, seg.ack)
	}
	if enos, _, _ := eno.Options(ack[40:]); len(enos) != 1 || !slices.Equal(enos[0], eno.NonSYNForm) {
		t.Errorf("ACK: ENO options %q, want the non-SYN form", enos)
	}

	// Truncated or foreign packets are refused, never read past.
	for n := range len(syn) {
		if _, ok := parseTCP4(syn[:n]); ok && n < 40 {
			t.Errorf("a %d-byte prefix of the SYN parsed", n)
		}
	}
	udp := slices.Clone(syn)
	udp[9] = 17
	if _, ok := parseTCP4(udp); ok {
		t.Error("a UDP packet parsed as TCP")
	}
}

// Spoofed and stalled sources stay inside their prefixes, never on the
// network or broadcast address, and spread over them.
func TestFloodRandomAddr(t *testing.T) {
	seen := map[[4]byte]bool{}
	for _, p := range []netip.Prefix{spoofNet, stallNet, netip.MustParsePrefix("192.0.2.0/30")} {
		for range 1000 {
			a := netip.AddrFrom4(randomAddr(p))
			if !p.Contains(a) || a == p.Masked().Addr() || !p.Contains(a.Next()) {
				t.Fatalf("%v: %v", p, a)
			}
			seen[a.As4()] = true
		}
	}
	if len(seen) < 1500 {
		t.Errorf("%d distinct addresses of 3000 draws", len(seen))
	}
}

// The flood figures are reported under fixed names (results.csv rows), for
// the tcpcryptd setups only, and the plain count is read from the daemon's
// connection counters summed over directions and reasons.
func TestFloodFigureNames(t *testing.T) {
	ids := map[string]bool{}
	for _, f := range figureDefs(options{}) {
		ids[f.ID] = true
	}
	for _, id := range []string{"flood-connrate", "flood-ratio", "flood-plain"} {
		if !ids[id] {
			t.Errorf("no figure %s", id)
		}
	}
	rows := map[string]string{}
	for _, s := range specs {
		if s.flood != "" {
			rows[s.name] = s.flood
		}
	}
	want := map[string]string{"relay-plain": "relay-plain", "tcpcrypt-aes128gcm": "tcpcrypt-resumed", "tcpcrypt-fresh": "tcpcrypt-fresh"}
	if len(rows) != len(want) {
		t.Errorf("flood rows %v, want %v", rows, want)
	}
	for k, v := range want {
		if rows[k] != v {
			t.Errorf("setup %s: flood row %q, want %q", k, rows[k], v)
		}
	}
	if _, err := parseSet("flood", []string{"bulk", "connrate", "memory", "wire", "ttfb", "flood"}); err != nil {
		t.Error(err)
	}

	text := []byte(`# HELP tcpcryptd_connections_total Connections.
# TYPE tcpcryptd_connections_total counter
tcpcryptd_connections_total{direction="outbound",outcome="encrypted",reason=""} 40
tcpcryptd_connections_total{direction="outbound",outcome="plain",reason="no_eno_in_synack"} 2
tcpcryptd_connections_total{direction="inbound",outcome="plain",reason="vacuous"} 3
tcpcryptd_connections_total{direction="outbound",outcome="failed",reason="dial"} 1
# TYPE tcpcryptd_eno_enabled_total counter
tcpcryptd_eno_enabled_total 40
`)
	got, err := countersByLabel(text, "tcpcryptd_connections_total", "outcome")
	if err != nil {
		t.Fatal(err)
	}
	if got["encrypted"] != 40 || got["plain"] != 5 || got["failed"] != 1 || len(got) != 3 {
		t.Errorf("outcomes %v", got)
	}
	if _, err := countersByLabel([]byte("not { metrics"), "x", "y"); err == nil {
		t.Error("malformed metrics parsed")
	}
}
