package kex

import (
	"bytes"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
	"testing"
)

var nistIDs = []ID{P256, P521}

func nistOf(id ID) nistGroup {
	g, _ := Lookup(id)
	return g.(nistGroup)
}

// TC-42: our public keys are compressed points with a 2-byte big-endian
// length, identical to crypto/elliptic's SEC1 compression, and they parse
// back to the same key.
func TestTC42_CompressedRoundTrip(t *testing.T) {
	for _, id := range nistIDs {
		g := nistOf(id)
		for i := 0; i < 20; i++ {
			k, err := g.GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			wire := k.AppendPublic([]byte{0xaa}) // appends after existing bytes
			if wire[0] != 0xaa {
				t.Fatal("AppendPublic overwrote dst")
			}
			wire = wire[1:]
			if len(wire) != g.PublicLen() || int(binary.BigEndian.Uint16(wire)) != g.compressedLen() {
				t.Fatalf("%v wire %x", id, wire)
			}
			unc := k.impl.(nistPrivate).k.PublicKey().Bytes()
			x, y := elliptic.Unmarshal(g.ell, unc)
			if want := elliptic.MarshalCompressed(g.ell, x, y); !bytes.Equal(wire[2:], want) {
				t.Fatalf("%v compressed %x, crypto/elliptic %x", id, wire[2:], want)
			}
			// Trailing bytes (the rest of Init1/Init2) are not consumed.
			p, n, err := g.ReadPublic(append(append([]byte(nil), wire...), 1, 2, 3))
			if err != nil || n != g.PublicLen() {
				t.Fatalf("%v ReadPublic: n=%d err=%v", id, n, err)
			}
			if !bytes.Equal(p.Bytes(), wire) || p.ID() != id {
				t.Fatalf("%v round trip %x != %x", id, p.Bytes(), wire)
			}
		}
	}
}

// TC-42: receive-side validation (IEEE 1363 A.16.10 and the RFC 8548 §5
// compressed-only rule). Every case must fail with a *KeyError whose reason
// names the problem.
func TestTC42_InvalidNISTPublicKeys(t *testing.T) {
	for _, id := range nistIDs {
		g := nistOf(id)
		params := g.ell.Params()
		fe := g.feLen
		k, _ := g.GenerateKey(nil)
		good := k.AppendPublic(nil)

		withPrefix := func(l int, body []byte) []byte {
			return append(binary.BigEndian.AppendUint16(nil, uint16(l)), body...)
		}
		compressed := func(prefix byte, x *big.Int) []byte {
			b := make([]byte, 1+fe)
			b[0] = prefix
			x.FillBytes(b[1:])
			return withPrefix(1+fe, b)
		}
		unc := k.impl.(nistPrivate).k.PublicKey().Bytes()

		xP := new(big.Int).Set(params.P)
		xMax := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(8*fe)), big.NewInt(1))
		xOff := notOnCurveX(t, params)

		tests := []struct {
			name, reason string
			in           []byte
		}{
			{"empty", "short", nil},
			{"one byte", "short", []byte{0}},
			{"prefix only", "short", good[:2]},
			{"truncated point", "short", good[:len(good)-1]},
			{"zero length", "bad length prefix 0", withPrefix(0, nil)},
			{"length one short", "bad length prefix", withPrefix(fe, good[2:len(good)-1])},
			{"length one long", "bad length prefix", withPrefix(fe+2, append(good[2:], 0))},
			{"uncompressed length", "uncompressed point", withPrefix(len(unc), unc)},
			{"uncompressed byte in compressed length", "uncompressed point form", withPrefix(1+fe, unc[:1+fe])},
			{"infinity", "infinity", compressed(0x00, big.NewInt(0))},
			{"hybrid 06", "hybrid", compressed(0x06, big.NewInt(1))},
			{"hybrid 07", "hybrid", compressed(0x07, big.NewInt(1))},
			{"format 05", "bad point format byte", compressed(0x05, big.NewInt(1))},
			{"format ff", "bad point format byte", compressed(0xff, big.NewInt(1))},
			{"x = p", "not on curve", compressed(0x02, xP)},
			{"x = p, odd", "not on curve", compressed(0x03, xP)},
			{"x all ones", "not on curve", compressed(0x02, xMax)},
			{"x not on curve", "not on curve", compressed(0x02, xOff)},
		}
		for _, tt := range tests {
			t.Run(id.String()+"/"+tt.name, func(t *testing.T) {
				p, n, err := g.ReadPublic(tt.in)
				var ke *KeyError
				if !errors.As(err, &ke) || !errors.Is(err, ErrInvalidPublicKey) {
					t.Fatalf("ReadPublic(%x) = %v, %d, %v; want *KeyError", tt.in, p, n, err)
				}
				if p != nil || n != 0 {
					t.Errorf("returned key/length with an error")
				}
				if ke.Group != id || !strings.Contains(err.Error(), tt.reason) {
					t.Errorf("error %q, want reason %q", err, tt.reason)
				}
			})
		}
	}
}

// notOnCurveX finds the smallest x in [0, p) for which x^3 - 3x + b is not a
// square mod p, so no point has that x (computed with math/big, apart from
// the code under test).
func notOnCurveX(t *testing.T, params *elliptic.CurveParams) *big.Int {
	p := params.P
	for i := int64(0); i < 1000; i++ {
		x := big.NewInt(i)
		rhs := new(big.Int).Exp(x, big.NewInt(3), p)
		rhs.Sub(rhs, new(big.Int).Mul(big.NewInt(3), x))
		rhs.Add(rhs, params.B)
		rhs.Mod(rhs, p)
		if big.Jacobi(rhs, p) == -1 {
			return x
		}
	}
	t.Fatal("no non-residue found")
	return nil
}

// Both square roots (prefix 0x02 and 0x03) of a valid x are valid keys, the
// two points are negatives of each other, so ES (their x-coordinate times
// our scalar) is the same.
func TestTC42_BothParitiesValid(t *testing.T) {
	for _, id := range nistIDs {
		g := nistOf(id)
		a, _ := g.GenerateKey(nil)
		b, _ := g.GenerateKey(nil)
		w := b.AppendPublic(nil)
		flipped := append([]byte(nil), w...)
		flipped[2] ^= 0x01
		p1, _, err1 := g.ReadPublic(w)
		p2, _, err2 := g.ReadPublic(flipped)
		if err1 != nil || err2 != nil {
			t.Fatalf("%v: %v %v", id, err1, err2)
		}
		e1, err1 := a.ECDH(p1)
		e2, err2 := a.ECDH(p2)
		if err1 != nil || err2 != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("%v: ES %x / %x (%v %v)", id, e1, e2, err1, err2)
		}
	}
}

// ES for the NIST curves is the fixed-length x-coordinate (Decision in
// nist.go): 32 bytes for P-256, 66 for P-521, leading zeros kept, and both
// sides agree.
func TestNISTSecretLength(t *testing.T) {
	for _, id := range nistIDs {
		g := nistOf(id)
		for i := 0; i < 10; i++ {
			a, _ := g.GenerateKey(nil)
			b, _ := g.GenerateKey(nil)
			ea, err := a.ECDH(b.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			eb, err := b.ECDH(a.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if len(ea) != g.SecretLen() || !bytes.Equal(ea, eb) {
				t.Fatalf("%v: ES %x / %x", id, ea, eb)
			}
		}
	}
}
