package schedule

import "fmt"

// Direction selects which traffic key of a key set is meant (RFC 8548 §3.3).
// In the fresh session A sends with k_ab and B with k_ba; in every session
// resumed from the same ss[0] a host keeps the direction of its original role
// (RFC 8548 §3.5, TC-26).
type Direction uint8

// Directions.
const (
	DirAB Direction = iota // k_ab[j], CONST_KEY_A
	DirBA                  // k_ba[j], CONST_KEY_B
)

// String returns "ab" or "ba".
func (d Direction) String() string {
	switch d {
	case DirAB:
		return "ab"
	case DirBA:
		return "ba"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Reverse returns the other direction.
func (d Direction) Reverse() Direction {
	if d == DirAB {
		return DirBA
	}
	return DirAB
}

func (d Direction) constant() byte {
	if d == DirAB {
		return ConstKeyA
	}
	return ConstKeyB
}

// MasterKey is a master key mk[j] (RFC 8548 §3.3). Each direction of a
// connection keeps its own copy (Clone) and walks it forward with Advance as
// its generation number grows (RFC 8548 §3.8).
type MasterKey struct {
	k   [KLen]byte
	gen uint64
}

// MasterKeyFromBytes rebuilds mk[generation] from its KLen bytes (tests and
// the key log). It returns nil if len(b) != KLen.
func MasterKeyFromBytes(b []byte, generation uint64) *MasterKey {
	if len(b) != KLen {
		return nil
	}
	m := &MasterKey{gen: generation}
	copy(m.k[:], b)
	return m
}

// Clone returns an independent copy.
func (m *MasterKey) Clone() *MasterKey {
	c := *m
	return &c
}

// Generation returns j for mk[j].
func (m *MasterKey) Generation() uint64 { return m.gen }

// Advance replaces mk[j] with mk[j+1] = CPRF(mk[j], CONST_REKEY, K_LEN),
// overwriting mk[j] (RFC 8548 §3.3, §3.8).
func (m *MasterKey) Advance() {
	okm := CPRF(m.k[:], []byte{ConstRekey}, KLen)
	copy(m.k[:], okm)
	clear(okm)
	m.gen++
}

// TrafficKey returns k_ab[j] (DirAB) or k_ba[j] (DirBA) =
// CPRF(mk[j], CONST_KEY_A/B, ae_key_len + ae_nonce_len), split into the AEAD
// key K and the nonce randomizer NR (RFC 8548 §3.3, §3.6 Figure 4). It
// returns nil for a nil AEAD.
func (m *MasterKey) TrafficKey(a *AEAD, d Direction) *TrafficKey {
	if a == nil {
		return nil
	}
	okm := CPRF(m.k[:], []byte{d.constant()}, a.KeyLen+a.NonceLen)
	return &TrafficKey{Key: okm[:a.KeyLen:a.KeyLen], NR: okm[a.KeyLen:]}
}

// Bytes returns a copy of mk[j] (key log and tests only).
func (m *MasterKey) Bytes() []byte { return append([]byte(nil), m.k[:]...) }

// Zero overwrites the master key.
func (m *MasterKey) Zero() {
	if m != nil {
		clear(m.k[:])
	}
}

// TrafficKey is one traffic key k_ab[j] or k_ba[j] split per RFC 8548 §3.6
// Figure 4: Key is the first ae_key_len bytes, NR the next ae_nonce_len.
type TrafficKey struct{ Key, NR []byte }

// Zero overwrites both parts.
func (k *TrafficKey) Zero() {
	if k != nil {
		clear(k.Key)
		clear(k.NR)
	}
}
