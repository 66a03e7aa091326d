package kex

import (
	"bytes"
	"crypto/hpke"
	"crypto/mlkem"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/tcpcryptd/tcpcryptd/crypt/internal/cpumeter"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
)

func hybrid(t testing.TB) Group {
	t.Helper()
	g, ok := Lookup(X25519MLKEM768)
	if !ok {
		t.Fatal("no x25519mlkem768 group")
	}
	return g
}

// TestHybridGroup: TEP 0x20 is found, named and sized, and is not a
// default TEP (off unless configured).
func TestHybridGroup(t *testing.T) {
	g := hybrid(t)
	if g.ID() != 0x20 || X25519MLKEM768.String() != "x25519mlkem768" ||
		g.PublicLen() != 1216 || g.ReplyLen() != 1120 || g.SecretLen() != 32 {
		t.Fatalf("id %v %q pub %d reply %d secret %d", g.ID(), X25519MLKEM768, g.PublicLen(), g.ReplyLen(), g.SecretLen())
	}
	for _, id := range IDs() {
		if id == X25519MLKEM768 {
			t.Fatal("x25519mlkem768 among the default TEPs")
		}
	}
	if all := AllIDs(); len(all) != len(IDs())+1 || all[len(all)-1] != X25519MLKEM768 {
		t.Fatalf("AllIDs() = %v", all)
	}
	for _, id := range IDs() {
		g, _ := Lookup(id)
		if g.ReplyLen() != g.PublicLen() {
			t.Errorf("%v: reply %d, public %d", id, g.ReplyLen(), g.PublicLen())
		}
	}
}

// TestHybridVectors: from the vectors' seeds, our encapsulation key,
// ciphertext and ES equal those of the independent Node implementation
// (crypt/testdata/pq_vectors.json), on both sides.
func TestHybridVectors(t *testing.T) {
	g := hybrid(t)
	for _, v := range kat.LoadPQ(t).Kex {
		t.Run(v.Name, func(t *testing.T) {
			a, err := g.GenerateKey(bytes.NewReader(v.SeedA))
			if err != nil {
				t.Fatal(err)
			}
			if got := a.AppendPublic(nil); !bytes.Equal(got, v.PubA) {
				t.Fatalf("pub_a = %x\nwant %x", got, []byte(v.PubA))
			}
			pub, n, err := g.ReadPublic(append(bytes.Clone(v.PubA), 0xee))
			if err != nil || n != len(v.PubA) || !bytes.Equal(pub.Bytes(), v.PubA) {
				t.Fatalf("ReadPublic: %v, n %d", err, n)
			}
			es, ct, err := NewPool(g, 0, bytes.NewReader(v.EseedB), nil).Encapsulate(pub)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, v.CtB) || !bytes.Equal(es, v.ES) {
				t.Fatalf("ct = %x\nwant %x\nes = %x, want %x", ct, []byte(v.CtB), es, []byte(v.ES))
			}
			reply, n, err := g.ReadReply(v.CtB)
			if err != nil || n != len(v.CtB) {
				t.Fatalf("ReadReply: %v, n %d", err, n)
			}
			es, err = a.Decapsulate(reply)
			if err != nil || !bytes.Equal(es, v.ES) {
				t.Fatalf("decapsulated %x, %v; want %x", es, err, []byte(v.ES))
			}
			// The same key from Go's own X-Wing (crypto/hpke's
			// MLKEM768-X25519), which expands the seed the same way.
			hk, err := hpke.MLKEM768X25519().NewPrivateKey(v.SeedA)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hk.PublicKey().Bytes(), v.PubA) {
				t.Fatal("crypto/hpke derives another public key from the seed")
			}
		})
	}
}

