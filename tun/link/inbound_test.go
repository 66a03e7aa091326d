package link

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// inboundCase is one read from the TUN: virtio header bytes and packet.
type inboundCase struct {
	name string
	vh   []byte
	pkt  []byte
	// l4Off/proto/v6 describe pkt for the checksum check after completion.
	l4Off int
	proto uint8
	v6    bool

	want          rxVerdict
	wantGSO       bool
	wantCsumOK    bool
	wantCompleted bool
	wantUnverif   bool
	wantLen       int // 0: len(pkt)
}

func caseOf(name string, s pktSpec, h func(l4Off int) virtioHdr, want rxVerdict) inboundCase {
	pkt, l4Off := s.build()
	return inboundCase{name: name, vh: vhdr(h(l4Off)), pkt: pkt, l4Off: l4Off, proto: s.proto, v6: s.v6, want: want}
}

func noFlags(int) virtioHdr { return virtioHdr{} }

func partial(proto uint8) func(int) virtioHdr {
	return func(l4Off int) virtioHdr { return partialHdr(l4Off, proto) }
}

func tso(v6 bool, mss uint16) func(int) virtioHdr {
	return func(l4Off int) virtioHdr { return tsoHdr(v6, l4Off, mss) }
}

func with(c inboundCase, f func(*inboundCase)) inboundCase { f(&c); return c }

