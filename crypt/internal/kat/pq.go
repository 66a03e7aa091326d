package kat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// PQKex is one X-Wing exchange of the hybrid TEP x25519mlkem768: A's
// 32-byte seed (what GenerateKey reads), B's 64-byte encapsulation seed
// m || ek_X, A's encapsulation key, B's ciphertext, both component secrets
// and ES.
type PQKex struct {
	Name     string   `json:"name"`
	TEP      byte     `json:"tep"`
	SeedA    HexBytes `json:"seed_a"`
	EseedB   HexBytes `json:"eseed_b"`
	PubA     HexBytes `json:"pub_a"`
	CtB      HexBytes `json:"ct_b"`
	SSMLKEM  HexBytes `json:"ss_mlkem"`
	SSX25519 HexBytes `json:"ss_x25519"`
	ES       HexBytes `json:"es"`
}

// PQFile is crypt/testdata/pq_vectors.json, written by gen_pq_vectors.mjs
// (Node with the @noble packages, independent of the Go code). Its
// handshakes have the fields of vectors.json's; PrivA is A's seed and PrivB
// B's encapsulation seed.
type PQFile struct {
	Kex []PQKex `json:"kex"`
	// BadPublicKeys are Pub_A values whose ML-KEM part fails FIPS 203's
	// modulus check.
	BadPublicKeys []HexBytes  `json:"bad_public_keys"`
	Handshakes    []Handshake `json:"handshakes"`
}

// LoadPQ reads and parses pq_vectors.json, failing tb if it is missing,
// malformed or incomplete.
func LoadPQ(tb testing.TB) *PQFile {
	tb.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("kat: cannot locate pq_vectors.json")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "testdata", "pq_vectors.json")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("kat: %v", err)
	}
	var f PQFile
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("kat: %s: %v", path, err)
	}
	if len(f.Kex) == 0 || len(f.BadPublicKeys) == 0 || len(f.Handshakes) == 0 {
		tb.Fatalf("kat: %s: %d kex, %d bad keys, %d handshakes", path, len(f.Kex), len(f.BadPublicKeys), len(f.Handshakes))
	}
	return &f
}
