// Package control is tcpcryptd's control API: HTTP/1.1 over a unix socket
// (and, for metrics only, an optional TCP listener). The daemon serves it
// with NewHandler over a Source (its connection table); the command line
// and applications use Client.
//
// Endpoints (all GET; JSON unless said otherwise):
//
//	/v1/health                            Health
//	/v1/connections                       ConnectionList
//	/v1/sessid?local=ADDR:PORT&remote=ADDR:PORT
//	                                      SessionIDResponse, or an Error with
//	                                      code "not-found" (404) or
//	                                      "not-encrypted" (409)
//	/metrics                              Prometheus text format
//
// Session-ID lookups take a connection's plain leg as an application sees
// its own socket: on a client host the application's local and remote
// address (remote = the server it dialled); on a server the backend's
// local address (the service backend) and remote address (tcpcryptd's side
// of the backend connection). The session ID is the one of RFC 8547 §5.1
// and RFC 8548 §3.4: both ends of an encrypted connection see the same one.
//
// This package does not import the stack, so applications can use Client
// without pulling in the daemon.
package control

import (
	"net/netip"
	"time"
)

// API paths.
const (
	PathHealth      = "/v1/health"
	PathConnections = "/v1/connections"
	PathSessionID   = "/v1/sessid"
	PathMetrics     = "/metrics"
	// PathPprof is the prefix of Go's runtime profiles (net/http/pprof):
	// CPU, heap, goroutines. Served only on the control socket, which only
	// its owner (root) can open, because profiles can show memory contents.
	PathPprof = "/debug/pprof/"
)

// Tuple is a TCP 4-tuple.
type Tuple struct {
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
}

// Reverse returns the tuple as the other end sees it.
func (t Tuple) Reverse() Tuple { return Tuple{Local: t.Remote, Remote: t.Local} }

// Directions of a Connection.
const (
	Outbound = "outbound" // a local application's connection, upgraded by the forwarder
	Inbound  = "inbound"  // a remote client's connection to a service, relayed to its backend
)

// Connection is one connection the daemon relays.
type Connection struct {
	ID        uint64 `json:"id"`
	Direction string `json:"direction"` // Outbound or Inbound
	State     string `json:"state"`     // connecting, relaying, closing

	// App is the plain leg as the application sees its own socket: the
	// local application's socket (outbound) or the backend's (inbound).
	// These are the addresses to give to /v1/sessid.
	App Tuple `json:"app"`
	// Inner is the plain leg from the daemon's side (App reversed).
	Inner Tuple `json:"inner"`
	// Outer is the leg that negotiates TCP-ENO, from the daemon's side:
	// Local is the stack's egress address (outbound) or the service address
	// (inbound), Remote the server (outbound) or the client (inbound).
	// Local is zero while an outbound connection is being dialled.
	Outer Tuple `json:"outer"`

	Start time.Time `json:"start"`

	Encrypted bool   `json:"encrypted"`
	TEP       string `json:"tep,omitempty"`        // e.g. "x25519"
	AEAD      string `json:"aead,omitempty"`       // e.g. "aes128gcm"
	Resumed   bool   `json:"resumed,omitempty"`    // RFC 8548 §3.5 session resumption
	SessionID string `json:"session_id,omitempty"` // lowercase hex
	// Fallback says why a plain connection is not encrypted (a TCP-ENO
	// fallback reason such as "no-eno"); empty when encrypted, and while
	// the outer leg is being set up.
	Fallback string `json:"fallback,omitempty"`

	// Bytes relayed towards the remote peer (inner to outer) and from it.
	BytesToPeer   uint64 `json:"bytes_to_peer"`
	BytesFromPeer uint64 `json:"bytes_from_peer"`
}

// ConnectionList is the body of /v1/connections.
type ConnectionList struct {
	Connections []Connection `json:"connections"`
}

// SessionIDResponse is the body of a successful /v1/sessid.
type SessionIDResponse struct {
	SessionID  string     `json:"session_id"` // lowercase hex
	Connection Connection `json:"connection"`
}

// Health is the body of /v1/health.
type Health struct {
	Status      string    `json:"status"` // "ok"
	Version     string    `json:"version"`
	PID         int       `json:"pid"`
	Device      string    `json:"device"`
	Started     time.Time `json:"started"`
	Connections int       `json:"connections"` // relayed now
}

// Error codes in an Error body.
const (
	CodeNotFound         = "not-found"
	CodeNotEncrypted     = "not-encrypted"
	CodeBadRequest       = "bad-request"
	CodeMethodNotAllowed = "method-not-allowed"
	CodeUnavailable      = "unavailable"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Reason string `json:"reason,omitempty"` // fallback reason for not-encrypted
}

// Find returns the connection whose plain leg has the 4-tuple (local,
// remote) as an application sees it (Connection.App), or, failing that,
// whose inner or outer leg has it in either orientation. IPv4-mapped IPv6
// addresses match IPv4 ones.
func Find(conns []Connection, local, remote netip.AddrPort) (Connection, bool) {
	q := Tuple{Local: unmap(local), Remote: unmap(remote)}
	for _, c := range conns {
		if c.App == q {
			return c, true
		}
	}
	for _, c := range conns {
		for _, t := range []Tuple{c.Inner, c.Outer} {
			if t == q || t.Reverse() == q {
				return c, true
			}
		}
	}
	return Connection{}, false
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