// TestHybridSystemRandomness: with crypto/rand both sides agree and every
// encapsulation differs (fresh randomness, never a reused ciphertext).
func TestHybridSystemRandomness(t *testing.T) {
	g := hybrid(t)
	p := NewPool(g, 0, nil, nil)
	a, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	pub := a.PublicKey()
	// Three encapsulations to one key: every ciphertext differs. A's key is
	// single-use (erased by its first decapsulation), so only the first
	// is decapsulated.
	var cts [][]byte
	var first []byte
	for i := range 3 {
		es, ct, err := p.Encapsulate(pub)
		if err != nil {
			t.Fatal(err)
		}
		for _, prev := range cts {
			if bytes.Equal(ct, prev) {
				t.Fatal("two encapsulations gave the same ciphertext")
			}
		}
		cts = append(cts, ct)
		if i == 0 {
			first = es
		}
	}
	reply, _, err := g.ReadReply(cts[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Decapsulate(reply)
	if err != nil || !bytes.Equal(got, first) || len(first) != g.SecretLen() {
		t.Fatalf("A %x (%v), B %x", got, err, first)
	}
	if _, err := a.Decapsulate(reply); err == nil {
		t.Fatal("a per-connection key decapsulated twice: it must be erased after use")
	}
}

// TestHybridBadPublicKeys: encapsulation keys failing FIPS 203's modulus
// check (from the vectors, refused by the Node implementation too) and
// short ones are rejected with a *KeyError.
func TestHybridBadPublicKeys(t *testing.T) {
	g := hybrid(t)
	bad := kat.LoadPQ(t).BadPublicKeys
	bad = append(bad, make([]byte, g.PublicLen()-1), nil)
	for i, b := range bad {
		p, n, err := g.ReadPublic(b)
		var ke *KeyError
		if err == nil || p != nil || n != 0 || !errors.As(err, &ke) || !errors.Is(err, ErrInvalidPublicKey) || errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("key %d: %v, %v, %d", i, err, p, n)
		}
	}
}

// TestHybridBadCiphertexts: a short ciphertext is rejected
// (ErrInvalidCiphertext); a low-order X25519 share on either side aborts
// with ErrZeroSecret; a forged ML-KEM ciphertext yields another ES
// (implicit rejection), never an error an attacker could observe.
func TestHybridBadCiphertexts(t *testing.T) {
	g := hybrid(t)
	v := kat.LoadPQ(t).Kex[0]
	for _, n := range []int{0, 1, g.ReplyLen() - 1} {
		_, _, err := g.ReadReply(make([]byte, n))
		if !errors.Is(err, ErrInvalidCiphertext) || errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	a, _ := g.GenerateKey(bytes.NewReader(v.SeedA))
	// ct_X of all zeros: a low-order point.
	lowCt := append(bytes.Clone(v.CtB[:mlkem.CiphertextSize768]), make([]byte, 32)...)
	reply, _, err := g.ReadReply(lowCt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Decapsulate(reply); !errors.Is(err, ErrZeroSecret) {
		t.Fatalf("low-order ct_X: %v", err)
	}
	// pk_X of all zeros.
	lowPk := append(bytes.Clone(v.PubA[:mlkem.EncapsulationKeySize768]), make([]byte, 32)...)
	pub, _, err := g.ReadPublic(lowPk)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewPool(g, 0, nil, nil).Encapsulate(pub); !errors.Is(err, ErrZeroSecret) {
		t.Fatalf("low-order pk_X: %v", err)
	}
	forged := bytes.Clone(v.CtB)
	forged[100] ^= 1
	reply, _, _ = g.ReadReply(forged)
	es, err := a.Decapsulate(reply)
	if err != nil || len(es) != 32 || bytes.Equal(es, v.ES) {
		t.Fatalf("forged ciphertext: %x, %v", es, err)
	}
}

// TestHybridMisuse: a ciphertext is not an encapsulation key and vice
// versa; keys of another group are refused; no randomness, no
// encapsulation (TC-48).
func TestHybridMisuse(t *testing.T) {
	g := hybrid(t)
	v := kat.LoadPQ(t).Kex[0]
	a, _ := g.GenerateKey(bytes.NewReader(v.SeedA))
	pub, _, _ := g.ReadPublic(v.PubA)
	ct, _, _ := g.ReadReply(v.CtB)
	if _, err := a.Decapsulate(pub); err == nil {
		t.Error("decapsulated an encapsulation key")
	}
	if _, _, err := NewPool(g, 0, nil, nil).Encapsulate(ct); err == nil {
		t.Error("encapsulated to a ciphertext")
	}
	xk, _ := x25519Group{}.GenerateKey(nil)
	if _, _, err := NewPool(g, 0, nil, nil).Encapsulate(xk.PublicKey()); err == nil {
		t.Error("encapsulated to an X25519 key")
	}
	if _, _, err := NewPool(g, 0, nil, nil).Encapsulate(nil); err == nil {
		t.Error("encapsulated to nil")
	}
	short := io.MultiReader(bytes.NewReader(make([]byte, 10)), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, _, err := NewPool(g, 0, short, nil).Encapsulate(pub); !errors.Is(err, ErrRandomness) {
		t.Errorf("no randomness: %v", err)
	}
	if _, err := g.GenerateKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("key from 31 bytes")
	}
	// A Diffie-Hellman pool without randomness reports it the same way.
	x := x25519Group{}
	if _, _, err := NewPool(x, 0, bytes.NewReader(nil), nil).Encapsulate(xk.PublicKey()); !errors.Is(err, ErrRandomness) {
		t.Errorf("x25519, no randomness: %v", err)
	}
}

// TestDHEncapsulate: for the Diffie-Hellman TEPs, Encapsulate is B's ECDH
// with its own ephemeral public key as the reply.
func TestDHEncapsulate(t *testing.T) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		a, _ := g.GenerateKey(nil)
		es, reply, err := NewPool(g, 0, nil, nil).Encapsulate(a.PublicKey())
		if err != nil || len(reply) != g.ReplyLen() {
			t.Fatalf("%v: %v, reply %d bytes", id, err, len(reply))
		}
		pb, _, err := g.ReadReply(reply)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Decapsulate(pb)
		if err != nil || !bytes.Equal(got, es) {
			t.Fatalf("%v: A %x (%v), B %x", id, got, err, es)
		}
	}
}

// FuzzReadPublicX25519MLKEM768: ReadPublic never panics, accepts only
// PublicLen bytes whose ML-KEM part passes the modulus check, and an
// accepted key can be encapsulated to (or fails with ErrZeroSecret).
func FuzzReadPublicX25519MLKEM768(f *testing.F) {
	g := hybrid(f)
	v := kat.LoadPQ(f)
	for _, k := range v.Kex {
		f.Add([]byte(k.PubA))
		f.Add([]byte(k.PubA[:len(k.PubA)-1]))
	}
	for _, b := range v.BadPublicKeys {
		f.Add([]byte(b))
	}
	f.Add([]byte(nil))
	f.Add(make([]byte, g.PublicLen()))
	f.Add(bytes.Repeat([]byte{0xff}, g.PublicLen()))
	p := NewPool(g, 0, nil, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, n, err := g.ReadPublic(b)
		if err != nil {
			if pub != nil || n != 0 || !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("error %v with key %v, n %d", err, pub, n)
			}
			return
		}
		if n != g.PublicLen() || !bytes.Equal(pub.Bytes(), b[:n]) {
			t.Fatalf("n = %d", n)
		}
		if _, err := mlkem.NewEncapsulationKey768(b[:mlkem.EncapsulationKeySize768]); err != nil {
			t.Fatalf("accepted a key crypto/mlkem refuses: %v", err)
		}
		es, ct, err := p.Encapsulate(pub)
		if err != nil {
			if !errors.Is(err, ErrZeroSecret) {
				t.Fatal(err)
			}
			return
		}
		if len(es) != g.SecretLen() || len(ct) != g.ReplyLen() {
			t.Fatalf("es %d, ct %d bytes", len(es), len(ct))
		}
	})
}

