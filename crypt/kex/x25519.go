package kex

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"
)

// x25519Group is TEP 0x23, TCPCRYPT_ECDHE_Curve25519: X25519 of RFC 7748
// with 32-byte public keys sent without a length prefix (RFC 8548 §5).
type x25519Group struct{}

const x25519Size = 32

func (x25519Group) ID() ID         { return X25519 }
func (x25519Group) PublicLen() int { return x25519Size }
func (x25519Group) SecretLen() int { return x25519Size }
func (x25519Group) ReplyLen() int  { return x25519Size }

// ReadReply is ReadPublic: B's reply is its public key.
func (g x25519Group) ReadReply(b []byte) (*PublicKey, int, error) { return g.ReadPublic(b) }

// GenerateKey reads exactly 32 bytes from rand as the private scalar
// (clamped by X25519 itself, RFC 7748 §5). The bytes are read here rather
// than by crypto/ecdh, which since Go 1.26 ignores a caller's reader; tests
// and golden transcripts need the injected one honoured.
func (g x25519Group) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	var b [x25519Size]byte
	defer clear(b[:])
	if _, err := io.ReadFull(randReader(rand), b[:]); err != nil {
		return nil, fmt.Errorf("kex: x25519 key generation: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(b[:])
	if err != nil {
		return nil, fmt.Errorf("kex: x25519 key generation: %w", err)
	}
	return &PrivateKey{g: g, impl: x25519Private{k}}, nil
}

// ReadPublic takes the first 32 bytes of b. Every 32-byte string is a valid
// X25519 input (RFC 7748 §5: the top bit is masked, non-canonical values are
// accepted); low-order points are caught by the all-zero check in ECDH
// (RFC 7748 §6, RFC 8548 §5).
func (x25519Group) ReadPublic(b []byte) (*PublicKey, int, error) {
	if len(b) < x25519Size {
		return nil, 0, keyErr(X25519, "short: %d bytes, want %d", len(b), x25519Size)
	}
	wire := append([]byte(nil), b[:x25519Size]...)
	pk, err := ecdh.X25519().NewPublicKey(wire)
	if err != nil {
		return nil, 0, keyErr(X25519, "%v", err)
	}
	return &PublicKey{id: X25519, wire: wire, impl: pk}, x25519Size, nil
}

type x25519Private struct{ k *ecdh.PrivateKey }

func (p x25519Private) appendPublic(dst []byte) []byte {
	return append(dst, p.k.PublicKey().Bytes()...)
}

func (p x25519Private) ecdh(peer *PublicKey) ([]byte, error) {
	pk, ok := peer.impl.(*ecdh.PublicKey)
	if !ok {
		return nil, fmt.Errorf("kex: x25519 ECDH: malformed public key")
	}
	es, err := p.k.ECDH(pk)
	if err != nil {
		// crypto/ecdh fails X25519 only for the all-zero output (curves
		// match, checked above), which RFC 7748 §6 makes us abort on.
		return nil, fmt.Errorf("kex: x25519 ECDH: %w", ErrZeroSecret)
	}
	// Belt and braces: never hand out an all-zero ES (TC-43).
	if isZero(es) {
		return nil, fmt.Errorf("kex: x25519 ECDH: %w", ErrZeroSecret)
	}
	return es, nil
}

// isZero reports in constant time whether b is all zeros.
func isZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}
