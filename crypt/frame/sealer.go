package frame

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Sealer encrypts the frames of one direction (RFC 8548 §3.6, §4.2). It is
// not safe for concurrent use (the connection locks).
//
// Retransmission (TC-37): a Sealer never needs a key older than its current
// generation. Frame bytes are handed to TCP once; a retransmitted segment is
// the TCP stack resending the very bytes it already holds (RFC 8548 §3.6:
// "a retransmitted TCP segment MUST contain the same payload bytes for the
// same TCP sequence numbers"), so data is never sealed twice and the old
// generation's key is erased as soon as the generation changes (TC-38).
type Sealer struct {
	k keyState // key of generation k.gen; k.gen <= gen

	// gen is L, the local generation (RFC 8548 §3.8). It runs ahead of
	// k.gen only when Rekey is called again before the previous rekey frame
	// went out; Seal then catches up with one empty rekey frame per step.
	gen uint64
	// rekeyBit: the next frame is the first under k.gen, so it carries
	// rekey = 1 (TC-34).
	rekeyBit bool

	offset    uint64 // stream offset of the next frame's control byte
	exhausted bool   // the next offset would be 2^64 (TC-29)
	bytes     uint64 // frame bytes sent under generation gen
	fin       bool   // a FINp frame was sealed (TC-31)
	err       error  // sticky fatal error
}

// NewSealer returns the Sealer of direction d (DirAB on host A, DirBA on
// host B; a resumed session keeps the original role's direction, TC-26),
// starting at generation mk0.Generation() (normally 0). It keeps its own
// copy of mk0; the caller still owns mk0 and should Zero it once both
// directions are built. offset is the stream offset of the first frame's
// control byte: Init1/Init2 bytes count, offset 0 = ISN+1 (see the package
// comment).
func NewSealer(a *schedule.AEAD, mk0 *schedule.MasterKey, d schedule.Direction, offset uint64) (*Sealer, error) {
	s := &Sealer{offset: offset}
	if err := s.k.init(a, mk0, d); err != nil {
		s.k.zero()
		return nil, &Error{Op: "new sealer", Offset: offset, Err: err}
	}
	s.gen = s.k.gen
	return s, nil
}

// DataOffset returns where a frame's data starts, counted from the frame's
// control byte: HeaderLen + flags (+ 2 with an urgent field). A caller that
// already holds the data at dst[len(dst)+DataOffset(urg):] and passes that
// slice to Seal saves Seal's copy.
func DataOffset(urgent bool) int {
	if urgent {
		return HeaderLen + flagsLen + urgentLen
	}
	return HeaderLen + flagsLen
}

// Seal appends one frame carrying data to dst and returns the extended
// slice. len(data) must be at most MaxData (2 less with urgent). fin sets
// FINp: it must be the last frame, and every later Seal fails with
// ErrAfterFIN (TC-31). urgent, if not nil, sets URGp with that 16-bit value.
//
// Decision: the urgent field is big-endian. RFC 8548 §4.2.1 draws it as two
// bytes without naming a byte order (see docs/decisions.md); every other
// integer in the RFC (clen, offset, message lengths) is big-endian, as is
// TCP's own urgent pointer. What the value means (docs/decisions.md, "Urgent data") is the
// connection's business: this package only carries it, authenticated.
//
// The first frame after Rekey carries rekey = 1 under the new generation's
// key (TC-34).
//
// Decision: if Rekey was called more than once since the last frame, Seal
// first appends one empty rekey frame per skipped generation. The receiver
// increments R by exactly one per rekey = 1 frame (RFC 8548 §3.8), so a
// single frame cannot announce two steps; the filler frames keep the peer's
// R equal to our L, which matters when we must catch up ("MUST immediately
// increment its local generation number to match") with a peer that moved
// while our own rekey frame was still unsent.
//
// Seal writes nothing and leaves the Sealer unchanged on ErrTooLong and
// ErrAfterFIN; any other error is fatal and returned by every later call.
// data may alias dst's spare capacity. Seal allocates only if dst lacks
// capacity.
func (s *Sealer) Seal(dst, data []byte, fin bool, urgent *uint16) ([]byte, error) {
	if s.err != nil {
		return dst, s.err
	}
	if s.fin {
		return dst, &Error{Op: "seal", Offset: s.offset, Err: ErrAfterFIN}
	}
	hdr := flagsLen
	if urgent != nil {
		hdr += urgentLen
	}
	if max := MaxCLen - s.k.overhead - hdr; len(data) > max {
		return dst, &Error{Op: "seal", Offset: s.offset, Err: ErrTooLong,
			Reason: fmt.Sprintf("%d bytes, at most %d", len(data), max)}
	}
	n := HeaderLen + hdr + len(data) + s.k.overhead
	// Generations owed an empty rekey frame; bounded by maxPendingRekeys.
	extra := int(s.gen - s.k.gen)
	total := n + extra*(HeaderLen+flagsLen+s.k.overhead)
	if _, _, ok := advanceOffset(s.offset, s.exhausted, total); !ok {
		s.err = &Error{Op: "seal", Offset: s.offset, Err: ErrOffsetExhausted,
			Reason: fmt.Sprintf("%d more bytes would wrap 2^64", total)}
		return dst, s.err
	}
	if extra > 0 && len(data) > 0 {
		data = s.makeRoomForRekeyFrames(dst, data, hdr, total-n)
	}
	dst = slices.Grow(dst, total)
	for s.k.gen < s.gen {
		dst = s.sealFrame(dst, nil, 0, nil)
		if err := s.k.advance(); err != nil {
			s.err = &Error{Op: "rekey", Offset: s.offset, Err: err}
			return dst, s.err
		}
		s.rekeyBit = true
		s.bytes = 0
	}
	var flags byte
	if fin {
		flags |= FlagFIN
	}
	dst = s.sealFrame(dst, data, flags, urgent)
	s.fin = fin
	return dst, nil
}

