package main

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack"
)

// Connection outcomes, the "outcome" label of tcpcryptd_connections_total.
// Every connection the forwarder or a service took is counted once, when
// it ends.
const (
	outcomeEncrypted = "encrypted" // ran tcpcrypt
	outcomePlain     = "plain"     // fell back to plain TCP (reason: the ENO fallback reason)
	outcomeRefused   = "refused"   // reset because policy required encryption (reason: the fallback reason)
	outcomeFailed    = "failed"    // never relayed (reason: dial, handshake or backend)
)

type outcomeKey struct{ direction, outcome, reason string }
type abortKey struct{ direction, cause string }

// connObserver logs one line per connection outcome and keeps the
// per-outcome counters; it is the stack's Options.OnConnDone.
type connObserver struct {
	log *slog.Logger

	mu       sync.Mutex
	outcomes map[outcomeKey]uint64 // guarded by mu
	aborts   map[abortKey]uint64   // guarded by mu

	authFailures       atomic.Uint64
	bytesToPeerEnded   atomic.Uint64 // bytes of connections that have left the table
	bytesFromPeerEnded atomic.Uint64
}

func newConnObserver(log *slog.Logger) *connObserver {
	return &connObserver{log: log, outcomes: make(map[outcomeKey]uint64), aborts: make(map[abortKey]uint64)}
}

// classify says how a connection ended: its outcome and reason, and for a
// relay that ended with an error, the cause ("" otherwise).
func classify(ci stack.ConnInfo, err error) (outcome, reason, abortCause string) {
	var refused *stack.RefusedError
	var relay *stack.RelayError
	switch {
	case errors.As(err, &refused):
		return outcomeRefused, refused.Reason.String(), ""
	case err != nil && !errors.As(err, &relay):
		// Never relayed: the outer dial or the backend dial failed.
		switch {
		case errors.Is(err, tcpcrypt.ErrHandshake):
			return outcomeFailed, "handshake", ""
		case ci.Direction == stack.Inbound:
			return outcomeFailed, "backend", ""
		}
		return outcomeFailed, "dial", ""
	}
	outcome = outcomeEncrypted
	if !ci.Encrypted {
		outcome, reason = outcomePlain, ci.Reason.String()
	}
	if relay != nil {
		switch {
		case errors.Is(err, tcpcrypt.ErrAuth):
			abortCause = "auth"
		case errors.Is(err, tcpcrypt.ErrTruncated):
			abortCause = "truncated"
		case stack.IsPeerTimeout(err):
			abortCause = "timeout"
		case errors.Is(err, tcpcrypt.ErrAborted), errors.Is(err, syscall.ECONNRESET):
			// A tcpcrypt leg's reset, or a plain leg's (the stack's
			// errors carry the errno, as the kernel's sockets do).
			abortCause = "reset"
		default:
			abortCause = "error"
		}
	}
	return outcome, reason, abortCause
}

// done implements stack.Options.OnConnDone. It must not block: it takes
// one short lock and writes one log line.
func (o *connObserver) done(ci stack.ConnInfo, err error) {
	outcome, reason, cause := classify(ci, err)
	dir := ci.Direction.String()
	o.mu.Lock()
	o.outcomes[outcomeKey{dir, outcome, reason}]++
	if cause != "" {
		o.aborts[abortKey{dir, cause}]++
	}
	o.mu.Unlock()
	if cause == "auth" {
		o.authFailures.Add(1)
	}
	o.bytesToPeerEnded.Add(ci.BytesInnerToOuter)
	o.bytesFromPeerEnded.Add(ci.BytesOuterToInner)

	c := apiConnection(ci)
	// Name the ends as an operator thinks of them.
	attrs := []any{"dir", dir}
	if ci.Direction == stack.Inbound {
		attrs = append(attrs, "client", c.Outer.Remote.String(), "service", c.Outer.Local.String())
		if c.App.Local.IsValid() {
			attrs = append(attrs, "backend", c.App.Local.String())
		}
	} else {
		attrs = append(attrs, "app", c.App.Local.String(), "dst", c.Outer.Remote.String())
	}
	attrs = append(attrs, "outcome", outcome)
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	if ci.Encrypted {
		attrs = append(attrs, "tep", c.TEP, "aead", c.AEAD, "resumed", ci.Resumed, "session", abbrevSession(ci.SessionID))
	}
	attrs = append(attrs, "to_peer", ci.BytesInnerToOuter, "from_peer", ci.BytesOuterToInner,
		"duration", time.Since(ci.Start).Round(time.Millisecond).String())
	if cause != "" {
		attrs = append(attrs, "aborted", cause)
	}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	o.log.Info("connection", attrs...)
}

// abbrevSession shows the start of a session ID, enough to compare by eye
// (a session ID is public: RFC 8548 §3.4 has applications compare it).
func abbrevSession(id []byte) string {
	if len(id) > 8 {
		return hex.EncodeToString(id[:8]) + "…"
	}
	return hex.EncodeToString(id)
}

// snapshot copies the counters for a metrics scrape.
func (o *connObserver) snapshot() (map[outcomeKey]uint64, map[abortKey]uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[outcomeKey]uint64, len(o.outcomes))
	for k, v := range o.outcomes {
		out[k] = v
	}
	ab := make(map[abortKey]uint64, len(o.aborts))
	for k, v := range o.aborts {
		ab[k] = v
	}
	return out, ab
}
