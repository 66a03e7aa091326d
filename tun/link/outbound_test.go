package link

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func hostGSO(typ stack.GSOType, mss uint16) stack.GSO {
	l3 := uint16(ipv4MinHdrLen)
	if typ == stack.GSOTCPv6 {
		l3 = ipv6HdrLen
	}
	return stack.GSO{Type: typ, NeedsCsum: true, CsumOffset: tcpCsumOffset, MSS: mss, L3HdrLen: l3, MaxSize: GSOMaxSize}
}

type txCase struct {
	name string
	in   txPacket
	want virtioHdr
	v    txVerdict
}

func txCases() []txCase {
	tcp := header.TCPProtocolNumber
	return []txCase{
		{"UDP without offload", txPacket{l3Len: 20, l4Len: 8, l4Proto: header.UDPProtocolNumber, payloadLen: 100}, virtioHdr{}, txOK},
		{"ICMP without offload", txPacket{l3Len: 40, l4Len: 8, l4Proto: header.ICMPv6ProtocolNumber, payloadLen: 56}, virtioHdr{}, txOK},
		{"v4 pure ACK partial checksum", txPacket{gso: hostGSO(stack.GSOTCPv4, 1448), l3Len: 20, l4Len: 32, l4Proto: tcp},
			virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 20, csumOffset: 16, hdrLen: 52}, txOK},
		{"v4 one MSS of data", txPacket{gso: hostGSO(stack.GSOTCPv4, 1448), l3Len: 20, l4Len: 32, l4Proto: tcp, payloadLen: 1448},
			virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 20, csumOffset: 16, hdrLen: 52}, txOK},
		{"v4 super-packet", txPacket{gso: hostGSO(stack.GSOTCPv4, 1448), l3Len: 20, l4Len: 32, l4Proto: tcp, payloadLen: 65000},
			virtioHdr{flags: virtioFlagNeedsCsum, gsoType: virtioGSOTCPv4, gsoSize: 1448, csumStart: 20, csumOffset: 16, hdrLen: 52}, txOK},
		{"v6 super-packet", txPacket{gso: hostGSO(stack.GSOTCPv6, 1428), l3Len: 40, l4Len: 32, l4Proto: tcp, payloadLen: 1429},
			virtioHdr{flags: virtioFlagNeedsCsum, gsoType: virtioGSOTCPv6, gsoSize: 1428, csumStart: 40, csumOffset: 16, hdrLen: 72}, txOK},
		{"v4 with IP options: csum_start is the real L3 length", txPacket{gso: hostGSO(stack.GSOTCPv4, 1000), l3Len: 24, l4Len: 20, l4Proto: tcp, payloadLen: 10},
			virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 24, csumOffset: 16, hdrLen: 44}, txOK},
		{"UDP partial checksum", txPacket{gso: stack.GSO{NeedsCsum: true}, l3Len: 20, l4Len: 8, l4Proto: header.UDPProtocolNumber, payloadLen: 10},
			virtioHdr{flags: virtioFlagNeedsCsum, csumStart: 20, csumOffset: 6, hdrLen: 28}, txOK},
		{"super-packet without partial checksum", txPacket{gso: stack.GSO{Type: stack.GSOTCPv4, MSS: 1000}, l3Len: 20, l4Len: 20, l4Proto: tcp, payloadLen: 5000},
			virtioHdr{}, txDropNoCsum},
		{"super-packet with MSS 0", txPacket{gso: hostGSO(stack.GSOTCPv4, 0), l3Len: 20, l4Len: 20, l4Proto: tcp, payloadLen: 1},
			virtioHdr{}, txDropBadGSO},
		{"software GSO type", txPacket{gso: stack.GSO{Type: stack.GSOGvisor, NeedsCsum: true, MSS: 1000}, l3Len: 20, l4Len: 20, l4Proto: tcp, payloadLen: 5000},
			virtioHdr{}, txDropBadGSO},
		{"partial checksum of ICMP", txPacket{gso: stack.GSO{NeedsCsum: true}, l3Len: 20, l4Len: 8, l4Proto: header.ICMPv4ProtocolNumber},
			virtioHdr{}, txDropBadGSO},
		{"headers too long", txPacket{gso: hostGSO(stack.GSOTCPv4, 1000), l3Len: 70000, l4Len: 20, l4Proto: tcp}, virtioHdr{}, txDropHeaders},
		{"negative header length", txPacket{l3Len: -1, l4Proto: tcp}, virtioHdr{}, txDropHeaders},
	}
}

func TestTxHeader(t *testing.T) {
	for _, c := range txCases() {
		t.Run(c.name, func(t *testing.T) {
			got, v := txHeader(c.in)
			if v != c.v || got != c.want {
				t.Fatalf("txHeader = %v, %v; want %v, %v", got, v, c.want, c.v)
			}
		})
	}
}

