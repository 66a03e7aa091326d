package kex

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/rand"
	"crypto/sha3"
	"fmt"
	"io"
)

// hybridGroup is the experimental TEP 0x20, x25519mlkem768: the X-Wing KEM
// (draft-connolly-cfrg-xwing-kem; the same construction as HPKE's
// MLKEM768-X25519, which crypto/hpke implements but does not expose as a
// bare KEM), a hybrid of ML-KEM-768 (FIPS 203) and X25519 (RFC 7748).
//
// Pub_A is X-Wing's encapsulation key pk_M || pk_X (1184 + 32 bytes), Pub_B
// its ciphertext ct_M || ct_X (1088 + 32 bytes), both without a length
// prefix (their lengths are fixed, like those of X25519 keys), and ES is
// the 32-byte X-Wing shared secret
//
//	SHA3-256(ss_M || ss_X || ct_X || pk_X || "\.//^\")
//
// which stays secret while either ML-KEM-768 or X25519 stands. Everything
// after ES (transcript, key schedule, frames, resumption) is RFC 8548's.
// docs/pq-hybrid.md explains the choice of combiner.
type hybridGroup struct{}

const (
	hybridSeedLen  = 32 // X-Wing decapsulation key (a seed)
	hybridEseedLen = 64 // X-Wing encapsulation randomness: m || ek_X
	hybridPubLen   = mlkem.EncapsulationKeySize768 + x25519Size
	hybridCtLen    = mlkem.CiphertextSize768 + x25519Size
)

// xwingLabel is X-Wing's domain separator, the bytes of `\.//^\`.
var xwingLabel = []byte{0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c}

func (hybridGroup) ID() ID         { return X25519MLKEM768 }
func (hybridGroup) PublicLen() int { return hybridPubLen }
func (hybridGroup) ReplyLen() int  { return hybridCtLen }
func (hybridGroup) SecretLen() int { return mlkem.SharedKeySize }

// GenerateKey reads the 32-byte X-Wing decapsulation key from rand and
// expands it with SHAKE256 into the ML-KEM-768 seed d || z (64 bytes) and
// the X25519 private key (32 bytes). As for the other TEPs the bytes are
// read here, so an injected reader is honoured (golden transcripts, TC-48).
func (g hybridGroup) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	var seed [hybridSeedLen]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(randReader(rand), seed[:]); err != nil {
		return nil, fmt.Errorf("kex: %v key generation: %w", X25519MLKEM768, err)
	}
	return g.newPrivate(seed[:])
}

func (g hybridGroup) newPrivate(seed []byte) (*PrivateKey, error) {
	expanded := sha3.SumSHAKE256(seed, mlkem.SeedSize+x25519Size)
	defer clear(expanded)
	dk, err := mlkem.NewDecapsulationKey768(expanded[:mlkem.SeedSize])
	if err != nil {
		return nil, fmt.Errorf("kex: %v key generation: %w", X25519MLKEM768, err)
	}
	x, err := ecdh.X25519().NewPrivateKey(expanded[mlkem.SeedSize:])
	if err != nil {
		return nil, fmt.Errorf("kex: %v key generation: %w", X25519MLKEM768, err)
	}
	pub := make([]byte, 0, hybridPubLen)
	pub = append(pub, dk.EncapsulationKey().Bytes()...)
	pub = append(pub, x.PublicKey().Bytes()...)
	return &PrivateKey{g: g, impl: &hybridPrivate{dk: dk, x: x, pub: pub}}, nil
}

// ReadPublic takes the first 1216 bytes of b as X-Wing's encapsulation key
// and validates its ML-KEM part as FIPS 203 §7.2 requires before
// encapsulating: the length (type check) and that every coefficient of ek
// decodes below q (modulus check), both done by NewEncapsulationKey768.
// Every 32-byte X25519 string is a valid input (RFC 7748 §5); a low-order
// pk_X is refused when encapsulating (all-zero ss_X).
func (hybridGroup) ReadPublic(b []byte) (*PublicKey, int, error) {
	if len(b) < hybridPubLen {
		return nil, 0, keyErr(X25519MLKEM768, "short: %d bytes, want %d", len(b), hybridPubLen)
	}
	wire := append([]byte(nil), b[:hybridPubLen]...)
	ek, err := mlkem.NewEncapsulationKey768(wire[:mlkem.EncapsulationKeySize768])
	if err != nil {
		return nil, 0, keyErr(X25519MLKEM768, "ML-KEM-768 encapsulation key fails the FIPS 203 modulus check: %v", err)
	}
	x, err := ecdh.X25519().NewPublicKey(wire[mlkem.EncapsulationKeySize768:])
	if err != nil {
		return nil, 0, keyErr(X25519MLKEM768, "X25519 share: %v", err)
	}
	return &PublicKey{id: X25519MLKEM768, wire: wire, impl: hybridPublic{ek: ek, x: x}}, hybridPubLen, nil
}

