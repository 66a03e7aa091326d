package kex

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// keyFrom makes the private key whose scalar is b (GenerateKey consumes
// exactly these bytes from its reader).
func keyFrom(t testing.TB, id ID, b []byte) *PrivateKey {
	t.Helper()
	g, _ := Lookup(id)
	r := bytes.NewReader(b)
	k, err := g.GenerateKey(r)
	if err != nil {
		t.Fatalf("%v GenerateKey: %v", id, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%v GenerateKey left %d of %d bytes unread", id, r.Len(), len(b))
	}
	return k
}

func pubFrom(t testing.TB, id ID, b []byte) *PublicKey {
	t.Helper()
	g, _ := Lookup(id)
	p, n, err := g.ReadPublic(b)
	if err != nil {
		t.Fatalf("%v ReadPublic(%x): %v", id, b, err)
	}
	if n != len(b) {
		t.Fatalf("%v ReadPublic used %d of %d bytes", id, n, len(b))
	}
	return p
}

func scalarMult(t testing.TB, id ID, k, u []byte) []byte {
	t.Helper()
	out, err := keyFrom(t, id, k).ECDH(pubFrom(t, id, u))
	if err != nil {
		t.Fatalf("%v(%x, %x): %v", id, k, u, err)
	}
	return out
}

// RFC 7748 §5.2 test vectors for X25519 and X448 (single scalar
// multiplications, including a u-coordinate with the top bit set, which
// must be masked).
func TestRFC7748Section5_2(t *testing.T) {
	tests := []struct {
		id         ID
		k, u, want string
	}{
		{X25519,
			"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{X25519,
			"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
		{X448,
			"3d262fddf9ec8e88495266fea19a34d28882acef045104d0d1aae121700a779c984c24f8cdd78fbff44943eba368f54b29259a4f1c600ad3",
			"06fce640fa3487bfda5f6cf2d5263f8aad88334cbd07437f020f08f9814dc031ddbdc38c19c6da2583fa5429db94ada18aa7a7fb4ef8a086",
			"ce3e4ff95a60dc6697da1db1d85e6afbdf79b50a2412d7546d5f239fe14fbaadeb445fc66a01b0779d98223961111e21766282f73dd96b6f"},
		{X448,
			"203d494428b8399352665ddca42f9de8fef600908e0d461cb021f8c538345dd77c3e4806e25f46d3315c44e0a5b4371282dd2c8d5be3095f",
			"0fbcc2f993cd56d3305b0b7d9e55d4c1a8fb5dbb52f8e9a1e9b6201b165d015894e56c4d3570bee52fe205e28a78b91cdfbde71ce8d157db",
			"884a02576239ff7a2f2f63b2db6a9ff37047ac13568e1e30fe63c4a7ad1b3ee3a5700df34321d62077e63633c575c1c954514e99da7c179d"},
	}
	for i, tt := range tests {
		got := scalarMult(t, tt.id, unhex(t, tt.k), unhex(t, tt.u))
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("%d %v: got %x want %s", i, tt.id, got, tt.want)
		}
	}
}

// RFC 7748 §5.2 iterated test: k = u = basepoint, then (k, u) = (f(k, u), k),
// checked after 1 and 1,000 iterations (the 1,000,000 case is too slow for a
// unit test).
func TestRFC7748Section5_2Iterated(t *testing.T) {
	tests := []struct {
		id                ID
		base              byte
		after1, after1000 string
	}{
		{X25519, 9,
			"422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
			"684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"},
		{X448, 5,
			"3f482c8a9f19b01e6c46ee9711d9dc14fd4bf67af30765c2ae2b846a4d23a8cd0db897086239492caf350b51f833868b9bc2b3bca9cf4113",
			"aa3b4749d55b9daf1e5b00288826c467274ce3ebbdd5c17b975e09d4af6c67cf10d087202db88286e2b79fceea3ec353ef54faa26e219f38"},
	}
	for _, tt := range tests {
		g, _ := Lookup(tt.id)
		k := make([]byte, g.SecretLen())
		k[0] = tt.base
		u := append([]byte(nil), k...)
		for i := 1; i <= 1000; i++ {
			k, u = scalarMult(t, tt.id, k, u), k
			if i == 1 && hex.EncodeToString(k) != tt.after1 {
				t.Errorf("%v after 1: %x", tt.id, k)
			}
		}
		if hex.EncodeToString(k) != tt.after1000 {
			t.Errorf("%v after 1000: %x", tt.id, k)
		}
	}
}

// RFC 7748 §6.1 (X25519) and §6.2 (X448) Diffie-Hellman: public keys from
// the private keys, and the shared secret computed by both sides.
func TestRFC7748Section6(t *testing.T) {
	tests := []struct {
		id                          ID
		privA, pubA, privB, pubB, k string
	}{
		{X25519,
			"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
			"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"},
		{X448,
			"9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b",
			"9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0",
			"1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d",
			"3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609",
			"07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24403085d59a449a5037514a879d"},
	}
	for _, tt := range tests {
		a := keyFrom(t, tt.id, unhex(t, tt.privA))
		b := keyFrom(t, tt.id, unhex(t, tt.privB))
		if got := hex.EncodeToString(a.AppendPublic(nil)); got != tt.pubA {
			t.Errorf("%v pub A = %s", tt.id, got)
		}
		if got := hex.EncodeToString(b.AppendPublic(nil)); got != tt.pubB {
			t.Errorf("%v pub B = %s", tt.id, got)
		}
		ka, err := a.ECDH(pubFrom(t, tt.id, unhex(t, tt.pubB)))
		if err != nil {
			t.Fatal(err)
		}
		kb, err := b.ECDH(a.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(ka) != tt.k || !bytes.Equal(ka, kb) {
			t.Errorf("%v K: A %x, B %x, want %s", tt.id, ka, kb, tt.k)
		}
	}
}

// TC-43: a low-order peer key gives the all-zero shared secret, which must
// be rejected with ErrZeroSecret (RFC 7748 §6, RFC 8548 §5). Points: 0, 1,
// the two order-8 points, and p-1, p, p+1 (non-canonical encodings of order
// 2, 1 and 4 points) for X25519; 0, 1, p-1, p, p+1 for X448.
func TestTC43_ZeroSharedSecret(t *testing.T) {
	x25519Low := []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		// The same with the (masked) top bit set.
		"0000000000000000000000000000000000000000000000000000000000000080",
		"0100000000000000000000000000000000000000000000000000000000000080",
	}
	// p448 = 2^448 - 2^224 - 1, little-endian.
	x448Low := []string{
		hex.EncodeToString(make([]byte, 56)),
		"01" + hex.EncodeToString(make([]byte, 55)),
		// p-1
		"fe" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 27)) + "fe" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 27)),
		// p
		"ff" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 27)) + "fe" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 27)),
		// p+1
		"00" + hex.EncodeToString(bytes.Repeat([]byte{0x00}, 27)) + "ff" + hex.EncodeToString(bytes.Repeat([]byte{0xff}, 27)),
	}
	cases := map[ID][]string{X25519: x25519Low, X448: x448Low}
	for id, pts := range cases {
		g, _ := Lookup(id)
		k, err := g.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range pts {
			p := pubFrom(t, id, unhex(t, s))
			es, err := k.ECDH(p)
			if !errors.Is(err, ErrZeroSecret) {
				t.Errorf("%v peer %s: ES %x, err %v; want ErrZeroSecret", id, s, es, err)
			}
			if es != nil {
				t.Errorf("%v peer %s: returned ES with error", id, s)
			}
		}
	}
}
