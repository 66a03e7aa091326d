package kex

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TC-44: all four TEPs are implemented (X25519 REQUIRED) with the lengths of
// RFC 8548 §5.
func TestTC44_Groups(t *testing.T) {
	tests := []struct {
		id                ID
		name              string
		pubLen, secretLen int
	}{
		{P256, "p256", 35, 32},
		{P521, "p521", 69, 66},
		{X25519, "x25519", 32, 32},
		{X448, "x448", 56, 56},
	}
	for _, tt := range tests {
		g, ok := Lookup(tt.id)
		if !ok {
			t.Fatalf("Lookup(%#x) failed", byte(tt.id))
		}
		if g.ID() != tt.id || tt.id.String() != tt.name || g.PublicLen() != tt.pubLen || g.SecretLen() != tt.secretLen {
			t.Errorf("%s: id %v pub %d secret %d", tt.name, g.ID(), g.PublicLen(), g.SecretLen())
		}
		k, err := g.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if k.Group().ID() != tt.id || len(k.AppendPublic(nil)) != tt.pubLen {
			t.Errorf("%s: key group %v, public %d bytes", tt.name, k.Group().ID(), len(k.AppendPublic(nil)))
		}
	}
	if got := IDs(); len(got) != 4 || got[len(got)-1] != X25519 {
		t.Errorf("IDs() = %v; want four, X25519 most preferred", got)
	}
	// 0x20 is the experimental hybrid: found, but not a default TEP.
	for _, id := range []ID{0, 0x1f, 0x25, 0xa0, 0xa3, 0xff} {
		if g, ok := Lookup(id); ok || g != nil {
			t.Errorf("Lookup(%#x) found %v", byte(id), g)
		}
	}
	if got := ID(0x25).String(); got != "tep-0x25" {
		t.Errorf("String = %q", got)
	}
}

// Every group agrees with itself: A and B compute the same ES through the
// wire encoding.
func TestAgreement(t *testing.T) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		for i := 0; i < 5; i++ {
			a, _ := g.GenerateKey(nil)
			b, _ := g.GenerateKey(nil)
			pa, _, err := g.ReadPublic(a.AppendPublic(nil))
			if err != nil {
				t.Fatal(err)
			}
			pb, _, err := g.ReadPublic(b.AppendPublic(nil))
			if err != nil {
				t.Fatal(err)
			}
			ea, errA := a.ECDH(pb)
			eb, errB := b.ECDH(pa)
			if errA != nil || errB != nil || !bytes.Equal(ea, eb) || len(ea) != g.SecretLen() {
				t.Fatalf("%v: %x (%v) vs %x (%v)", id, ea, errA, eb, errB)
			}
		}
	}
}

// TC-48: keys come from crypto/rand by default (two keys differ); an
// injected reader is honoured byte for byte (deterministic keys); a failing
// reader is an error, not a panic.
func TestTC48_Randomness(t *testing.T) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		a, err1 := g.GenerateKey(nil)
		b, err2 := g.GenerateKey(nil)
		if err1 != nil || err2 != nil || bytes.Equal(a.AppendPublic(nil), b.AppendPublic(nil)) {
			t.Errorf("%v: default randomness gave equal keys (%v %v)", id, err1, err2)
		}
		seed := bytes.Repeat([]byte{0x17}, 128)
		c, _ := g.GenerateKey(bytes.NewReader(seed))
		d, _ := g.GenerateKey(bytes.NewReader(seed))
		if !bytes.Equal(c.AppendPublic(nil), d.AppendPublic(nil)) {
			t.Errorf("%v: same injected bytes gave different keys", id)
		}
		for _, n := range []int{0, 1, g.SecretLen() - 1} {
			_, err := g.GenerateKey(bytes.NewReader(seed[:n]))
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Errorf("%v: %d-byte reader: err %v", id, n, err)
			}
		}
		if _, err := g.GenerateKey(errReader{}); err == nil || !strings.Contains(err.Error(), "broken") {
			t.Errorf("%v: failing reader: %v", id, err)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken reader") }

// NIST scalars are drawn by rejection sampling: out-of-range candidates
// (0, >= n) are skipped, a reader that never yields a valid scalar is an
// error after a bounded number of tries.
func TestNISTScalarRejection(t *testing.T) {
	for _, id := range nistIDs {
		g := nistOf(id)
		valid := bytes.Repeat([]byte{0x01}, g.feLen)
		in := append(make([]byte, g.feLen), bytes.Repeat([]byte{0xff}, g.feLen)...) // 0, then >= n
		in = append(in, valid...)
		r := bytes.NewReader(in)
		k, err := g.GenerateKey(r)
		if err != nil || r.Len() != 0 {
			t.Fatalf("%v: err %v, %d bytes left", id, err, r.Len())
		}
		want, _ := g.GenerateKey(bytes.NewReader(valid))
		if !bytes.Equal(k.AppendPublic(nil), want.AppendPublic(nil)) {
			t.Fatalf("%v: rejection sampling picked the wrong candidate", id)
		}
		allOnes := bytes.Repeat([]byte{0xff}, g.feLen*maxScalarTries)
		if _, err := g.GenerateKey(bytes.NewReader(allOnes)); err == nil || !strings.Contains(err.Error(), "no valid scalar") {
			t.Fatalf("%v: all-ones reader: %v", id, err)
		}
	}
}

// TC-7 (kex part): ECDH refuses nil and foreign-group keys with an error.
func TestECDHWrongInputs(t *testing.T) {
	x, _ := Lookup(X25519)
	p, _ := Lookup(P256)
	kx, _ := x.GenerateKey(nil)
	kp, _ := p.GenerateKey(nil)
	if _, err := kx.ECDH(nil); err == nil {
		t.Error("nil peer accepted")
	}
	if _, err := kx.ECDH(kp.PublicKey()); err == nil || !strings.Contains(err.Error(), "p256 public key") {
		t.Errorf("foreign group: %v", err)
	}
	if _, err := kp.ECDH(kx.PublicKey()); err == nil {
		t.Error("foreign group accepted")
	}
	// Short raw keys are rejected by the X curves' ReadPublic.
	for _, id := range []ID{X25519, X448} {
		g, _ := Lookup(id)
		_, _, err := g.ReadPublic(make([]byte, g.PublicLen()-1))
		var ke *KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), "short") {
			t.Errorf("%v short key: %v", id, err)
		}
	}
}