// TestTxPartialChecksumRoundTrip checks the semantics end to end without a kernel:
// a packet carrying only the pseudo-header sum (what gVisor's host-GSO TCP writes),
// described by txHeader, is accepted by inspectInbound as the kernel would pass it
// back, and finishing the sum at csum_start/csum_offset yields a valid checksum.
func TestTxPartialChecksumRoundTrip(t *testing.T) {
	for _, s := range []pktSpec{
		{proto: ipProtoTCP, payload: 1, tcpOpts: 12, csum: csumPartial},
		{proto: ipProtoTCP, payload: 999, ipOpts: 4, csum: csumPartial},
		{v6: true, proto: ipProtoTCP, payload: 1440, tcpOpts: 12, csum: csumPartial},
		{proto: ipProtoUDP, payload: 7, csum: csumPartial},
		{v6: true, proto: ipProtoUDP, payload: 100, csum: csumPartial},
	} {
		pkt, l4Off := s.build()
		gso := stack.GSO{NeedsCsum: true}
		l4Len, proto := tcpMinHdrLen+s.tcpOpts, header.TCPProtocolNumber
		if s.proto == ipProtoTCP {
			gso = hostGSO(stack.GSOTCPv4, 1440)
			if s.v6 {
				gso = hostGSO(stack.GSOTCPv6, 1440)
			}
		} else {
			l4Len, proto = udpHdrLen, header.UDPProtocolNumber
		}
		h, v := txHeader(txPacket{gso: gso, l3Len: l4Off, l4Len: l4Len, l4Proto: proto, payloadLen: s.payload})
		if v != txOK {
			t.Fatalf("%+v: verdict %v", s, v)
		}
		m, rv := inspectInbound(vhdr(h), bytes.Clone(pkt))
		if rv != rxOK || !m.csumOK {
			t.Fatalf("%+v: inbound verdict %v meta %+v", s, rv, m)
		}
		if !completeChecksum(pkt, int(h.csumStart), int(h.csumOffset), len(pkt)) {
			t.Fatalf("%+v: completion refused %v", s, h)
		}
		if !transportChecksumOK(pkt, s.v6, s.proto, l4Off) {
			t.Errorf("%+v: completed checksum invalid", s)
		}
	}
}

// FuzzTxHeader: any GSO options and lengths give a consistent header or a drop.
func FuzzTxHeader(f *testing.F) {
	for _, c := range txCases() {
		f.Add(uint8(c.in.gso.Type), c.in.gso.NeedsCsum, c.in.gso.MSS, c.in.l3Len, c.in.l4Len, uint8(c.in.l4Proto), c.in.payloadLen)
	}
	f.Fuzz(func(t *testing.T, typ uint8, needsCsum bool, mss uint16, l3, l4 int, proto uint8, payload int) {
		p := txPacket{gso: stack.GSO{Type: stack.GSOType(typ % 5), NeedsCsum: needsCsum, MSS: mss},
			l3Len: l3, l4Len: l4, l4Proto: tcpip.TransportProtocolNumber(proto), payloadLen: payload}
		h, v := txHeader(p)
		if v != txOK {
			if h != (virtioHdr{}) {
				t.Fatalf("dropped with a header %v", h)
			}
			return
		}
		if needsCsum != (h.flags == virtioFlagNeedsCsum) {
			t.Fatalf("flags %#x for NeedsCsum=%v", h.flags, needsCsum)
		}
		if needsCsum && (int(h.csumStart) != l3 || (h.csumOffset != tcpCsumOffset && h.csumOffset != udpCsumOffset)) {
			t.Fatalf("bad checksum location %v", h)
		}
		if h.gsoType != virtioGSONone {
			if !needsCsum || h.gsoSize != mss || mss == 0 || payload <= int(mss) || proto != ipProtoTCP {
				t.Fatalf("bad GSO header %v for %+v", h, p)
			}
		}
		var b [virtioNetHdrLen]byte
		h.encode(b[:])
		if back, err := decodeVirtioHdr(b[:]); err != nil || back != h {
			t.Fatalf("codec round trip %v -> %v, %v", h, back, err)
		}
	})
}

func TestVirtioHdrCodec(t *testing.T) {
	h := virtioHdr{flags: 1, gsoType: 4, hdrLen: 0x1234, gsoSize: 1448, csumStart: 40, csumOffset: 16}
	b := make([]byte, virtioNetHdrLen+3)
	if n := h.encode(b); n != virtioNetHdrLen {
		t.Fatalf("encode wrote %d", n)
	}
	if got, err := decodeVirtioHdr(b); err != nil || got != h {
		t.Fatalf("decode = %v, %v", got, err)
	}
	if n := h.encode(b[:9]); n != 0 {
		t.Errorf("encode into 9 bytes wrote %d", n)
	}
	if _, err := decodeVirtioHdr(b[:9]); err == nil {
		t.Error("decode of 9 bytes succeeded")
	}
}
