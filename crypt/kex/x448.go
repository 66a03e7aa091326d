package kex

import (
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x448"
)

// x448Group is TEP 0x24, TCPCRYPT_ECDHE_Curve448: X448 of RFC 7748 with
// 56-byte public keys sent without a length prefix (RFC 8548 §5). The Go
// standard library has no X448, so circl provides the function.
type x448Group struct{}

func (x448Group) ID() ID         { return X448 }
func (x448Group) PublicLen() int { return x448.Size }
func (x448Group) SecretLen() int { return x448.Size }
func (x448Group) ReplyLen() int  { return x448.Size }

// ReadReply is ReadPublic: B's reply is its public key.
func (g x448Group) ReadReply(b []byte) (*PublicKey, int, error) { return g.ReadPublic(b) }

// GenerateKey reads exactly 56 bytes from rand as the private scalar
// (clamped by X448 itself, RFC 7748 §5).
func (g x448Group) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	p := &x448Private{}
	if _, err := io.ReadFull(randReader(rand), p.secret[:]); err != nil {
		clear(p.secret[:])
		return nil, fmt.Errorf("kex: x448 key generation: %w", err)
	}
	x448.KeyGen(&p.public, &p.secret)
	return &PrivateKey{g: g, impl: p}, nil
}

// ReadPublic takes the first 56 bytes of b. As for X25519, every string is a
// valid input (RFC 7748 §5); low-order points are rejected in ECDH.
func (x448Group) ReadPublic(b []byte) (*PublicKey, int, error) {
	if len(b) < x448.Size {
		return nil, 0, keyErr(X448, "short: %d bytes, want %d", len(b), x448.Size)
	}
	k := new(x448.Key)
	copy(k[:], b)
	return &PublicKey{id: X448, wire: append([]byte(nil), k[:]...), impl: k}, x448.Size, nil
}

type x448Private struct {
	secret, public x448.Key
}

func (p *x448Private) appendPublic(dst []byte) []byte { return append(dst, p.public[:]...) }

func (p *x448Private) ecdh(peer *PublicKey) ([]byte, error) {
	pk, ok := peer.impl.(*x448.Key)
	if !ok {
		return nil, fmt.Errorf("kex: x448 ECDH: malformed public key")
	}
	var shared x448.Key
	// x448.Shared reports false for a low-order peer key (whose result is
	// all zeros). Check both that and the output itself (RFC 7748 §6,
	// RFC 8548 §5, TC-43): the bool must never be ignored.
	ok = x448.Shared(&shared, &p.secret, pk)
	defer clear(shared[:]) // the caller gets its own copy
	if !ok || isZero(shared[:]) {
		return nil, fmt.Errorf("kex: x448 ECDH: %w", ErrZeroSecret)
	}
	return append([]byte(nil), shared[:]...), nil
}

// zero erases the private scalar (PrivateKey.Zero). The public key stays:
// host B still sends it in Init2 after its ECDH.
func (p *x448Private) zero() { clear(p.secret[:]) }
