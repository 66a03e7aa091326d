// Package kex implements the key-agreement schemes of the four tcpcrypt TEPs
// (RFC 8548 §5): ECDHE over P-256 and P-521 with compressed, length-prefixed
// public keys, and X25519 and X448 (RFC 7748) with raw public keys; and the
// experimental hybrid TEP x25519mlkem768 (X-Wing: X25519 + ML-KEM-768,
// hybrid.go) on the experimental identifier 0x20 (RFC 8547 §11).
//
// Each TEP is a Group found by its TEP identifier with Lookup. The
// interface is KEM-shaped so that Diffie-Hellman and KEM TEPs look alike to
// the handshake (RFC 8548 §3.3):
//
//   - host A makes a key pair (GenerateKey, or Pool.Get for the optional
//     reuse lifetime of RFC 8548 §8) and sends its public key, Pub_A;
//   - host B validates Pub_A (ReadPublic) and answers it (Pool.Encapsulate)
//     with ES and its reply Pub_B: for a Diffie-Hellman TEP its own
//     ephemeral public key, for a KEM a ciphertext made for Pub_A;
//   - host A validates Pub_B (ReadReply) and recovers ES from it with its
//     private key (PrivateKey.Decapsulate).
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

	// X25519MLKEM768 is this implementation's hybrid post-quantum TEP
	// (X-Wing, see hybrid.go) on 0x20, the identifier RFC 8547 §11 sets
	// aside for experimental use. It is never enabled by default (IDs).
	X25519MLKEM768 ID = 0x20
)

// String returns "p256", "p521", "x25519", "x448" or "x25519mlkem768", the
// names configuration, status and logs use.
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
	case X25519MLKEM768:
		return "x25519mlkem768"
	}
	return fmt.Sprintf("tep-0x%02x", byte(id))
}

// Group is the key-agreement scheme of one TEP.
type Group interface {
	ID() ID
	// PublicLen is the wire length of Pub_A including any 2-byte length
	// prefix: 35 (P-256), 69 (P-521), 32 (X25519), 56 (X448), 1216
	// (x25519mlkem768: its encapsulation key).
	PublicLen() int
	// ReplyLen is the wire length of Pub_B: PublicLen for the
	// Diffie-Hellman TEPs, 1120 for x25519mlkem768 (its ciphertext).
	ReplyLen() int
	// SecretLen is the length of ES: 32, 66, 32, 56, 32.
	SecretLen() int
	// GenerateKey makes host A's ephemeral key pair (and host B's for a
	// Diffie-Hellman TEP) from rand (crypto/rand if nil).
	GenerateKey(rand io.Reader) (*PrivateKey, error)
	// ReadPublic parses and validates (IEEE 1363 A.16.10 / RFC 7748 /
	// FIPS 203 §7.2) the public key Pub_A at the start of b and returns how
	// many bytes it used. Errors are *KeyError naming the reason.
	ReadPublic(b []byte) (*PublicKey, int, error)
	// ReadReply is ReadPublic for Pub_B, the value host A receives. For a
	// KEM it is a ciphertext (validated as FIPS 203 §7.3 requires); its
	// errors are *KeyError matching ErrInvalidCiphertext.
	ReadReply(b []byte) (*PublicKey, int, error)
}

// groups holds the four TEPs of RFC 8548 in the default order of increasing
// preference; experimental holds TEPs used only when configured.
var (
	groups       = [...]Group{p521Group, p256Group, x448Group{}, x25519Group{}}
	experimental = [...]Group{hybridGroup{}}
)

// Lookup returns the Group of TEP id, experimental TEPs included.
func Lookup(id ID) (Group, bool) {
	for _, g := range groups {
		if g.ID() == id {
			return g, true
		}
	}
	for _, g := range experimental {
		if g.ID() == id {
			return g, true
		}
	}
	return nil, false
}

// IDs returns the TEPs enabled by default, in increasing order of
// preference (P-521, P-256, X448, X25519). The experimental
// x25519mlkem768 is not among them; AllIDs lists it too.
func IDs() []ID {
	ids := make([]ID, len(groups))
	for i, g := range groups {
		ids[i] = g.ID()
	}
	return ids
}

