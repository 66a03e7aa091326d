package schedule

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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

// RFC 5869 Appendix A test cases 1 and 3 (SHA-256): Extract takes the salt
// first, CPRF is HKDF-Expand with CONST as info.
func TestHKDFRFC5869(t *testing.T) {
	tests := []struct {
		name, ikm, salt, info, prk, okm string
	}{
		{
			name: "A.1",
			ikm:  "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
			salt: "000102030405060708090a0b0c",
			info: "f0f1f2f3f4f5f6f7f8f9",
			prk:  "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
			okm:  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
		},
		{
			name: "A.3",
			ikm:  "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
			salt: "",
			info: "",
			prk:  "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
			okm:  "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prk := Extract(unhex(t, tt.salt), unhex(t, tt.ikm))
			if got := hex.EncodeToString(prk[:]); got != tt.prk {
				t.Errorf("Extract = %s, want %s", got, tt.prk)
			}
			okm := unhex(t, tt.okm)
			if got := CPRF(prk[:], unhex(t, tt.info), len(okm)); !bytes.Equal(got, okm) {
				t.Errorf("CPRF = %x, want %x", got, okm)
			}
			if got := expandHMAC(prk[:], unhex(t, tt.info), len(okm)); !bytes.Equal(got, okm) {
				t.Errorf("expandHMAC = %x, want %x", got, okm)
			}
		})
	}
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// TC-8: the derivations spelled out as single HMAC calls (docs/test-vectors.md, "Conventions"),
// an independent restatement of RFC 8548 §3.1 Figure 1 with K_LEN = 32.
func TestTC8_HMACInputsSpelledOut(t *testing.T) {
	ss := SessionSecretFromBytes(bytes.Repeat([]byte{0x5a}, KLen), 3)
	sb := ss.Bytes()
	sn := unhex(t, "0102030405060708a1a2a3")
	one := []byte{0x01}

	checkHex(t, "ss[i+1]", ss.Next().Bytes(), hmacSHA256(sb, []byte{0x01, 0x01}))
	checkHex(t, "mk[0] fresh", ss.MasterKey(nil).Bytes(), hmacSHA256(sb, []byte{0x03, 0x01}))
	checkHex(t, "mk[0] resumed", ss.MasterKey(sn).Bytes(), hmacSHA256(sb, []byte{0x03}, sn, one))
	checkHex(t, "session id fresh", ss.SessionID(0x23, nil), append([]byte{0x23}, hmacSHA256(sb, []byte{0x02, 0x01})...))
	checkHex(t, "session id resumed", ss.SessionID(0xa3, sn), append([]byte{0xa3}, hmacSHA256(sb, []byte{0x02}, sn, one)...))
	rid := ss.ResumeID()
	checkHex(t, "resume[i]", rid[:], hmacSHA256(sb, []byte{0x06, 0x01})[:18])

	mk := ss.MasterKey(nil)
	mb := mk.Bytes()
	a128, _ := LookupAEAD(AES128GCM)
	k := mk.TrafficKey(a128, DirAB)
	checkHex(t, "k_ab 28 bytes", append(k.Key, k.NR...), hmacSHA256(mb, []byte{0x04, 0x01})[:28])
	a256, _ := LookupAEAD(AES256GCM)
	k = mk.TrafficKey(a256, DirBA)
	t1 := hmacSHA256(mb, []byte{0x05, 0x01})
	t2 := hmacSHA256(mb, t1, []byte{0x05, 0x02})
	checkHex(t, "k_ba 44 bytes", append(k.Key, k.NR...), append(t1, t2[:12]...))
	mk.Advance()
	checkHex(t, "mk[j+1]", mk.Bytes(), hmacSHA256(mb, []byte{0x03, 0x01}))
}

// Extract's salt is the HMAC key: swapping the arguments must change the
// result (the crypto/hkdf argument-order trap, docs/test-vectors.md).
func TestExtractArgumentOrder(t *testing.T) {
	salt, ikm := []byte("salt-N_A"), []byte("transcript|init1|init2|es")
	got := Extract(salt, ikm)
	checkHex(t, "Extract", got[:], hmacSHA256(salt, ikm))
	swapped := Extract(ikm, salt)
	if bytes.Equal(got[:], swapped[:]) {
		t.Fatal("Extract is symmetric in its arguments")
	}
}

func TestCPRFLengthLimits(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	for _, l := range []int{-1, 0, 255*32 + 1} {
		if got := CPRF(key, []byte{1}, l); got != nil {
			t.Errorf("CPRF(l=%d) = %d bytes, want nil", l, len(got))
		}
	}
	for _, l := range []int{1, 18, 32, 33, 44, 255 * 32} {
		got := CPRF(key, []byte{1}, l)
		if len(got) != l {
			t.Errorf("CPRF(l=%d) = %d bytes", l, len(got))
		}
		if !bytes.Equal(got, expandHMAC(key, []byte{1}, l)) {
			t.Errorf("CPRF(l=%d) differs from the HMAC definition", l)
		}
	}
	// Prefix property: a shorter output is a prefix of a longer one.
	if !bytes.HasPrefix(CPRF(key, []byte{4}, 44), CPRF(key, []byte{4}, 28)) {
		t.Error("CPRF(28) is not a prefix of CPRF(44)")
	}
}
