package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rxVerdict is the outcome of inspecting one inbound read: deliver, or drop and count
// why. Drops are not errors: a bad packet from the kernel is counted, never returned.
type rxVerdict uint8

const (
	rxOK                 rxVerdict = iota
	rxDropShort                    // read shorter than the virtio header
	rxDropMalformed                // IP or TCP header lengths inconsistent with the read
	rxDropUnknownProto             // neither IPv4 nor IPv6
	rxDropBadVirtio                // virtio header contradicts the packet (flags, offsets, GSO type vs IP version)
	rxDropUnsupportedGSO           // UDP fragmentation/segmentation offload: never enabled by us
	rxDropChecksum                 // the kernel made no checksum promise and the checksum is wrong
	numRxVerdicts
)

var rxVerdictNames = [numRxVerdicts]string{
	rxOK:                 "ok",
	rxDropShort:          "short read",
	rxDropMalformed:      "malformed IP/TCP header",
	rxDropUnknownProto:   "unknown network protocol",
	rxDropBadVirtio:      "inconsistent virtio header",
	rxDropUnsupportedGSO: "unsupported GSO type",
	rxDropChecksum:       "bad checksum",
}

// String implements fmt.Stringer.
func (v rxVerdict) String() string {
	if v < numRxVerdicts {
		return rxVerdictNames[v]
	}
	return "unknown verdict"
}

// rxMeta is what inspectInbound learned about a packet it accepted.
type rxMeta struct {
	proto tcpip.NetworkProtocolNumber
	// length is the IP-declared packet length; bytes past it are padding to cut.
	length int
	// gso marks a TSO super-packet (gso_type TCPV4/TCPV6). It is delivered to gVisor
	// unsplit: gVisor's TCP accepts segments longer than the MSS, and splitting would
	// cost a copy and a checksum per segment.
	gso bool
	// csumOK means the transport checksum is known good: the kernel vouched for it
	// (NEEDS_CSUM: the data never left memory; DATA_VALID: it verified it) or we
	// verified or completed it. It becomes PacketBuffer.RXChecksumValidated, which
	// gVisor's GRO honours (the NIC later sets the flag from the capability anyway).
	csumOK bool
	// completed means a CHECKSUM_PARTIAL checksum was finished in place.
	completed bool
	// unverified means the kernel made no promise and no check was possible
	// (a fragment): gVisor will not check it either, see inspectInbound.
	unverified bool
}

// inspectInbound validates one packet read from the TUN, vh being its virtio header,
// and decides how it is delivered. It may write pkt: it completes partial checksums
// gVisor would otherwise verify and reject.
//
// What gVisor requires (pinned gVisor, stack/nic.go DeliverNetworkPacket): with
// CapabilityRXChecksumOffload the NIC sets RXChecksumValidated on every packet, and
// then TCP and UDP (transport/tcp/segment.go, transport/udp) skip their checksum and
// IPv4 skips its header checksum (network/ipv4/ipv4.go). ICMPv4 and ICMPv6 verify
// theirs regardless (network/ipv4/icmp.go, network/ipv6/icmp.go). Hence:
//   - NEEDS_CSUM TCP/UDP, including TSO super-packets: left partial; nothing reads
//     the field. Completing a 64 KiB super-packet would cost a full pass over it.
//   - NEEDS_CSUM of anything else (ICMP): completed here, or gVisor drops it.
//   - DATA_VALID: the kernel verified it; passed on.
//   - no flag (e.g. forwarded from a NIC that left CHECKSUM_COMPLETE): the kernel
//     promises nothing and gVisor will check nothing, so we verify the IPv4 header
//     and TCP/UDP checksums and drop failures. Fragments cannot be checked per
//     fragment and gVisor's reassembly keeps the flag, so they pass unverified
//     (counted).
func inspectInbound(vh, pkt []byte) (rxMeta, rxVerdict) {
	hdr, err := decodeVirtioHdr(vh)
	if err != nil {
		return rxMeta{}, rxDropShort
	}
	info, v := parseL3(pkt)
	if v != rxOK {
		return rxMeta{}, v
	}
	m := rxMeta{proto: header.IPv4ProtocolNumber, length: info.totalLen}
	if info.v6 {
		m.proto = header.IPv6ProtocolNumber
	}
	if hdr.flags&^(virtioFlagNeedsCsum|virtioFlagDataValid) != 0 {
		return rxMeta{}, rxDropBadVirtio
	}

	switch hdr.gsoType &^ virtioGSOECN {
	case virtioGSONone:
		if hdr.gsoType&virtioGSOECN != 0 {
			return rxMeta{}, rxDropBadVirtio // ECN is a modifier of a GSO type
		}
		return inspectPlain(hdr, pkt, info, m)
	case virtioGSOTCPv4, virtioGSOTCPv6:
		if (hdr.gsoType&^virtioGSOECN == virtioGSOTCPv6) != info.v6 {
			return rxMeta{}, rxDropBadVirtio
		}
		// Linux hands out GSO packets only as CHECKSUM_PARTIAL with csum_start at the
		// TCP header (include/linux/virtio_net.h virtio_net_hdr_from_skb). hdr_len is
		// not checked: the kernel sets it to the whole first packet on forwarding.
		if hdr.flags&virtioFlagNeedsCsum == 0 || hdr.gsoSize == 0 ||
			info.l4Off < 0 || info.l4Proto != ipProtoTCP ||
			int(hdr.csumStart) != info.l4Off || hdr.csumOffset != tcpCsumOffset {
			return rxMeta{}, rxDropBadVirtio
		}
		if !tcpHeaderFits(pkt, info) {
			return rxMeta{}, rxDropMalformed
		}
		m.gso, m.csumOK = true, true
		return m, rxOK
	case virtioGSOUDP, virtioGSOUDPL4:
		return rxMeta{}, rxDropUnsupportedGSO
	default:
		return rxMeta{}, rxDropBadVirtio
	}
}

