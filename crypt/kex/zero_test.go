package kex

import (
	"testing"
	"time"
)

// x448Scalar returns a copy of k's X448 private scalar.
func x448Scalar(t *testing.T, k *PrivateKey) [56]byte {
	t.Helper()
	p, ok := k.impl.(*x448Private)
	if !ok {
		t.Fatalf("not an X448 key: %T", k.impl)
	}
	return p.secret
}

func isZeroScalar(s [56]byte) bool { return s == [56]byte{} }

// x448Peer returns a fresh peer public key.
func x448Peer(t *testing.T) *PublicKey {
	t.Helper()
	g, _ := Lookup(X448)
	k, err := g.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// A per-connection X448 key (pool lifetime 0, the default) is erased right
// after its ECDH; its public key stays (host B sends Init2 after its
// ECDH), and a second ECDH fails instead of using a zero scalar.
func TestX448KeyErasedAfterUse(t *testing.T) {
	g, _ := Lookup(X448)
	k, err := NewPool(g, 0, nil, nil).Get()
	if err != nil {
		t.Fatal(err)
	}
	pub := string(k.AppendPublic(nil))
	if isZeroScalar(x448Scalar(t, k)) {
		t.Fatal("scalar zero before use")
	}
	if _, err := k.ECDH(x448Peer(t)); err != nil {
		t.Fatal(err)
	}
	if !isZeroScalar(x448Scalar(t, k)) {
		t.Fatal("X448 scalar still in memory after its ECDH")
	}
	if string(k.AppendPublic(nil)) != pub {
		t.Fatal("public key lost")
	}
	if _, err := k.ECDH(x448Peer(t)); err == nil {
		t.Fatal("ECDH with an erased key succeeded")
	}
	// A failed ECDH (low-order peer key) uses the key up as well.
	k2, _ := NewPool(g, 0, nil, nil).Get()
	low, _, _ := g.ReadPublic(make([]byte, 56))
	if _, err := k2.ECDH(low); err == nil {
		t.Fatal("low-order key accepted")
	}
	if !isZeroScalar(x448Scalar(t, k2)) {
		t.Fatal("scalar kept after a failed ECDH")
	}
}

// A shared X448 key (pool lifetime > 0) is erased once its pool has
// replaced it and the last handshake holding it has run its ECDH, not
// before.
func TestX448SharedKeyErasedWhenRetired(t *testing.T) {
	g, _ := Lookup(X448)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := NewPool(g, time.Minute, nil, clk.now)
	k1, _ := p.Get()
	if _, err := k1.ECDH(x448Peer(t)); err != nil {
		t.Fatal(err)
	}
	held, _ := p.Get() // a handshake waiting for its peer's Init message
	if held != k1 {
		t.Fatal("key not shared")
	}
	if isZeroScalar(x448Scalar(t, k1)) {
		t.Fatal("shared key erased while the pool still hands it out")
	}
	clk.add(time.Minute)
	k2, _ := p.Get()
	if k2 == k1 {
		t.Fatal("key not replaced")
	}
	if isZeroScalar(x448Scalar(t, k1)) {
		t.Fatal("retired key erased while a handshake still holds it")
	}
	if _, err := held.ECDH(x448Peer(t)); err != nil {
		t.Fatalf("the holder's ECDH: %v", err)
	}
	if !isZeroScalar(x448Scalar(t, k1)) {
		t.Fatal("retired key not erased after its last holder's ECDH")
	}
	// Retired with no holder: erased at once.
	if _, err := k2.ECDH(x448Peer(t)); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute)
	p.Get()
	if !isZeroScalar(x448Scalar(t, k2)) {
		t.Fatal("retired key without holders not erased")
	}
}