// FuzzReadReplyX25519MLKEM768: ReadReply never panics, accepts exactly
// ReplyLen bytes, and decapsulating an accepted ciphertext gives a 32-byte
// ES or ErrZeroSecret.
func FuzzReadReplyX25519MLKEM768(f *testing.F) {
	g := hybrid(f)
	v := kat.LoadPQ(f)
	for _, k := range v.Kex {
		f.Add([]byte(k.CtB))
		f.Add([]byte(k.CtB[:len(k.CtB)-1]))
		f.Add(append(bytes.Clone(k.CtB), 1, 2, 3))
	}
	f.Add([]byte(nil))
	f.Add(make([]byte, g.ReplyLen()))
	a, _ := g.GenerateKey(bytes.NewReader(v.Kex[0].SeedA))
	f.Fuzz(func(t *testing.T, b []byte) {
		ct, n, err := g.ReadReply(b)
		if err != nil {
			if ct != nil || n != 0 || !errors.Is(err, ErrInvalidCiphertext) {
				t.Fatalf("error %v with %v, n %d", err, ct, n)
			}
			return
		}
		if n != g.ReplyLen() || len(b) < n {
			t.Fatalf("n = %d", n)
		}
		es, err := a.Decapsulate(ct)
		if err != nil && !errors.Is(err, ErrZeroSecret) {
			t.Fatal(err)
		}
		if err == nil && len(es) != g.SecretLen() {
			t.Fatalf("ES %d bytes", len(es))
		}
	})
}

// BenchmarkKEM measures one side's public-key work per fresh handshake for
// X25519 and x25519mlkem768: A's key generation plus decapsulation, B's
// encapsulation (parsing the peer's value included, as the handshake
// does).
func BenchmarkKEM(b *testing.B) {
	for _, id := range []ID{X25519, X25519MLKEM768} {
		g, _ := Lookup(id)
		a, _ := g.GenerateKey(nil)
		pa := a.AppendPublic(nil)
		pool := NewPool(g, 0, nil, nil)
		pubA, _, _ := g.ReadPublic(pa)
		_, reply, _ := pool.Encapsulate(pubA)
		b.Run(id.String()+"/A", func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpumeter.Start()
			defer cpu.Report(b)
			for b.Loop() {
				k, err := g.GenerateKey(nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = k.AppendPublic(nil)
				r, _, err := g.ReadReply(reply)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.Decapsulate(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(id.String()+"/B", func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpumeter.Start()
			defer cpu.Report(b)
			for b.Loop() {
				p, _, err := g.ReadPublic(pa)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := pool.Encapsulate(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