// ReadReply takes the first 1120 bytes of b as X-Wing's ciphertext. FIPS 203
// §7.3 asks only for the ciphertext's length (type check) before
// decapsulating: any string of that length decapsulates, a forged one to
// ML-KEM's implicit-rejection key, so A derives a different ES and the
// first frame fails to authenticate.
func (hybridGroup) ReadReply(b []byte) (*PublicKey, int, error) {
	if len(b) < hybridCtLen {
		return nil, 0, &KeyError{Group: X25519MLKEM768, Ciphertext: true,
			Reason: fmt.Sprintf("short: %d bytes, want %d", len(b), hybridCtLen)}
	}
	wire := append([]byte(nil), b[:hybridCtLen]...)
	x, err := ecdh.X25519().NewPublicKey(wire[mlkem.CiphertextSize768:])
	if err != nil {
		return nil, 0, &KeyError{Group: X25519MLKEM768, Ciphertext: true, Reason: "X25519 share: " + err.Error()}
	}
	return &PublicKey{id: X25519MLKEM768, wire: wire, impl: hybridCiphertext{x: x}}, hybridCtLen, nil
}

// hybridPublic is a parsed Pub_A.
type hybridPublic struct {
	ek *mlkem.EncapsulationKey768
	x  *ecdh.PublicKey
}

// hybridCiphertext is a parsed Pub_B; its wire bytes are ct_M || ct_X.
type hybridCiphertext struct {
	x *ecdh.PublicKey // ct_X as an X25519 public key
}

// encapsulate is X-Wing's Encapsulate. With the system reader the ML-KEM
// randomness comes from crypto/mlkem's own generator (the standard API
// takes no reader) and only the X25519 ephemeral key is read from rand;
// with an injected reader (Config.Rand in tests) all 64 bytes of X-Wing's
// encapsulation seed m || ek_X are read from it and ML-KEM encapsulates
// deterministically (FIPS 203 ML-KEM.Encaps_internal), so handshakes can be
// checked against known answers like those of the other TEPs.
func (hybridGroup) encapsulate(peer *PublicKey, r io.Reader) (es, ct []byte, err error) {
	pk, ok := peer.impl.(hybridPublic)
	if !ok {
		return nil, nil, fmt.Errorf("kex: %v encapsulation: not an encapsulation key", X25519MLKEM768)
	}
	var eseed [hybridEseedLen]byte
	defer clear(eseed[:])
	m, ekX := eseed[:32], eseed[32:]
	need := eseed[:]
	if r == rand.Reader {
		m, need = nil, ekX
	}
	if _, err := io.ReadFull(r, need); err != nil {
		return nil, nil, fmt.Errorf("kex: %v encapsulation: %w: %w", X25519MLKEM768, ErrRandomness, err)
	}
	eph, err := ecdh.X25519().NewPrivateKey(ekX)
	if err != nil {
		return nil, nil, fmt.Errorf("kex: %v encapsulation: %w", X25519MLKEM768, err)
	}
	ssX, err := eph.ECDH(pk.x)
	if err != nil || isZero(ssX) {
		// A low-order pk_X: refused like an X25519 TEP's (RFC 7748 §6,
		// RFC 8548 §5), and as crypto/hpke's X-Wing refuses it.
		return nil, nil, fmt.Errorf("kex: %v encapsulation: %w", X25519MLKEM768, ErrZeroSecret)
	}
	defer clear(ssX)
	var ssM, ctM []byte
	if m == nil {
		ssM, ctM = pk.ek.Encapsulate()
	} else if ssM, ctM, err = mlkemtest.Encapsulate768(pk.ek, m); err != nil {
		return nil, nil, fmt.Errorf("kex: %v encapsulation: %w", X25519MLKEM768, err)
	}
	defer clear(ssM)
	ctX := eph.PublicKey().Bytes()
	ct = make([]byte, 0, hybridCtLen)
	ct = append(append(ct, ctM...), ctX...)
	return xwingCombine(ssM, ssX, ctX, pk.x.Bytes()), ct, nil
}

// hybridPrivate is A's X-Wing decapsulation key, expanded.
type hybridPrivate struct {
	dk  *mlkem.DecapsulationKey768
	x   *ecdh.PrivateKey
	pub []byte // pk_M || pk_X
}

func (p *hybridPrivate) appendPublic(dst []byte) []byte { return append(dst, p.pub...) }

// ecdh is X-Wing's Decapsulate of the ciphertext in reply.
func (p *hybridPrivate) ecdh(reply *PublicKey) ([]byte, error) {
	c, ok := reply.impl.(hybridCiphertext)
	if !ok || len(reply.wire) != hybridCtLen {
		return nil, fmt.Errorf("kex: %v decapsulation: not a ciphertext", X25519MLKEM768)
	}
	ssM, err := p.dk.Decapsulate(reply.wire[:mlkem.CiphertextSize768])
	if err != nil {
		return nil, fmt.Errorf("kex: %v decapsulation: %w", X25519MLKEM768, err)
	}
	defer clear(ssM)
	ssX, err := p.x.ECDH(c.x)
	if err != nil || isZero(ssX) {
		return nil, fmt.Errorf("kex: %v decapsulation: %w", X25519MLKEM768, ErrZeroSecret)
	}
	defer clear(ssX)
	return xwingCombine(ssM, ssX, reply.wire[mlkem.CiphertextSize768:], p.pub[mlkem.EncapsulationKeySize768:]), nil
}

// xwingCombine is X-Wing's combiner. Hashing ct_X and pk_X binds ES to the
// X25519 exchange, so the KEM is IND-CCA secure on its own if either half
// is (ML-KEM's ciphertext needs no binding: ML-KEM is already IND-CCA).
func xwingCombine(ssM, ssX, ctX, pkX []byte) []byte {
	h := sha3.New256()
	h.Write(ssM)
	h.Write(ssX)
	h.Write(ctX)
	h.Write(pkX)
	h.Write(xwingLabel)
	return h.Sum(nil)
}
