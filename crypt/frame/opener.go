package frame

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Opener checks and decrypts the frames of one direction, in stream order
// (RFC 8548 §3.6, §4.2). It is not safe for concurrent use.
type Opener struct {
	k keyState // generation k.gen is R, the remote generation (§3.8)

	offset    uint64 // stream offset of the next frame's control byte
	exhausted bool   // the next offset would be 2^64
	fin       bool   // a FINp frame was opened
	err       error  // sticky fatal error
}

// NewOpener returns the Opener of direction d, the direction the peer
// sends (DirBA on host A, DirAB on host B), starting at generation
// mk0.Generation(). It keeps its own copy of mk0. offset is the stream
// offset of the first frame's control byte, counted as for NewSealer.
func NewOpener(a *schedule.AEAD, mk0 *schedule.MasterKey, d schedule.Direction, offset uint64) (*Opener, error) {
	o := &Opener{offset: offset}
	if err := o.k.init(a, mk0, d); err != nil {
		o.k.zero()
		return nil, &Error{Op: "new opener", Offset: offset, Err: err}
	}
	return o, nil
}

// Open checks and decrypts exactly one whole frame (header included; see
// FrameLen) and returns its plaintext data without flags and urgent field,
// its flags (FlagFIN, FlagURG; reserved fres bits are ignored, TC-40), the
// urgent value if URGp, and whether it carried rekey = 1, in which case R
// was incremented and the frame decrypted with generation R's key (TC-35).
// The reserved cres bits are not interpreted (TC-40), though as part of the
// associated data they are authenticated like the whole header.
//
// With dst == nil, or when dst's spare capacity overlaps frame, Open
// decrypts in place and data aliases frame. Otherwise the plaintext is
// appended to dst (growing it if needed) and data aliases that storage;
// dst's own bytes are left as they were.
//
// Errors: ErrFrameLength (frame is not exactly one frame) leaves the Opener
// unchanged. Every other error is fatal and sticky: ErrAuth on
// authentication failure (TC-30), ErrMalformed, ErrAfterFIN,
// ErrOffsetExhausted, ErrZeroed. No plaintext of a failed frame is returned
// or left in dst's spare capacity.
func (o *Opener) Open(dst, frame []byte) (data []byte, flags byte, urgent uint16, rekeyed bool, err error) {
	if o.err != nil {
		return nil, 0, 0, false, o.err
	}
	if o.fin {
		return nil, 0, 0, false, o.fail(ErrAfterFIN, "")
	}
	n, ok := FrameLen(frame)
	if !ok || n != len(frame) {
		return nil, 0, 0, false, &Error{Op: "open", Offset: o.offset, Err: ErrFrameLength,
			Reason: fmt.Sprintf("%d bytes, header says %d", len(frame), n)}
	}
	clen := n - HeaderLen
	if clen < o.k.overhead+flagsLen {
		return nil, 0, 0, false, o.fail(ErrMalformed,
			fmt.Sprintf("clen %d below tag+flags %d", clen, o.k.overhead+flagsLen))
	}
	next, exhausted, ok := advanceOffset(o.offset, o.exhausted, n)
	if !ok {
		return nil, 0, 0, false, o.fail(ErrOffsetExhausted, "frame would wrap 2^64")
	}
	control := frame[0]
	if control&ControlRekey != 0 {
		// RFC 8548 §3.8: "When a host receives a frame with rekey = 1, it
		// increments its record of the remote generation number"; the frame
		// itself is the first of the new generation. The old key is erased:
		// frames arrive in stream order, none of the old generation follows.
		if err := o.k.advance(); err != nil {
			return nil, 0, 0, false, o.fail(err, "rekey")
		}
		rekeyed = true
	}
	ct := frame[HeaderLen:]
	plen := clen - o.k.overhead
	nonce := o.k.nonceFor(o.offset)
	ad := o.k.adFor(control, clen)
	var pt []byte
	if dst == nil || anyOverlap(spare(dst, plen), ct) {
		pt, err = o.k.c.Open(ct[:0], nonce, ct, ad)
		if err != nil {
			clear(ct[:plen]) // whatever the AEAD wrote is not to be trusted
		}
	} else {
		pt, err = o.k.c.Open(dst, nonce, ct, ad)
		if err != nil {
			clear(spare(dst, plen))
		} else {
			pt = pt[len(dst):]
		}
	}
	if err != nil {
		return nil, 0, 0, rekeyed, o.fail(ErrAuth, "")
	}
	flags = pt[0] & (FlagFIN | FlagURG)
	hdr := flagsLen
	if flags&FlagURG != 0 {
		if len(pt) < flagsLen+urgentLen {
			clear(pt)
			return nil, 0, 0, rekeyed, o.fail(ErrMalformed, "URGp without urgent field")
		}
		urgent = binary.BigEndian.Uint16(pt[flagsLen:])
		hdr += urgentLen
	}
	o.offset, o.exhausted = next, exhausted
	o.fin = flags&FlagFIN != 0
	return pt[hdr:], flags, urgent, rekeyed, nil
}

// fail records a fatal error for the frame at the current offset.
func (o *Opener) fail(err error, reason string) error {
	o.err = &Error{Op: "open", Offset: o.offset, Err: err, Reason: reason}
	return o.err
}

// spare returns dst's spare capacity up to n bytes: the storage an AEAD
// appending n bytes to dst writes into, or nil if it would reallocate.
func spare(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		return nil
	}
	return dst[len(dst) : len(dst)+n]
}

// anyOverlap reports whether x and y share any byte of memory. The AEADs
// panic on inexact overlap of output and input, so Open checks first.
func anyOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	x0, x1 := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&x[len(x)-1]))
	y0, y1 := uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&y[len(y)-1]))
	return x0 <= y1 && y0 <= x1
}

// Generation returns R, the highest generation received (RFC 8548 §3.8).
// After an Open with rekeyed == true the connection compares it with
// Sealer.Generation() and, if R > L, calls Sealer.Rekey and sends a frame
// at once unless it has sent FIN (TC-35).
func (o *Opener) Generation() uint64 { return o.k.gen }

// Offset returns the stream offset of the next frame expected.
func (o *Opener) Offset() uint64 { return o.offset }

// FINReceived reports whether a frame with FINp has been opened: the only
// authenticated end of stream (TC-32).
func (o *Opener) FINReceived() bool { return o.fin }

// Err returns the sticky fatal error, if any.
func (o *Opener) Err() error { return o.err }

// Zero erases the Opener's keys; every later Open fails with ErrZeroed.
func (o *Opener) Zero() {
	o.k.zero()
	o.err = &Error{Op: "open", Offset: o.offset, Err: ErrZeroed}
}