// sealFrame appends one frame; dst must have the capacity and the offset
// must have been checked.
func (s *Sealer) sealFrame(dst, data []byte, flags byte, urgent *uint16) []byte {
	hdr := flagsLen
	if urgent != nil {
		flags |= FlagURG
		hdr += urgentLen
	}
	plen := hdr + len(data)
	clen := plen + s.k.overhead
	start := len(dst)
	dst = dst[:start+HeaderLen+clen]
	f := dst[start:]
	p := f[HeaderLen : HeaderLen+plen]
	// Data first: it may alias the bytes the header goes into (copy is a
	// memmove). When the caller placed it already (DataOffset) there is
	// nothing to move; the runtime's memmove would still copy it.
	if len(data) > 0 && &p[hdr] != &data[0] {
		copy(p[hdr:], data)
	}
	var control byte // cres bits are sent as zero (TC-40)
	if s.rekeyBit {
		control = ControlRekey
	}
	f[0] = control
	binary.BigEndian.PutUint16(f[1:HeaderLen], uint16(clen))
	p[0] = flags // fres bits are sent as zero (TC-40)
	if urgent != nil {
		binary.BigEndian.PutUint16(p[flagsLen:hdr], *urgent)
	}
	s.k.c.Seal(p[:0], s.k.nonceFor(s.offset), p, s.k.adFor(control, clen))
	s.offset, s.exhausted, _ = advanceOffset(s.offset, s.exhausted, HeaderLen+clen)
	s.bytes += uint64(HeaderLen + clen)
	s.rekeyBit = false
	return dst
}

// makeRoomForRekeyFrames handles data the caller placed in dst's spare
// capacity at DataOffset (the zero-copy path) when empty rekey frames must be
// sealed first: those frames are written where the data lies, so the data
// moves forward by their length (shift) before any of them is written.
func (s *Sealer) makeRoomForRekeyFrames(dst, data []byte, hdr, shift int) []byte {
	at := len(dst) + HeaderLen + hdr
	if cap(dst)-len(dst) < shift+HeaderLen+hdr+len(data)+s.k.overhead || at > cap(dst) ||
		&dst[:cap(dst)][at] != &data[0] {
		// Not placed, or Grow will reallocate dst anyway: Seal copies the
		// data from where it is.
		return data
	}
	moved := dst[:cap(dst)][at+shift : at+shift+len(data)]
	copy(moved, data) // memmove: the ranges overlap
	return moved
}

// Rekey increments the local generation L for the next frame (RFC 8548
// §3.8, TC-33): that frame is sealed under generation L's key with
// rekey = 1 (TC-34). The previous generation's keys are erased right away
// (TC-38) unless its own rekey frame has not been sent yet. The connection
// calls Rekey to initiate a rekey and, when Opener.Generation() exceeds
// Generation(), to catch up with the peer (TC-35); it must also keep at most
// one empty-frame rekey outstanding (TC-36).
//
// Stepping more than 1024 generations ahead of the last frame sent, or past
// the largest generation, is a fatal ErrGenerationExhausted.
func (s *Sealer) Rekey() {
	if s.err != nil {
		return
	}
	// Generations without a frame yet: those past k.gen, plus k.gen itself
	// while its rekey frame is still owed.
	unsent := s.gen - s.k.gen
	if s.rekeyBit {
		unsent++
	}
	if s.gen == ^uint64(0) || unsent >= maxPendingRekeys {
		s.err = &Error{Op: "rekey", Offset: s.offset, Err: ErrGenerationExhausted}
		return
	}
	s.gen++
	s.bytes = 0
	if s.rekeyBit {
		// k.gen still owes its rekey frame; Seal steps on from there.
		return
	}
	if err := s.k.advance(); err != nil {
		s.err = &Error{Op: "rekey", Offset: s.offset, Err: err}
		return
	}
	s.rekeyBit = true
}

// Generation returns L, the generation of the next frame.
func (s *Sealer) Generation() uint64 { return s.gen }

// Offset returns the stream offset of the next frame's control byte. After
// a frame ending exactly at 2^64-1 it is 0 and every Seal fails.
func (s *Sealer) Offset() uint64 { return s.offset }

// Bytes returns the frame bytes sealed under the current generation, for
// the connection's rekey-after-volume policy.
func (s *Sealer) Bytes() uint64 { return s.bytes }

// FINSent reports whether the FINp frame has been sealed.
func (s *Sealer) FINSent() bool { return s.fin }

// Err returns the sticky fatal error, if any.
func (s *Sealer) Err() error { return s.err }

// Zero erases the Sealer's keys; every later Seal fails with ErrZeroed.
func (s *Sealer) Zero() {
	s.k.zero()
	s.err = &Error{Op: "seal", Offset: s.offset, Err: ErrZeroed}
}