// inspectPlain handles a packet without GSO; see inspectInbound for the rules.
func inspectPlain(hdr virtioHdr, pkt []byte, info l3Info, m rxMeta) (rxMeta, rxVerdict) {
	switch {
	case hdr.flags&virtioFlagNeedsCsum != 0:
		start, off := int(hdr.csumStart), int(hdr.csumOffset)
		// Every Internet checksum field sits at an even offset in its header; an odd
		// one could not be completed into a sum that verifies.
		if start < info.hdrLen || start+off+2 > info.totalLen || off%2 != 0 {
			return rxMeta{}, rxDropBadVirtio
		}
		m.csumOK = true
		if start == info.l4Off && ((info.l4Proto == ipProtoTCP && off == tcpCsumOffset && tcpHeaderFits(pkt, info)) ||
			(info.l4Proto == ipProtoUDP && off == udpCsumOffset && info.totalLen-info.l4Off >= udpHdrLen)) {
			return m, rxOK
		}
		// Not a transport gVisor skips: finish the sum (bounds checked above).
		m.completed = completeChecksum(pkt, start, off, info.totalLen)
		return m, rxOK
	case hdr.flags&virtioFlagDataValid != 0:
		m.csumOK = true
		return m, rxOK
	}

	if !info.v6 && !ipv4HeaderChecksumValid(pkt, info.hdrLen) {
		return rxMeta{}, rxDropChecksum
	}
	switch {
	case info.fragment:
		m.unverified = true
	case info.l4Off < 0:
		// AH or an unparseable extension chain: gVisor parses it and decides.
	case info.l4Proto == ipProtoTCP:
		if !tcpHeaderFits(pkt, info) {
			return rxMeta{}, rxDropMalformed
		}
		if !l4ChecksumValid(pkt, info) {
			return rxMeta{}, rxDropChecksum
		}
		m.csumOK = true
	case info.l4Proto == ipProtoUDP:
		if info.totalLen-info.l4Off < udpHdrLen {
			return rxMeta{}, rxDropMalformed
		}
		if !l4ChecksumValid(pkt, info) {
			return rxMeta{}, rxDropChecksum
		}
		m.csumOK = true
	}
	// Anything else (ICMP) is verified by gVisor itself.
	return m, rxOK
}

// tcpHeaderFits reports whether a whole TCP header (RFC 9293 §3.1, data offset
// 5..15 words) lies inside the IP packet at info.l4Off.
func tcpHeaderFits(pkt []byte, info l3Info) bool {
	if info.l4Off < 0 || info.l4Off+tcpMinHdrLen > info.totalLen {
		return false
	}
	dataOff := int(pkt[info.l4Off+12]>>4) * 4
	return dataOff >= tcpMinHdrLen && info.l4Off+dataOff <= info.totalLen
}
