package kex

import "testing"

// BenchmarkECDH measures ES computation (parsing the peer key included, as
// the handshake does it).
func BenchmarkECDH(b *testing.B) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		b.Run(id.String(), func(b *testing.B) {
			a, _ := g.GenerateKey(nil)
			peer, _ := g.GenerateKey(nil)
			wire := peer.AppendPublic(nil)
			b.ReportAllocs()
			for b.Loop() {
				p, _, err := g.ReadPublic(wire)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.ECDH(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerateKey measures ephemeral key generation including the
// public key's wire encoding.
func BenchmarkGenerateKey(b *testing.B) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		b.Run(id.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k, err := g.GenerateKey(nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = k.AppendPublic(nil)
			}
		})
	}
}
