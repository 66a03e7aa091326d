package link

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// virtioNetHdrLen is the size of struct virtio_net_hdr (include/uapi/linux/virtio_net.h),
// the prefix a TUN opened with IFF_VNET_HDR puts before every packet. The kernel's default
// TUNSETVNETHDRSZ is exactly this size; we never change it.
const virtioNetHdrLen = 10

// Flag and GSO-type values of virtio_net_hdr, named after the kernel's.
const (
	virtioFlagNeedsCsum = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM // CHECKSUM_PARTIAL: csum_start/offset valid
	virtioFlagDataValid = unix.VIRTIO_NET_HDR_F_DATA_VALID // CHECKSUM_UNNECESSARY: kernel verified it

	virtioGSONone  = unix.VIRTIO_NET_HDR_GSO_NONE
	virtioGSOTCPv4 = unix.VIRTIO_NET_HDR_GSO_TCPV4
	virtioGSOUDP   = unix.VIRTIO_NET_HDR_GSO_UDP
	virtioGSOTCPv6 = unix.VIRTIO_NET_HDR_GSO_TCPV6
	virtioGSOUDPL4 = unix.VIRTIO_NET_HDR_GSO_UDP_L4
	virtioGSOECN   = unix.VIRTIO_NET_HDR_GSO_ECN // modifier bit, only with TUN_F_TSO_ECN
)

// virtioHdr is struct virtio_net_hdr. Legacy virtio (which TUN speaks unless
// TUNSETVNETLE/BE is used, and we do not) is in host byte order, hence NativeEndian.
type virtioHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // length of headers to copy into the skb's linear part (a hint)
	gsoSize    uint16 // bytes of payload per segment when gsoType != NONE
	csumStart  uint16 // offset from the start of the packet where checksumming starts
	csumOffset uint16 // offset after csumStart where the checksum is stored
}

// errShortVirtioHdr is returned by decode when fewer than virtioNetHdrLen bytes are given.
var errShortVirtioHdr = fmt.Errorf("virtio_net_hdr: need %d bytes", virtioNetHdrLen)

// decodeVirtioHdr reads a header from the first virtioNetHdrLen bytes of b.
func decodeVirtioHdr(b []byte) (virtioHdr, error) {
	if len(b) < virtioNetHdrLen {
		return virtioHdr{}, errShortVirtioHdr
	}
	return virtioHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:]),
		csumStart:  binary.NativeEndian.Uint16(b[6:]),
		csumOffset: binary.NativeEndian.Uint16(b[8:]),
	}, nil
}

// encode writes h into the first virtioNetHdrLen bytes of b and returns the
// length written, or 0 if b is too short.
func (h virtioHdr) encode(b []byte) int {
	if len(b) < virtioNetHdrLen {
		return 0
	}
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
	return virtioNetHdrLen
}

// String renders h for test failures and debug logs.
func (h virtioHdr) String() string {
	return fmt.Sprintf("virtio{flags=%#x gso=%#x hdrLen=%d gsoSize=%d csumStart=%d csumOffset=%d}",
		h.flags, h.gsoType, h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset)
}
