// Package kex implements the key-agreement schemes of the four tcpcrypt TEPs
// (RFC 8548 §5): ECDHE over P-256 and P-521 with compressed, length-prefixed
// public keys, and X25519 and X448 (RFC 7748) with raw public keys.
//
// Each TEP is a Group found by its TEP identifier with Lookup. A Group makes
// ephemeral key pairs (Pool adds the optional reuse lifetime of RFC 8548 §8),
// parses and validates a peer's wire-encoded public key, and computes the
// ephemeral secret ES.
package kex

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// ID is a tcpcrypt TEP identifier (RFC 8548 §7 Table 4), without the v bit.
type ID byte

// TEP identifiers.
const (
	P256   ID = 0x21 // TCPCRYPT_ECDHE_P256, OPTIONAL
	P521   ID = 0x22 // TCPCRYPT_ECDHE_P521, OPTIONAL
	X25519 ID = 0x23 // TCPCRYPT_ECDHE_Curve25519, REQUIRED (TC-44)
	X448   ID = 0x24 // TCPCRYPT_ECDHE_Curve448, RECOMMENDED
)

// String returns "p256", "p521", "x25519" or "x448".
func (id ID) String() string {
	switch id {
	case P256:
		return "p256"
	case P521:
		return "p521"
	case X25519:
		return "x25519"
	case X448:
		return "x448"
	}
	return fmt.Sprintf("tep-0x%02x", byte(id))
}

// Group is the key-agreement scheme of one TEP.
type Group interface {
	ID() ID
	// PublicLen is the wire length of Pub_A/Pub_B including any 2-byte
	// length prefix: 35 (P-256), 69 (P-521), 32 (X25519), 56 (X448).
	PublicLen() int
	// SecretLen is the length of ES: 32, 66, 32, 56.
	SecretLen() int
	// GenerateKey makes an ephemeral key pair from rand (crypto/rand if nil).
	GenerateKey(rand io.Reader) (*PrivateKey, error)
	// ReadPublic parses and validates (IEEE 1363 A.16.10 / RFC 7748) the
	// public key at the start of b and returns how many bytes it used.
	// Errors are *KeyError naming the reason.
	ReadPublic(b []byte) (*PublicKey, int, error)
}

// groups holds the four TEPs in the default order of increasing preference.
var groups = [...]Group{p521Group, p256Group, x448Group{}, x25519Group{}}

// Lookup returns the Group of TEP id.
func Lookup(id ID) (Group, bool) {
	for _, g := range groups {
		if g.ID() == id {
			return g, true
		}
	}
	return nil, false
}

// IDs returns every implemented TEP in increasing order of preference
// (P-521, P-256, X448, X25519).
func IDs() []ID {
	ids := make([]ID, len(groups))
	for i, g := range groups {
		ids[i] = g.ID()
	}
	return ids
}

// ErrZeroSecret is returned by ECDH when X25519 or X448 yields the all-zero
// shared secret, i.e. the peer sent a low-order point (RFC 7748 §6,
// RFC 8548 §5, TC-43). The connection must be aborted.
var ErrZeroSecret = errors.New("kex: all-zero shared secret (low-order public key)")

// ErrInvalidPublicKey is matched (errors.Is) by every *KeyError.
var ErrInvalidPublicKey = errors.New("kex: invalid public key")

