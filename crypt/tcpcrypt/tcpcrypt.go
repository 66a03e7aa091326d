// Package tcpcrypt implements the tcpcrypt TEP (RFC 8548) on top of TCP-ENO
// (RFC 8547, package eno): the Init1/Init2 key exchange, session
// resumption with its secret cache, the key log, and Conn, a net.Conn that
// carries encryption frames (package frame) over any TCP byte stream.
//
// One connection goes through three stages:
//
//  1. SYN exchange. Config.NewSession makes a Session per connection. The
//     active opener puts Session.Offer into its ENO option; both sides'
//     eno.Negotiator consult the Session (eno.TEPPolicy: Answer on host B,
//     Valid on both) to pick the TEP and to accept or refuse resumption.
//  2. Handshake. Once ENO is enabled, Session.Handshake runs over the
//     connection's byte stream in the role ENO assigned: a fresh key
//     exchange (Init1/Init2, RFC 8548 §3.3) or a resumption from a cached
//     secret (§3.5), with no messages at all.
//  3. Data. The returned Conn encrypts writes into frames and decrypts
//     reads, rekeys (§3.8) and ends with an authenticated FINp (§3.7).
//
// If negotiation fails instead, the caller calls Session.Abandon so that
// cached secrets reserved for the connection are released.
//
// Nothing here starts goroutines or touches the network itself: the caller
// owns the stream. docs/conformance/rfc8548.md maps every RFC 8548
// requirement (TC-n) to its test; docs/decisions.md gives our choices.
package tcpcrypt

