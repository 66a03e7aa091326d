package tcpcrypt

import (
	"errors"
	"fmt"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
)

// Errors a Conn returns; each is distinct from io.EOF, which a Conn returns
// only after an authenticated FINp frame (RFC 8548 §3.7, §8; TC-32, TC-46).
var (
	// ErrAuth reports a frame that failed authentication (or was malformed)
	// (RFC 8548 §3.6). The connection has been aborted (TC-30). It is the
	// same value as frame.ErrAuth, so errors.Is works with either.
	ErrAuth = frame.ErrAuth
	// ErrTruncated reports that the byte stream ended (TCP FIN) without a
	// FINp frame: a truncation, never a clean end of stream (RFC 8548 §3.7,
	// TC-32). The connection has been aborted.
	ErrTruncated = errors.New("tcpcrypt: stream ended without a FINp frame")
	// ErrAborted reports that the underlying stream failed (peer RST or any
	// other transport error). Returned errors wrap both ErrAborted and the
	// transport's own error.
	ErrAborted = errors.New("tcpcrypt: connection aborted")
	// ErrHandshake is matched (errors.Is) by every *HandshakeError.
	ErrHandshake = errors.New("tcpcrypt: handshake failed")
	// ErrWriteClosed is returned by Write after CloseWrite (the FINp frame
	// must be the last frame, TC-31).
	ErrWriteClosed = errors.New("tcpcrypt: write after CloseWrite")
)

// HandshakeError reports why tcpcrypt could not start on a connection after
// ENO had enabled it. RFC 8548 §3.3 requires the connection to be aborted in
// that case; Handshake has already done so when it returns one.
type HandshakeError struct {
	// Reason is a short kebab-case word for counters and logs:
	// "bad-message", "cipher-not-offered", "no-common-aead", "bad-public-key",
	// "bad-ciphertext" (a KEM TEP's Pub_B), "zero-secret",
	// "unsupported-tep", "no-resumption-secret", "io", "canceled",
	// "internal".
	Reason string
	Err    error // the cause
}

func (e *HandshakeError) Error() string {
	if e.Err == nil {
		return "tcpcrypt: handshake: " + e.Reason
	}
	return fmt.Sprintf("tcpcrypt: handshake: %s: %v", e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *HandshakeError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrHandshake) true.
func (e *HandshakeError) Is(target error) bool { return target == ErrHandshake }

func handshakeErr(reason string, format string, args ...any) *HandshakeError {
	return &HandshakeError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// MessageError reports a malformed Init1 or Init2 (RFC 8548 §4.1).
type MessageError struct {
	Message string // "init1" or "init2"
	// Reason is a short kebab-case word: "short", "bad-magic", "bad-length",
	// "too-long", "no-ciphers", "bad-public-key", "bad-ciphertext",
	// "nciphers", "bad-nonce".
	Reason string
	Detail string
	Err    error // cause, e.g. a *kex.KeyError; may be nil
}

func (e *MessageError) Error() string {
	s := "tcpcrypt: " + e.Message + ": " + e.Reason
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *MessageError) Unwrap() error { return e.Err }

func msgErr(msg, reason string, format string, args ...any) *MessageError {
	return &MessageError{Message: msg, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}
