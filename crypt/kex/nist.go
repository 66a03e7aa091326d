package kex

import (
	"crypto/ecdh"
	"crypto/elliptic"
	"encoding/binary"
	"fmt"
	"io"
)

// nistGroup is TEP 0x21 (TCPCRYPT_ECDHE_P256) or 0x22 (TCPCRYPT_ECDHE_P521):
// IEEE 1363 ECSVDP-DH on a NIST curve (RFC 8548 §5).
//
// Wire format (RFC 8548 §5): a 2-byte big-endian pubkey_len followed by the
// point in IEEE 1363 §E.2.3 compressed form, which is byte for byte the SEC1
// compressed form: 0x02 or 0x03 (the parity of y) then x as a fixed-length
// big-endian field element. pubkey_len is 33 for P-256 and 67 for P-521.
type nistGroup struct {
	id      ID
	curve   ecdh.Curve
	ell     elliptic.Curve // for point decompression only
	feLen   int            // field-element (and scalar) length in bytes
	topMask byte           // mask for the scalar's first byte (P-521: 521 bits in 66 bytes)
}

var (
	p256Group = nistGroup{id: P256, curve: ecdh.P256(), ell: elliptic.P256(), feLen: 32, topMask: 0xff}
	p521Group = nistGroup{id: P521, curve: ecdh.P521(), ell: elliptic.P521(), feLen: 66, topMask: 0x01}
)

// pubLenPrefix is the size of the pubkey_len field.
const pubLenPrefix = 2

func (g nistGroup) ID() ID             { return g.id }
func (g nistGroup) compressedLen() int { return 1 + g.feLen }
func (g nistGroup) PublicLen() int     { return pubLenPrefix + g.compressedLen() }
func (g nistGroup) ReplyLen() int      { return g.PublicLen() }

// ReadReply is ReadPublic: B's reply is its public key.
func (g nistGroup) ReadReply(b []byte) (*PublicKey, int, error) { return g.ReadPublic(b) }

// SecretLen is the length of ES, the x-coordinate of the shared point as a
// fixed-length field element (see ecdh below).
func (g nistGroup) SecretLen() int { return g.feLen }

// maxScalarTries bounds rejection sampling in GenerateKey. A candidate is
// rejected with probability below 2^-32 (P-256) or 2^-260 (P-521), so
// exhausting the tries means the reader is broken (e.g. returns all 0xff).
const maxScalarTries = 64

// GenerateKey reads candidate scalars of feLen bytes from rand (the top bits
// above the order's bit length masked off) until one lies in [1, n-1]; with a
// sound reader the first candidate is accepted, so exactly feLen bytes are
// consumed. The scalar is drawn here rather than by crypto/ecdh, which since
// Go 1.26 ignores a caller's reader; injected randomness must be honoured for
// deterministic tests (TC-48).
func (g nistGroup) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	r := randReader(rand)
	b := make([]byte, g.feLen)
	defer clear(b)
	for range maxScalarTries {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("kex: %v key generation: %w", g.id, err)
		}
		b[0] &= g.topMask
		// NewPrivateKey rejects 0 and values >= n.
		if k, err := g.curve.NewPrivateKey(b); err == nil {
			return &PrivateKey{g: g, impl: nistPrivate{g: g, k: k}}, nil
		}
	}
	return nil, fmt.Errorf("kex: %v key generation: no valid scalar in %d tries (broken random source)", g.id, maxScalarTries)
}

