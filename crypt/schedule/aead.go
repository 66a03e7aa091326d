package schedule

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// AEADID is a sym_cipher identifier (RFC 8548 §7 Table 5), sent as a
// 2-byte big-endian value in Init1 and Init2.
type AEADID uint16

// AEAD identifiers registered by RFC 8548 §7 Table 5.
const (
	AES128GCM        AEADID = 0x0001 // AEAD_AES_128_GCM, MUST implement (TC-45)
	AES256GCM        AEADID = 0x0002 // AEAD_AES_256_GCM, RECOMMENDED
	ChaCha20Poly1305 AEADID = 0x0010 // AEAD_CHACHA20_POLY1305, RECOMMENDED
)

// String returns a short lower-case name for logs and configuration.
func (id AEADID) String() string {
	switch id {
	case AES128GCM:
		return "aes128gcm"
	case AES256GCM:
		return "aes256gcm"
	case ChaCha20Poly1305:
		return "chacha20poly1305"
	}
	return fmt.Sprintf("aead-0x%04x", uint16(id))
}

// AEAD describes one authenticated-encryption algorithm: its wire ID and
// the lengths of RFC 8548 §6 Table 3 (ae_key_len, ae_nonce_len) plus the tag
// overhead. Values are obtained from LookupAEAD and are read-only.
type AEAD struct {
	ID       AEADID
	KeyLen   int // ae_key_len
	NonceLen int // ae_nonce_len (also the length of NR)
	Overhead int // tag length: clen = plen + Overhead

	newAEAD func(key []byte) (cipher.AEAD, error)
}

// TrafficKeyLen is ae_key_len + ae_nonce_len, the length of k_ab[j]/k_ba[j].
func (a *AEAD) TrafficKeyLen() int { return a.KeyLen + a.NonceLen }

// New returns the cipher.AEAD keyed with key, which must be KeyLen bytes.
func (a *AEAD) New(key []byte) (cipher.AEAD, error) {
	if a == nil || a.newAEAD == nil {
		return nil, fmt.Errorf("schedule: unknown AEAD")
	}
	if len(key) != a.KeyLen {
		return nil, fmt.Errorf("schedule: %v key is %d bytes, want %d", a.ID, len(key), a.KeyLen)
	}
	c, err := a.newAEAD(key)
	if err != nil {
		return nil, fmt.Errorf("schedule: %v: %w", a.ID, err)
	}
	return c, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// aeads is the table of RFC 8548 §6 Table 3: AES-GCM uses a 12-byte nonce
// and a 16-byte tag (RFC 5116 §5.1/§5.2), ChaCha20-Poly1305 likewise
// (RFC 8439 §2.8).
var aeads = [...]AEAD{
	{ID: AES128GCM, KeyLen: 16, NonceLen: 12, Overhead: 16, newAEAD: newGCM},
	{ID: AES256GCM, KeyLen: 32, NonceLen: 12, Overhead: 16, newAEAD: newGCM},
	{ID: ChaCha20Poly1305, KeyLen: chacha20poly1305.KeySize, NonceLen: chacha20poly1305.NonceSize,
		Overhead: chacha20poly1305.Overhead, newAEAD: chacha20poly1305.New},
}

// LookupAEAD returns the algorithm with wire ID id.
func LookupAEAD(id AEADID) (*AEAD, bool) {
	for i := range aeads {
		if aeads[i].ID == id {
			return &aeads[i], true
		}
	}
	return nil, false
}

// AEADIDs returns every implemented AEAD in the order of Table 5.
func AEADIDs() []AEADID {
	ids := make([]AEADID, len(aeads))
	for i := range aeads {
		ids[i] = aeads[i].ID
	}
	return ids
}