// inboundCases is shared by the table test and the fuzz seed corpus.
func inboundCases() []inboundCase {
	tcp4 := pktSpec{proto: ipProtoTCP, payload: 100, csum: csumPartial}
	tcp6 := pktSpec{v6: true, proto: ipProtoTCP, payload: 1000, tcpOpts: 12, csum: csumPartial}
	ok := func(c inboundCase) inboundCase { c.wantCsumOK = true; return c }
	completed := func(c inboundCase) inboundCase { c.wantCsumOK, c.wantCompleted = true, true; return c }
	gso := func(c inboundCase) inboundCase { c.wantCsumOK, c.wantGSO = true, true; return c }
	unverified := func(c inboundCase) inboundCase { c.wantUnverif = true; return c }

	cs := []inboundCase{
		ok(caseOf("v4 TCP pure ACK partial", pktSpec{proto: ipProtoTCP, csum: csumPartial}, partial(ipProtoTCP), rxOK)),
		ok(caseOf("v4 TCP partial", tcp4, partial(ipProtoTCP), rxOK)),
		ok(caseOf("v4 TCP partial with IP options", pktSpec{proto: ipProtoTCP, payload: 10, ipOpts: 8, csum: csumPartial}, partial(ipProtoTCP), rxOK)),
		ok(caseOf("v6 TCP partial", tcp6, partial(ipProtoTCP), rxOK)),
		ok(caseOf("v4 UDP partial", pktSpec{proto: ipProtoUDP, payload: 33, csum: csumPartial}, partial(ipProtoUDP), rxOK)),
		ok(caseOf("v6 UDP partial", pktSpec{v6: true, proto: ipProtoUDP, payload: 33, csum: csumPartial}, partial(ipProtoUDP), rxOK)),
		completed(caseOf("v4 ICMP partial completed", pktSpec{proto: 1, payload: 56, csum: csumPartial}, partial(1), rxOK)),
		completed(caseOf("v6 ICMPv6 partial completed", pktSpec{v6: true, proto: ipProtoICMPv6, payload: 57, csum: csumPartial}, partial(ipProtoICMPv6), rxOK)),
		ok(caseOf("v6 TCP behind dest opts partial", pktSpec{v6: true, proto: ipProtoTCP, payload: 9, destOpts: true, csum: csumPartial}, partial(ipProtoTCP), rxOK)),
		ok(caseOf("v4 TCP data valid, bad sum trusted", pktSpec{proto: ipProtoTCP, payload: 5, csum: csumBad}, func(int) virtioHdr { return virtioHdr{flags: virtioFlagDataValid} }, rxOK)),
		ok(caseOf("v4 TCP no flags valid", pktSpec{proto: ipProtoTCP, payload: 1400, csum: csumFull}, noFlags, rxOK)),
		ok(caseOf("v6 TCP no flags valid", tcp6Full(), noFlags, rxOK)),
		ok(caseOf("v6 TCP dest opts no flags valid", pktSpec{v6: true, proto: ipProtoTCP, payload: 9, destOpts: true, csum: csumFull}, noFlags, rxOK)),
		caseOf("v4 TCP no flags bad sum", pktSpec{proto: ipProtoTCP, payload: 1400, csum: csumBad}, noFlags, rxDropChecksum),
		caseOf("v6 TCP dest opts no flags bad sum", pktSpec{v6: true, proto: ipProtoTCP, payload: 9, destOpts: true, csum: csumBad}, noFlags, rxDropChecksum),
		ok(caseOf("v4 UDP no flags zero sum means none", pktSpec{proto: ipProtoUDP, payload: 20, csum: csumZero}, noFlags, rxOK)),
		caseOf("v6 UDP no flags zero sum invalid", pktSpec{v6: true, proto: ipProtoUDP, payload: 20, csum: csumZero}, noFlags, rxDropChecksum),
		caseOf("v6 UDP no flags bad sum", pktSpec{v6: true, proto: ipProtoUDP, payload: 20, csum: csumBad}, noFlags, rxDropChecksum),
		caseOf("v4 ICMP no flags left to gVisor", pktSpec{proto: 1, payload: 8, csum: csumBad}, noFlags, rxOK),
		unverified(caseOf("v4 fragment no flags", pktSpec{proto: ipProtoTCP, payload: 8, frag: true, csum: csumBad}, noFlags, rxOK)),
		unverified(caseOf("v6 fragment no flags", pktSpec{v6: true, proto: ipProtoUDP, payload: 8, frag: true, csum: csumBad}, noFlags, rxOK)),
		gso(caseOf("v4 TSO super-packet", pktSpec{proto: ipProtoTCP, payload: 60000, tcpOpts: 12, csum: csumPartial}, tso(false, 1448), rxOK)),
		gso(caseOf("v6 TSO super-packet", pktSpec{v6: true, proto: ipProtoTCP, payload: 30000, csum: csumPartial}, tso(true, 1428), rxOK)),
		gso(caseOf("v4 TSO with ECN bit", pktSpec{proto: ipProtoTCP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr { h := tsoHdr(false, l4Off, 1000); h.gsoType |= virtioGSOECN; return h }, rxOK)),
		caseOf("TSO v4 type on v6 packet", pktSpec{v6: true, proto: ipProtoTCP, payload: 3000, csum: csumPartial}, tso(false, 1000), rxDropBadVirtio),
		caseOf("TSO v6 type on v4 packet", pktSpec{proto: ipProtoTCP, payload: 3000, csum: csumPartial}, tso(true, 1000), rxDropBadVirtio),
		caseOf("TSO without NEEDS_CSUM", pktSpec{proto: ipProtoTCP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr { h := tsoHdr(false, l4Off, 1000); h.flags = 0; return h }, rxDropBadVirtio),
		caseOf("TSO with gso_size 0", pktSpec{proto: ipProtoTCP, payload: 3000, csum: csumPartial}, tso(false, 0), rxDropBadVirtio),
		caseOf("TSO csum_start off the TCP header", pktSpec{proto: ipProtoTCP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr { h := tsoHdr(false, l4Off, 1000); h.csumStart += 4; return h }, rxDropBadVirtio),
		caseOf("TSO of a UDP packet", pktSpec{proto: ipProtoUDP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr { h := tsoHdr(false, l4Off, 1000); h.csumOffset = udpCsumOffset; return h }, rxDropBadVirtio),
		caseOf("UDP_L4 segmentation", pktSpec{proto: ipProtoUDP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr {
				h := partialHdr(l4Off, ipProtoUDP)
				h.gsoType, h.gsoSize = virtioGSOUDPL4, 1000
				return h
			}, rxDropUnsupportedGSO),
		caseOf("UFO", pktSpec{proto: ipProtoUDP, payload: 3000, csum: csumPartial},
			func(l4Off int) virtioHdr { return virtioHdr{gsoType: virtioGSOUDP, gsoSize: 1000} }, rxDropUnsupportedGSO),
		caseOf("unknown GSO type", tcp4, func(int) virtioHdr { return virtioHdr{gsoType: 2} }, rxDropBadVirtio),
		caseOf("ECN bit without GSO", tcp4, func(int) virtioHdr { return virtioHdr{gsoType: virtioGSOECN} }, rxDropBadVirtio),
		caseOf("unknown flag bit", tcp4, func(int) virtioHdr { return virtioHdr{flags: 4} }, rxDropBadVirtio),
		caseOf("NEEDS_CSUM start inside IP header", tcp4, func(int) virtioHdr { return virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 10, csumOffset: 16} }, rxDropBadVirtio),
		caseOf("NEEDS_CSUM field past the end", tcp4, func(l4Off int) virtioHdr {
			return virtioHdr{flags: virtioFlagNeedsCsum, csumStart: uint16(l4Off), csumOffset: 200}
		}, rxDropBadVirtio),
		caseOf("NEEDS_CSUM at an odd offset", pktSpec{proto: 1, payload: 60, csum: csumPartial}, func(l4Off int) virtioHdr {
			return virtioHdr{flags: virtioFlagNeedsCsum, csumStart: uint16(l4Off), csumOffset: 49}
		}, rxDropBadVirtio),
		caseOf("TSO with truncated TCP header", pktSpec{proto: ipProtoTCP, tcpOpts: 40, csum: csumPartial}, tso(false, 1000), rxOK),
	}
	// Hand-made malformed reads.
	tcp4pkt, _ := tcp4.build()
	cs[len(cs)-1] = with(cs[len(cs)-1], func(c *inboundCase) {
		// Claim 60 bytes of TCP header in a 40-byte IP packet.
		c.pkt = append([]byte(nil), c.pkt[:40]...)
		binary.BigEndian.PutUint16(c.pkt[2:], 40)
		c.pkt[20+12] = 15 << 4
		c.want = rxDropMalformed
	})
	cs = append(cs,
		inboundCase{name: "short virtio header", vh: []byte{0, 0, 0, 0, 0}, pkt: tcp4pkt, want: rxDropShort},
		inboundCase{name: "empty packet", vh: vhdr(virtioHdr{}), pkt: nil, want: rxDropMalformed},
		inboundCase{name: "IP version 5", vh: vhdr(virtioHdr{}), pkt: append([]byte{0x55}, tcp4pkt[1:]...), want: rxDropUnknownProto},
		inboundCase{name: "v4 shorter than header", vh: vhdr(virtioHdr{}), pkt: tcp4pkt[:19], want: rxDropMalformed},
		inboundCase{name: "v4 IHL below 5", vh: vhdr(virtioHdr{}), pkt: append([]byte{0x44}, tcp4pkt[1:]...), want: rxDropMalformed},
		inboundCase{name: "v4 total length past read", vh: vhdr(partialHdr(20, ipProtoTCP)), pkt: tcp4pkt[:len(tcp4pkt)-1], want: rxDropMalformed},
		inboundCase{name: "v6 shorter than header", vh: vhdr(virtioHdr{}), pkt: append([]byte{0x60}, make([]byte, 30)...), want: rxDropMalformed},
		with(caseOf("v4 bad header checksum", pktSpec{proto: ipProtoTCP, payload: 4, csum: csumFull}, noFlags, rxDropChecksum),
			func(c *inboundCase) { c.pkt[10] ^= 0xff }),
		with(ok(caseOf("v4 TCP link padding cut", pktSpec{proto: ipProtoTCP, payload: 4, csum: csumFull}, noFlags, rxOK)),
			func(c *inboundCase) { c.wantLen = len(c.pkt); c.pkt = append(c.pkt, 0xee, 0xee, 0xee) }),
		with(caseOf("v4 TCP no flags data offset 4", pktSpec{proto: ipProtoTCP, payload: 4, csum: csumFull}, noFlags, rxDropMalformed),
			func(c *inboundCase) { c.pkt[20+12] = 4 << 4 }),
	)
	return cs
}

func tcp6Full() pktSpec {
	return pktSpec{v6: true, proto: ipProtoTCP, payload: 1000, tcpOpts: 12, csum: csumFull}
}

func TestInspectInbound(t *testing.T) {
	for _, c := range inboundCases() {
		t.Run(c.name, func(t *testing.T) {
			pkt := bytes.Clone(c.pkt)
			m, v := inspectInbound(c.vh, pkt)
			if v != c.want {
				t.Fatalf("verdict = %v, want %v", v, c.want)
			}
			if v != rxOK {
				if !bytes.Equal(pkt, c.pkt) {
					t.Error("a dropped packet was modified")
				}
				return
			}
			wantLen := c.wantLen
			if wantLen == 0 {
				wantLen = len(c.pkt)
			}
			wantProto := header.IPv4ProtocolNumber
			if pkt[0]>>4 == 6 {
				wantProto = header.IPv6ProtocolNumber
			}
			if m.length != wantLen || m.proto != wantProto {
				t.Errorf("length, proto = %d, %d; want %d, %d", m.length, m.proto, wantLen, wantProto)
			}
			if m.gso != c.wantGSO || m.csumOK != c.wantCsumOK || m.completed != c.wantCompleted || m.unverified != c.wantUnverif {
				t.Errorf("meta = %+v; want gso=%v csumOK=%v completed=%v unverified=%v",
					m, c.wantGSO, c.wantCsumOK, c.wantCompleted, c.wantUnverif)
			}
			if m.completed {
				if !transportChecksumOK(pkt, c.v6, c.proto, c.l4Off) {
					t.Error("completed checksum does not verify")
				}
			} else if !bytes.Equal(pkt, c.pkt) {
				t.Error("packet modified although nothing was completed")
			}
		})
	}
}

// FuzzInspectInbound feeds arbitrary reads (virtio header + packet) to inspectInbound:
// it must not panic, must accept only packets whose lengths make sense, must modify
// nothing but a completed checksum field, and a completed checksum must verify.
func FuzzInspectInbound(f *testing.F) {
	for _, c := range inboundCases() {
		f.Add(append(bytes.Clone(c.vh), c.pkt...))
	}
	f.Fuzz(func(t *testing.T, read []byte) {
		vh, pkt := read, []byte(nil)
		if len(read) >= virtioNetHdrLen {
			vh, pkt = read[:virtioNetHdrLen], bytes.Clone(read[virtioNetHdrLen:])
		}
		orig := bytes.Clone(pkt)
		m, v := inspectInbound(vh, pkt)
		if v >= numRxVerdicts {
			t.Fatalf("verdict %d out of range", v)
		}
		if v != rxOK {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("dropped packet modified")
			}
			return
		}
		if m.length > len(pkt) || m.length < ipv4MinHdrLen {
			t.Fatalf("accepted length %d of a %d-byte read", m.length, len(pkt))
		}
		if m.gso && !m.csumOK {
			t.Fatal("super-packet without a trusted checksum")
		}
		hdr, _ := decodeVirtioHdr(vh)
		if !m.completed {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("packet modified although nothing was completed")
			}
			return
		}
		// The two bytes at csum_start+csum_offset changed, and the sum from
		// csum_start with the original field as seed now verifies.
		at := int(hdr.csumStart + hdr.csumOffset)
		for i := range pkt {
			if (i < at || i > at+1) && pkt[i] != orig[i] {
				t.Fatalf("byte %d changed outside the checksum field", i)
			}
		}
		region := bytes.Clone(orig[hdr.csumStart:m.length])
		seed := binary.BigEndian.Uint16(region[hdr.csumOffset:])
		region[hdr.csumOffset], region[hdr.csumOffset+1] = pkt[at], pkt[at+1]
		if refChecksum(uint32(seed), region) != 0xffff {
			t.Fatal("completed checksum does not verify")
		}
	})
}