// ReadPublic parses pubkey_len and a compressed point and validates it per
// IEEE 1363 A.16.10 (TC-42): the point decompresses (x < p and x^3+ax+b is a
// square, so the point is on the curve), it is not the point at infinity,
// and crypto/ecdh.NewPublicKey re-checks range and curve membership.
//
// Decision: receive side is strict. RFC 8548 §5 says implementations MUST
// encode pubkey values in compressed format, so a pubkey_len other than 33
// (P-256) or 67 (P-521), and an uncompressed (0x04), hybrid (0x06/0x07) or
// infinity (0x00) encoding, are rejected as invalid keys rather than
// tolerated: a peer sending them violates the MUST, the key-validation
// failure aborts the connection (RFC 8548 §3.3), and accepting them would
// only widen the parser for no interoperability gain.
func (g nistGroup) ReadPublic(b []byte) (*PublicKey, int, error) {
	if len(b) < pubLenPrefix {
		return nil, 0, keyErr(g.id, "short: %d bytes, want a 2-byte length", len(b))
	}
	l := int(binary.BigEndian.Uint16(b))
	switch {
	case l == 1+2*g.feLen:
		return nil, 0, keyErr(g.id, "length prefix %d is an uncompressed point; RFC 8548 §5 requires compressed (%d)", l, g.compressedLen())
	case l != g.compressedLen():
		return nil, 0, keyErr(g.id, "bad length prefix %d, want %d", l, g.compressedLen())
	case len(b) < pubLenPrefix+l:
		return nil, 0, keyErr(g.id, "short: %d bytes, want %d", len(b), pubLenPrefix+l)
	}
	pt := b[pubLenPrefix : pubLenPrefix+l]
	switch pt[0] {
	case 0x02, 0x03:
	case 0x00:
		return nil, 0, keyErr(g.id, "point at infinity")
	case 0x04:
		return nil, 0, keyErr(g.id, "uncompressed point form; RFC 8548 §5 requires compressed")
	case 0x06, 0x07:
		return nil, 0, keyErr(g.id, "hybrid point form; RFC 8548 §5 requires compressed")
	default:
		return nil, 0, keyErr(g.id, "bad point format byte 0x%02x", pt[0])
	}
	x, y := elliptic.UnmarshalCompressed(g.ell, pt)
	if x == nil {
		return nil, 0, keyErr(g.id, "not on curve (x out of range or x^3+ax+b not a square)")
	}
	// crypto/ecdh takes the uncompressed SEC1 form and validates it again.
	unc := make([]byte, 1+2*g.feLen)
	unc[0] = 0x04
	x.FillBytes(unc[1 : 1+g.feLen])
	y.FillBytes(unc[1+g.feLen:])
	pk, err := g.curve.NewPublicKey(unc)
	if err != nil {
		return nil, 0, keyErr(g.id, "%v", err)
	}
	n := pubLenPrefix + l
	return &PublicKey{id: g.id, wire: append([]byte(nil), b[:n]...), impl: pk}, n, nil
}

type nistPrivate struct {
	g nistGroup
	k *ecdh.PrivateKey
}

// appendPublic compresses the public point: 0x02|parity(y), then x.
func (p nistPrivate) appendPublic(dst []byte) []byte {
	unc := p.k.PublicKey().Bytes() // 0x04 || x || y
	fe := p.g.feLen
	dst = binary.BigEndian.AppendUint16(dst, uint16(p.g.compressedLen()))
	dst = append(dst, 0x02|unc[2*fe]&1)
	return append(dst, unc[1:1+fe]...)
}

// ecdh returns ES for the NIST curves.
//
// Decision: ES is the x-coordinate of the shared point converted with IEEE
// 1363 FE2OSP, i.e. a fixed-length big-endian string of the field size (32
// bytes for P-256, 66 for P-521, leading zeros kept). RFC 8548 §5 names
// IEEE 1363 ECSVDP-DH, whose output is the field element x_P, but does not
// say how it becomes bytes; FE2OSP (SEC1 §2.3.5) is the conversion IEEE 1363
// and SEC1 define for field elements, and it is what crypto/ecdh returns.
// UNCONFIRMED against another implementation (none known to interoperate).
func (p nistPrivate) ecdh(peer *PublicKey) ([]byte, error) {
	pk, ok := peer.impl.(*ecdh.PublicKey)
	if !ok {
		return nil, fmt.Errorf("kex: %v ECDH: malformed public key", p.g.id)
	}
	es, err := p.k.ECDH(pk)
	if err != nil {
		return nil, fmt.Errorf("kex: %v ECDH: %w", p.g.id, err)
	}
	return es, nil
}