import (
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Config is the tcpcrypt configuration of a host (or of a class of
// connections). A Config must not be modified after its first NewSession;
// it may then be shared by any number of connections.
type Config struct {
	// TEPs lists our key-agreement TEPs in increasing order of preference,
	// the order B's SYN option lists them (RFC 8547 §4.5). Default:
	// P-521, P-256, X448, X25519 (X25519 preferred; the only MUST, TC-44).
	// The experimental kex.X25519MLKEM768 is used only when listed here.
	TEPs []kex.ID
	// AEADs lists our AEAD algorithms, most preferred first: A offers them
	// in this order in Init1; B picks the first one A also listed
	// (RFC 8548 §3.3, TC-9). Default: AES-128-GCM, AES-256-GCM,
	// ChaCha20-Poly1305. Policy.AEADs overrides it per connection.
	AEADs []schedule.AEADID

	// Resumption enables offering, accepting and caching resumption
	// secrets (RFC 8548 §3.5). It needs Cache.
	Resumption bool
	Cache      *Cache
	// NonceLen is the resumption nonce length we send, 0..8
	// (RFC 8548 §3.5, TC-14): 0 selects DefaultNonceLen (8), NonceLenZero
	// an empty nonce. The nonce is shortened only when the SYN option
	// space does not allow it (see OfferSpace).
	NonceLen int
	// OfferSpace is the number of bytes the suboptions of our SYN's ENO
	// option may use (0 = DefaultOfferSpace, 18). AnswerSpace is the same
	// for the SYN-ACK after the global byte (0 = DefaultAnswerSpace, 17).
	OfferSpace, AnswerSpace int

	// EphemeralLifetime lets one ephemeral key pair serve connections for
	// this long (0 = a fresh key pair per connection, the default;
	// RFC 8548 §3.3, §8, TC-6/TC-47).
	EphemeralLifetime time.Duration
	// RekeyAfter is the number of frame bytes sent under one key
	// generation after which we rekey (0 = DefaultRekeyAfter).
	RekeyAfter uint64
	// KeyLog, if set, receives a line per connection with its secrets, for
	// debugging with a packet capture (see keylog.go). Never enable in
	// production: it defeats the encryption.
	KeyLog io.Writer
	// Rand is the randomness source for keys and nonces (nil =
	// crypto/rand). It must be cryptographically secure (TC-48); tests
	// inject fixed bytes. A host reads its private key first, then its
	// Init nonce.
	Rand io.Reader
	// Time is the clock (nil = time.Now), used for key lifetimes.
	Time func() time.Time

	// shared holds state shared by every session of this Config; created
	// on first use under sharedMu.
	shared *configShared
}

// Policy holds per-connection choices (RFC 8548 §3.5, TC-27; §3.3, TC-9).
type Policy struct {
	// IgnoreResumption forces a fresh key exchange: we neither offer nor
	// accept resumption on this connection.
	IgnoreResumption bool
	// NoCache keeps every session secret of this connection out of the
	// cache.
	NoCache bool
	// AEADs, if not nil, replaces Config.AEADs for this connection.
	AEADs []schedule.AEADID
	// MaxFrame caps the length of the frames we send, header and tag
	// included (0: the protocol's maximum, frame.HeaderLen+frame.MaxCLen;
	// at least one byte of data always fits). A relay over a stack that
	// segments with GSO sets it so a whole frame is one super-packet: a
	// frame one byte longer than that costs a second packet for its tail.
	MaxFrame int
}

// maxData is the data per frame that Policy.MaxFrame allows with AEAD
// overhead.
func (p Policy) maxData(protocolMax, overhead int) int {
	if p.MaxFrame <= 0 {
		return protocolMax
	}
	return max(1, min(protocolMax, p.MaxFrame-frame.DataOffset(false)-overhead))
}

// configShared is the part of a Config that sessions share.
type configShared struct {
	rand io.Reader // serialised Rand

	mu    sync.Mutex // guards pools
	pools map[kex.ID]*kex.Pool

	keyLogMu sync.Mutex // serialises KeyLog lines
}

var sharedMu sync.Mutex // guards Config.shared of every Config

func (c *Config) state() *configShared {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if c.shared == nil {
		r := c.Rand
		if r == nil {
			r = rand.Reader
		} else {
			r = &lockedReader{r: r}
		}
		c.shared = &configShared{rand: r, pools: make(map[kex.ID]*kex.Pool)}
	}
	return c.shared
}

// pool returns the ephemeral key pool for g.
func (c *Config) pool(g kex.Group) *kex.Pool {
	s := c.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pools[g.ID()]
	if p == nil {
		p = kex.NewPool(g, c.EphemeralLifetime, s.rand, c.now)
		s.pools[g.ID()] = p
	}
	return p
}

func (c *Config) now() time.Time {
	if c.Time != nil {
		return c.Time()
	}
	return time.Now()
}

// teps returns our usable TEPs in increasing preference, duplicates and
// unknown identifiers removed.
func (c *Config) teps() []kex.ID {
	in := c.TEPs
	if in == nil {
		in = kex.IDs()
	}
	out := make([]kex.ID, 0, len(in))
	for _, id := range in {
		if _, ok := kex.Lookup(id); ok && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// aeads returns the AEAD preference list for a connection (most preferred
// first), unknown identifiers and duplicates removed.
func (c *Config) aeads(p Policy) []schedule.AEADID {
	in := p.AEADs
	if in == nil {
		in = c.AEADs
	}
	if in == nil {
		in = []schedule.AEADID{schedule.AES128GCM, schedule.AES256GCM, schedule.ChaCha20Poly1305}
	}
	out := make([]schedule.AEADID, 0, len(in))
	for _, id := range in {
		if _, ok := schedule.LookupAEAD(id); ok && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func (c *Config) nonceLen() int {
	switch {
	case c.NonceLen == 0:
		return DefaultNonceLen
	case c.NonceLen < 0:
		return 0
	case c.NonceLen > MaxResumeNonceLen:
		return MaxResumeNonceLen
	}
	return c.NonceLen
}

func (c *Config) rekeyAfter() uint64 {
	if c.RekeyAfter == 0 {
		return DefaultRekeyAfter
	}
	return c.RekeyAfter
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// caching reports whether secrets of a connection with policy p go into
// the cache.
func (c *Config) caching(p Policy) bool {
	return c.Resumption && c.Cache != nil && !p.NoCache
}

// resuming reports whether a connection with policy p may offer or accept
// resumption.
func (c *Config) resuming(p Policy) bool {
	return c.Resumption && c.Cache != nil && !p.IgnoreResumption
}

// Check reports configuration errors: unknown TEPs or AEADs, an empty
// list, a nonce length out of range, resumption without a cache.
func (c *Config) Check() error {
	for _, id := range c.TEPs {
		if _, ok := kex.Lookup(id); !ok {
			return fmt.Errorf("tcpcrypt: config: unknown TEP 0x%02x", byte(id))
		}
	}
	if c.TEPs != nil && len(c.TEPs) == 0 {
		return fmt.Errorf("tcpcrypt: config: empty TEP list")
	}
	for _, id := range c.AEADs {
		if _, ok := schedule.LookupAEAD(id); !ok {
			return fmt.Errorf("tcpcrypt: config: unknown AEAD 0x%04x", uint16(id))
		}
	}
	if c.AEADs != nil && len(c.AEADs) == 0 {
		return fmt.Errorf("tcpcrypt: config: empty AEAD list")
	}
	if len(c.AEADs) > 255 {
		return fmt.Errorf("tcpcrypt: config: %d AEADs, Init1 carries at most 255", len(c.AEADs))
	}
	if c.NonceLen > MaxResumeNonceLen || c.NonceLen < NonceLenZero {
		return fmt.Errorf("tcpcrypt: config: nonce length %d, want 0..%d or NonceLenZero", c.NonceLen, MaxResumeNonceLen)
	}
	if c.Resumption && c.Cache == nil {
		return fmt.Errorf("tcpcrypt: config: resumption needs a cache")
	}
	return nil
}

// lockedReader serialises reads of a reader shared by sessions.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(b)
}
