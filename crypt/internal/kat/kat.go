// Package kat loads the known-answer vectors of crypt/testdata/vectors.json
// for the crypt packages' tests. The vectors come from gen_vectors.py, an
// implementation independent of the Go code (python3-cryptography and an
// hmac-based HKDF); see crypt/testdata/README.md.
//
// Cipher IDs stay plain uint16 here so that crypt/schedule's own tests can
// use this package without an import cycle.
package kat

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// HexBytes is a byte string written as lowercase hex in the JSON file.
type HexBytes []byte

// UnmarshalJSON implements json.Unmarshaler.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

// Kex is one key agreement: both private keys as the TEP's GenerateKey
// reads them, their wire encodings, and the shared secret ES.
type Kex struct {
	TEP   byte     `json:"tep"`
	PrivA HexBytes `json:"priv_a"`
	PrivB HexBytes `json:"priv_b"`
	PubA  HexBytes `json:"pub_a"`
	PubB  HexBytes `json:"pub_b"`
	ES    HexBytes `json:"es"`
}

// Handshake is a fresh key exchange with its whole key schedule, and one
// session resumed from it.
type Handshake struct {
	Name         string   `json:"name"`
	TEP          byte     `json:"tep"`
	AEADsOffered []uint16 `json:"aeads_offered"`
	AEAD         uint16   `json:"aead"`
	Transcript   HexBytes `json:"transcript"`
	PrivA        HexBytes `json:"priv_a"`
	PrivB        HexBytes `json:"priv_b"`
	NA           HexBytes `json:"n_a"`
	NB           HexBytes `json:"n_b"`
	Init1        HexBytes `json:"init1"`
	Init2        HexBytes `json:"init2"`
	ES           HexBytes `json:"es"`
	SS0          HexBytes `json:"ss0"`
	SessionID    HexBytes `json:"session_id"`
	MK0          HexBytes `json:"mk0"`
	MK1          HexBytes `json:"mk1"`
	KAB0         HexBytes `json:"k_ab0"`
	KBA0         HexBytes `json:"k_ba0"`
	KAB1         HexBytes `json:"k_ab1"`
	KBA1         HexBytes `json:"k_ba1"`
	Resume0      HexBytes `json:"resume0"`
	SS1          HexBytes `json:"ss1"`
	Resume1      HexBytes `json:"resume1"`
	Resumed      struct {
		Index     uint64   `json:"index"`
		TEPByte   byte     `json:"tep_byte"`
		NonceA    HexBytes `json:"nonce_a"`
		NonceB    HexBytes `json:"nonce_b"`
		SessionID HexBytes `json:"session_id"`
		MK0       HexBytes `json:"mk0"`
		KAB0      HexBytes `json:"k_ab0"`
		KBA0      HexBytes `json:"k_ba0"`
	} `json:"resumed"`
}

// Frame is one encryption frame: the traffic key and stream offset it was
// sealed under, its fields, and the bytes on the wire.
type Frame struct {
	AEAD    uint16   `json:"aead"`
	Key     HexBytes `json:"key"`
	NR      HexBytes `json:"nr"`
	Offset  uint64   `json:"offset"`
	Control byte     `json:"control"`
	Flags   byte     `json:"flags"`
	Urgent  *uint16  `json:"urgent"`
	Data    HexBytes `json:"data"`
	Wire    HexBytes `json:"wire"`
}

// File is the whole vectors file.
type File struct {
	Kex        []Kex       `json:"kex"`
	Handshakes []Handshake `json:"handshakes"`
	Frames     []Frame     `json:"frames"`
}

// Load reads and parses vectors.json, failing tb if it is missing,
// malformed or incomplete (a key agreement per TEP, handshakes, and the
// frames the generator writes).
func Load(tb testing.TB) *File {
	tb.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("kat: cannot locate vectors.json")
	}
	path := filepath.Join(filepath.Dir(self), "..", "..", "testdata", "vectors.json")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("kat: %v", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("kat: %s: %v", path, err)
	}
	if len(f.Kex) != 4 || len(f.Handshakes) == 0 || len(f.Frames) < 9 {
		tb.Fatalf("kat: %s: %d kex, %d handshakes, %d frames", path, len(f.Kex), len(f.Handshakes), len(f.Frames))
	}
	return &f
}
