// Package frame implements tcpcrypt encryption frames (RFC 8548 §3.6-§3.8,
// §4.2): the AEAD framing of one direction of a tcpcrypt connection.
//
// A Sealer turns application data into frames for the direction we send; an
// Opener checks and decrypts the frames of the direction we receive. Each
// holds its own copy of mk[0] and walks it forward on rekey (RFC 8548 §3.8),
// erasing every master and traffic key it no longer needs (TC-38).
//
// On the wire (RFC 8548 §4.2):
//
//	control(1) | clen(2, big-endian) | ciphertext(clen)
//
// The ciphertext is AEAD(K, N, P, A) with P = flags(1) [| urgent(2)] | data,
// A = control | clen, and N = frame_ID XOR NR, where frame_ID is
// ae_nonce_len-8 zero bytes followed by the 8-byte big-endian stream offset
// of the frame's control byte (RFC 8548 §4.2.3).
//
// Decision: the offset counts every byte of the underlying TCP data stream,
// including Init1/Init2 (offset 0 = ISN+1). RFC 8548 §3.6 defines the offset
// as "the zero-indexed byte offset of the beginning of the current encryption
// frame in the underlying TCP datastream. (That is, the offset in the framing
// stream, not the plaintext application stream.)", and §3.3 places Init1 and
// Init2 "at the start of the data streams of host A and host B"; the frame
// ID layout of §4.2.3 carries that offset unchanged. So the first frame A
// sends after a 77-byte Init1 has offset 77, and the first frame of a resumed
// session (no Init messages) has offset 0. The caller passes that starting
// offset to NewSealer/NewOpener. (docs/decisions.md, "Frame offset base";
// the draft-era scslab code measured from the end of Init, which
// we do not follow.)
//
// Neither type is safe for concurrent use: the connection serialises each
// direction with its own lock.
package frame

import (
	"encoding/binary"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Wire constants of RFC 8548 §4.2.
const (
	// HeaderLen is the length of control plus clen, also the length of the
	// associated data (§4.2.2).
	HeaderLen = 3
	// MaxCLen is the largest ciphertext length: clen < 2^16 (§3.6, TC-28).
	MaxCLen = 65535
	// FlagFIN is the FINp bit of the plaintext flags byte (§4.2.1).
	FlagFIN = 0x01
	// FlagURG is the URGp bit: a 2-byte urgent field follows flags (§4.2.1).
	FlagURG = 0x02
	// ControlRekey is the rekey bit of the control byte (§4.2, §3.8).
	ControlRekey = 0x01
)

const (
	// flagsLen and urgentLen are the plaintext fields before data (§4.2.1).
	flagsLen  = 1
	urgentLen = 2
	// frameIDOffsetLen is the length of the offset field of the frame ID
	// (§4.2.3); ae_nonce_len must be at least this long.
	frameIDOffsetLen = 8
	// maxNonceLen bounds the nonce scratch array. Every RFC 8548 AEAD uses
	// 12 bytes; 32 leaves room for future registrations.
	maxNonceLen = 32
	// maxPendingRekeys bounds how many generations Rekey may step ahead of
	// the last frame sent (see Sealer.Rekey).
	maxPendingRekeys = 1024
)

// MaxData returns the most application data one frame can carry with AEAD a
// and no urgent field: MaxCLen - overhead - 1 (65518 for the 16-byte tags of
// RFC 8548's AEADs). A frame with URGp carries 2 bytes less. It returns 0
// for a nil AEAD.
func MaxData(a *schedule.AEAD) int {
	if a == nil || a.Overhead < 0 || a.Overhead > MaxCLen-flagsLen {
		return 0
	}
	return MaxCLen - a.Overhead - flagsLen
}

// FrameLen reports the whole length (header included) of the frame starting
// at b, once at least HeaderLen bytes of it are there; ok is false before.
// It does not judge whether clen is large enough for the AEAD: Open does.
func FrameLen(b []byte) (n int, ok bool) {
	if len(b) < HeaderLen {
		return 0, false
	}
	return HeaderLen + int(binary.BigEndian.Uint16(b[1:3])), true
}

// advanceOffset returns the stream offset after a frame of n bytes starting
// at off, and whether the stream is then exhausted (the next offset would be
// 2^64). ok is false if the frame itself does not fit below 2^64.
//
// Decision (TC-29): the stream offset never wraps. RFC 8548 §3.6 says a host
// "MUST NOT transmit more than 2^64 bytes in the underlying TCP datastream
// (which would cause the offset field to wrap) before rekeying"; wrapping
// after a rekey would be allowed, but 2^64 bytes is out of reach of any
// connection and refusing outright keeps nonce uniqueness obvious: a frame
// that would reach past offset 2^64-1 is a fatal error on both sides.
func advanceOffset(off uint64, exhausted bool, n int) (next uint64, nowExhausted, ok bool) {
	if exhausted || n <= 0 {
		return off, exhausted, n == 0 && !exhausted
	}
	last := uint64(n - 1)
	if last > ^uint64(0)-off {
		return off, false, false
	}
	next = off + uint64(n) // wraps to 0 exactly when the last byte is 2^64-1
	return next, next == 0, true
}
