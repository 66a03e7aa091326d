package schedule

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
)

// Extract is HKDF-Extract with SHA-256 (RFC 8548 §3.1 Figure 1, RFC 5869):
// PRK = HMAC-SHA256(key = salt, msg = ikm).
//
// Note the argument order: this function takes the salt first, as the RFC's
// Extract(S, IKM) does, whereas crypto/hkdf.Extract takes the secret first.
func Extract(salt, ikm []byte) [32]byte {
	var out [32]byte
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		// crypto/hkdf fails only in FIPS 140-only mode for secrets under 112
		// bits. HKDF-Extract is by definition this single HMAC, so compute it
		// directly rather than fail a signature that cannot return an error.
		m := hmac.New(sha256.New, salt)
		m.Write(ikm)
		prk = m.Sum(nil)
	}
	copy(out[:], prk)
	clear(prk)
	return out
}

// maxCPRFLen is the HKDF-Expand output limit, 255 * HashLen (RFC 5869 §2.3).
const maxCPRFLen = 255 * sha256.Size

// CPRF is HKDF-Expand with SHA-256 (RFC 8548 §3.1 Figure 1): the first l
// bytes of T(1) | T(2) | ... with T(n) = HMAC-SHA256(key, T(n-1) | info | n).
// It returns nil when l is not in 1..255*32 (never the case for the fixed
// lengths the schedule uses).
func CPRF(key []byte, info []byte, l int) []byte {
	if l <= 0 || l > maxCPRFLen {
		return nil
	}
	okm, err := hkdf.Expand(sha256.New, key, string(info), l)
	if err != nil {
		// Only reachable in FIPS 140-only mode with a key under 112 bits;
		// schedule keys are always 32 bytes. Fall back to the definition.
		return expandHMAC(key, info, l)
	}
	return okm
}

// expandHMAC is HKDF-Expand spelled out with crypto/hmac (RFC 5869 §2.3).
func expandHMAC(key, info []byte, l int) []byte {
	out := make([]byte, 0, l+sha256.Size)
	var t []byte
	for n := byte(1); len(out) < l; n++ {
		m := hmac.New(sha256.New, key)
		m.Write(t)
		m.Write(info)
		m.Write([]byte{n})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	clear(out[l:cap(out)])
	return out[:l]
}

// info builds a CPRF info input: one constant byte followed by sn.
func info(c byte, sn []byte) []byte {
	b := make([]byte, 0, 1+len(sn))
	b = append(b, c)
	return append(b, sn...)
}
