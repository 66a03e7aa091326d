package kex

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// fuzzReadPublic checks that ReadPublic never panics, that success uses
// exactly PublicLen bytes, that accepted NIST keys re-encode to the input
// (only canonical compressed points pass) and that ECDH with an accepted key
// either succeeds with a SecretLen ES or reports an error.
func fuzzReadPublic(f *testing.F, id ID) {
	g, _ := Lookup(id)
	seeds := [][]byte{nil, {0}, make([]byte, g.PublicLen())}
	for i := 0; i < 3; i++ {
		k, _ := g.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 128)))
		w := k.AppendPublic(nil)
		seeds = append(seeds, w, append(w, 0xde, 0xad), w[:len(w)-1])
	}
	if n, ok := g.(nistGroup); ok {
		seeds = append(seeds,
			binary.BigEndian.AppendUint16(nil, uint16(1+2*n.feLen)),
			append(binary.BigEndian.AppendUint16(nil, uint16(n.compressedLen())), 0x04),
			append(binary.BigEndian.AppendUint16(nil, uint16(n.compressedLen())), bytes.Repeat([]byte{0xff}, n.compressedLen())...))
	}
	for _, s := range seeds {
		f.Add(s)
	}
	local, _ := g.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{0x42}, 128)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := g.ReadPublic(b)
		if err != nil {
			if p != nil || n != 0 {
				t.Fatalf("error %v with key %v, n %d", err, p, n)
			}
			return
		}
		if n != g.PublicLen() || n > len(b) {
			t.Fatalf("n = %d", n)
		}
		if _, nist := g.(nistGroup); nist && !bytes.Equal(p.Bytes(), b[:n]) {
			t.Fatalf("accepted non-canonical encoding %x -> %x", b[:n], p.Bytes())
		}
		es, err := local.ECDH(p)
		if err == nil && len(es) != g.SecretLen() {
			t.Fatalf("ES %d bytes", len(es))
		}
	})
}

func FuzzReadPublicP256(f *testing.F)   { fuzzReadPublic(f, P256) }
func FuzzReadPublicP521(f *testing.F)   { fuzzReadPublic(f, P521) }
func FuzzReadPublicX25519(f *testing.F) { fuzzReadPublic(f, X25519) }
func FuzzReadPublicX448(f *testing.F)   { fuzzReadPublic(f, X448) }