// AllIDs returns every implemented TEP: IDs, then the experimental ones.
func AllIDs() []ID {
	ids := IDs()
	for _, g := range experimental {
		ids = append(ids, g.ID())
	}
	return ids
}

// ErrZeroSecret is returned by ECDH when X25519 or X448 yields the all-zero
// shared secret, i.e. the peer sent a low-order point (RFC 7748 §6,
// RFC 8548 §5, TC-43). The connection must be aborted.
var ErrZeroSecret = errors.New("kex: all-zero shared secret (low-order public key)")

// ErrRandomness is matched (errors.Is) by Pool.Encapsulate's errors when
// no randomness could be read: not the peer's fault (TC-48).
var ErrRandomness = errors.New("kex: no randomness")

// ErrInvalidPublicKey is matched (errors.Is) by every *KeyError about a
// public key; ErrInvalidCiphertext by every one about a KEM ciphertext.
var (
	ErrInvalidPublicKey  = errors.New("kex: invalid public key")
	ErrInvalidCiphertext = errors.New("kex: invalid ciphertext")
)

// KeyError reports why a peer's public key or ciphertext was rejected
// (RFC 8548 §3.3: a key-validation failure MUST abort the connection,
// TC-7/TC-42).
type KeyError struct {
	Group      ID
	Ciphertext bool // a KEM ciphertext (Pub_B), not a public key
	Reason     string
}

func (e *KeyError) Error() string {
	what := "public key"
	if e.Ciphertext {
		what = "ciphertext"
	}
	return fmt.Sprintf("kex: invalid %v %s: %s", e.Group, what, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidPublicKey) true, or
// errors.Is(err, ErrInvalidCiphertext) for a ciphertext.
func (e *KeyError) Is(target error) bool {
	if e.Ciphertext {
		return target == ErrInvalidCiphertext
	}
	return target == ErrInvalidPublicKey
}

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

// privateImpl is the per-group half of PrivateKey. ecdh takes Pub_B as
// ReadReply parsed it: a public key for DH, a ciphertext for a KEM.
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
	// Every call, failed ones included, uses up the holder's claim on a
	// pooled key: its handshake is over either way.
	defer k.release()
	if peer == nil {
		return nil, fmt.Errorf("kex: %v ECDH: nil public key", k.g.ID())
	}
	if peer.id != k.g.ID() {
		return nil, fmt.Errorf("kex: %v ECDH with a %v public key", k.g.ID(), peer.id)
	}
	if k.erased.Load() {
		return nil, fmt.Errorf("kex: %v ECDH: private key erased", k.g.ID())
	}
	return k.impl.ecdh(peer)
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

// Release gives back a key from Pool.Get whose holder will not run its
// ECDH (its handshake failed first: the peer sent a malformed or no
// reply). Without it a per-connection key would never be erased, and a
// shared one never once retired. The key must not be used afterwards.
func (k *PrivateKey) Release() { k.release() }

// retire marks the key as no longer handed out; it is erased now if no
// holder still owes its ECDH, else by the last one (ECDH, or Release when
// its handshake failed first).
func (k *PrivateKey) retire() {
	k.retired.Store(true)
	if k.users.Load() == 0 {
		k.Zero()
	}
}

// Decapsulate is host A's last step (RFC 8548 §3.3): ES from B's reply
// Pub_B as parsed by ReadReply. For a Diffie-Hellman TEP it is ECDH with
// B's public key; for x25519mlkem768 it decapsulates B's ciphertext.
func (k *PrivateKey) Decapsulate(reply *PublicKey) ([]byte, error) { return k.ECDH(reply) }

// PublicKey is a peer's validated ephemeral public key or, for a KEM, the
// ciphertext of Pub_B.
type PublicKey struct {
	id   ID
	wire []byte // wire encoding as received (canonical for the NIST curves)
	impl any    // *ecdh.PublicKey, *x448.Key, hybridPublic or hybridCiphertext
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
