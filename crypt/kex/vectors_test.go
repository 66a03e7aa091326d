package kex

import (
	"bytes"
	"encoding/binary"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
	"testing"
)

// Known-answer vectors from ../testdata/gen_vectors.py, computed with
// python3-cryptography, independently of this package.

type (
	kexVector       = kat.Kex
	handshakeVector = kat.Handshake
)

func loadVectors(t testing.TB) ([]kexVector, []handshakeVector) {
	v := kat.Load(t)
	return v.Kex, v.Handshakes
}

// checkPair derives both key pairs from the vector's private bytes, checks
// their wire encodings, and checks ES from both sides.
func checkPair(t *testing.T, id ID, privA, privB, pubA, pubB, es []byte) {
	t.Helper()
	a := keyFrom(t, id, privA)
	b := keyFrom(t, id, privB)
	if got := a.AppendPublic(nil); !bytes.Equal(got, pubA) {
		t.Errorf("pub_a %x, want %x", got, pubA)
	}
	if got := b.AppendPublic(nil); !bytes.Equal(got, pubB) {
		t.Errorf("pub_b %x, want %x", got, pubB)
	}
	ea, err := a.ECDH(pubFrom(t, id, pubB))
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.ECDH(pubFrom(t, id, pubA))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ea, es) || !bytes.Equal(eb, es) {
		t.Errorf("ES: A %x, B %x, want %x", ea, eb, es)
	}
}

// TC-42, TC-43 (positive side), TC-44: wire encodings and ES of all four
// TEPs match the independent implementation.
func TestVectorsKex(t *testing.T) {
	kex, _ := loadVectors(t)
	seen := map[ID]bool{}
	for _, v := range kex {
		id := ID(v.TEP)
		seen[id] = true
		t.Run(id.String(), func(t *testing.T) {
			checkPair(t, id, v.PrivA, v.PrivB, v.PubA, v.PubB, v.ES)
		})
	}
	for _, id := range IDs() {
		if !seen[id] {
			t.Errorf("no kex vector for %v", id)
		}
	}
}

// The public keys inside the handshake vectors' Init1/Init2 (RFC 8548 §4.1:
// Pub_A ends Init1, Pub_B ends Init2) come from priv_a/priv_b and agree on ES.
func TestVectorsHandshakeKeys(t *testing.T) {
	_, hs := loadVectors(t)
	for _, v := range hs {
		t.Run(v.Name, func(t *testing.T) {
			id := ID(v.TEP)
			g, ok := Lookup(id)
			if !ok {
				t.Fatalf("TEP %#x", v.TEP)
			}
			if len(v.Init1) < 8 || int(binary.BigEndian.Uint32(v.Init1[4:])) != len(v.Init1) {
				t.Fatalf("init1 message_len")
			}
			pubA := v.Init1[len(v.Init1)-g.PublicLen():]
			pubB := v.Init2[len(v.Init2)-g.PublicLen():]
			checkPair(t, id, v.PrivA, v.PrivB, pubA, pubB, v.ES)
		})
	}
}
