package frame

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error returned by this package is an *Error
// wrapping one of them, so callers branch with errors.Is.
var (
	// ErrAuth reports an AEAD authentication failure (RFC 8548 §3.6 FAIL).
	// The connection must abort with an error distinct from EOF (TC-30).
	ErrAuth = errors.New("tcpcrypt: frame authentication failed")
	// ErrMalformed reports a frame that no honest peer can send: clen too
	// short to hold flags and tag, or URGp without room for the urgent
	// field. Like ErrAuth it is fatal for the direction.
	ErrMalformed = errors.New("tcpcrypt: malformed frame")
	// ErrFrameLength reports a buffer that is not exactly one whole frame
	// (shorter than HeaderLen or not HeaderLen+clen bytes). It is a caller
	// error and leaves the Opener unchanged.
	ErrFrameLength = errors.New("tcpcrypt: buffer is not exactly one frame")
	// ErrTooLong reports data that does not fit one frame (clen < 2^16,
	// TC-28). It leaves the Sealer unchanged.
	ErrTooLong = errors.New("tcpcrypt: frame data too long")
	// ErrAfterFIN reports a frame after the FINp frame: the Sealer refuses
	// to seal one (TC-31), the Opener refuses to accept one.
	ErrAfterFIN = errors.New("tcpcrypt: frame after FINp frame")
	// ErrOffsetExhausted reports a frame that would make the stream offset
	// wrap 2^64, reusing a frame ID (TC-29). Fatal for the direction.
	ErrOffsetExhausted = errors.New("tcpcrypt: stream offset exhausted")
	// ErrGenerationExhausted reports a rekey beyond the largest generation
	// or too many rekeys without a frame between. Fatal for the direction.
	ErrGenerationExhausted = errors.New("tcpcrypt: key generation exhausted")
	// ErrZeroed reports use of a Sealer or Opener after Zero.
	ErrZeroed = errors.New("tcpcrypt: frame keys erased")
)

// Error is the error type of this package. It names the operation, the
// stream offset of the frame concerned and, where useful, why.
type Error struct {
	Op     string // "seal", "open", "rekey", "new"
	Offset uint64 // stream offset of the frame (or of the next frame)
	Reason string // optional detail, never secret material
	Err    error  // one of the sentinels above, or a wrapped cause
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("frame: %s at offset %d: %v: %s", e.Op, e.Offset, e.Err, e.Reason)
	}
	return fmt.Sprintf("frame: %s at offset %d: %v", e.Op, e.Offset, e.Err)
}

// Unwrap returns the sentinel or cause.
func (e *Error) Unwrap() error { return e.Err }