// KeyError reports why a peer's public key was rejected (RFC 8548 §3.3:
// a key-validation failure MUST abort the connection, TC-7/TC-42).
type KeyError struct {
	Group  ID
	Reason string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("kex: invalid %v public key: %s", e.Group, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidPublicKey) true.
func (e *KeyError) Is(target error) bool { return target == ErrInvalidPublicKey }

func keyErr(id ID, format string, args ...any) *KeyError {
	return &KeyError{Group: id, Reason: fmt.Sprintf(format, args...)}
}

// PrivateKey is an ephemeral private key of one group. It is never written
// to persistent storage (RFC 8548 §3.3, TC-6).
//
// A key handed out by a Pool is erased (Zero) once it is retired and no
// handshake that got it still owes its ECDH: a per-connection key right
// after its one ECDH, a shared one when its pool has replaced it and its
// last holder is done.
type PrivateKey struct {
	g    Group
	impl privateImpl

	users   atomic.Int32 // Pool.Get calls whose ECDH has not run yet
	retired atomic.Bool  // no Pool hands the key out any more
	erased  atomic.Bool
}

// privateImpl is the per-group half of PrivateKey.
type privateImpl interface {
	appendPublic(dst []byte) []byte
	ecdh(peer *PublicKey) ([]byte, error)
}

// Group returns the key's group.
func (k *PrivateKey) Group() Group { return k.g }

// AppendPublic appends the wire encoding of the public key (compressed point
// with a 2-byte length for the NIST curves, raw for X25519/X448).
func (k *PrivateKey) AppendPublic(dst []byte) []byte { return k.impl.appendPublic(dst) }

// PublicKey returns the public half of k.
func (k *PrivateKey) PublicKey() *PublicKey {
	p, _, err := k.g.ReadPublic(k.AppendPublic(nil))
	if err != nil {
		// Our own public key always parses; a failure is a bug, not input.
		return nil
	}
	return p
}

// ECDH returns ES, the key-agreement result with the peer's public key
// (RFC 8548 §3.3, §5). It returns an error wrapping ErrZeroSecret for an
// all-zero X25519/X448 result.
func (k *PrivateKey) ECDH(peer *PublicKey) ([]byte, error) {
	if peer == nil {
		return nil, fmt.Errorf("kex: %v ECDH: nil public key", k.g.ID())
	}
	if peer.id != k.g.ID() {
		return nil, fmt.Errorf("kex: %v ECDH with a %v public key", k.g.ID(), peer.id)
	}
	if k.erased.Load() {
		return nil, fmt.Errorf("kex: %v ECDH: private key erased", k.g.ID())
	}
	es, err := k.impl.ecdh(peer)
	k.release()
	return es, err
}

// Zero erases the private scalar where the group's implementation allows
// it (X448; crypto/ecdh keeps its scalars out of reach). Every later ECDH
// fails. Keys from a Pool are erased by the Pool's bookkeeping; call Zero
// only on keys from GenerateKey.
func (k *PrivateKey) Zero() {
	k.erased.Store(true)
	if z, ok := k.impl.(interface{ zero() }); ok {
		z.zero()
	}
}

// acquire records one more holder that will run ECDH (Pool.Get).
func (k *PrivateKey) acquire() { k.users.Add(1) }

// release records that a holder ran its ECDH; the last holder of a
// retired key erases it.
func (k *PrivateKey) release() {
	for {
		n := k.users.Load()
		if n <= 0 {
			return // not from a Pool
		}
		if k.users.CompareAndSwap(n, n-1) {
			if n == 1 && k.retired.Load() {
				k.Zero()
			}
			return
		}
	}
}

// retire marks the key as no longer handed out; it is erased now if no
// holder still owes its ECDH, else by the last one. (A holder whose
// handshake failed before its ECDH never releases: that key is left to the
// garbage collector, as before.)
func (k *PrivateKey) retire() {
	k.retired.Store(true)
	if k.users.Load() == 0 {
		k.Zero()
	}
}

// PublicKey is a peer's validated ephemeral public key.
type PublicKey struct {
	id   ID
	wire []byte // wire encoding as received (canonical for the NIST curves)
	impl any    // *ecdh.PublicKey or *x448.Key
}

// ID returns the TEP the key belongs to.
func (p *PublicKey) ID() ID { return p.id }

// Bytes returns a copy of the key's wire encoding.
func (p *PublicKey) Bytes() []byte { return append([]byte(nil), p.wire...) }

// randReader returns r, or crypto/rand.Reader when r is nil (TC-48).
func randReader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
