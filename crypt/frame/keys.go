package frame

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// keyState is the key material of one direction at one generation: its own
// copy of mk[gen], the AEAD keyed with K, and the nonce randomizer NR
// (RFC 8548 §3.6 Figure 4). Sealer and Opener each embed one.
//
// Only mk[gen] and the current traffic key are ever held: advancing to the
// next generation overwrites mk (MasterKey.Advance) and drops the previous
// AEAD (TC-38). Go's cipher.AEAD offers no way to wipe its expanded key
// schedule; we drop the reference so it becomes garbage.
type keyState struct {
	aead *schedule.AEAD
	dir  schedule.Direction
	mk   *schedule.MasterKey // mk[gen]; nil when built from a raw key (tests)
	c    cipher.AEAD
	gen  uint64

	nonceLen int
	overhead int
	// nonce holds NR in [0:nonceLen-8] (frame_ID's zero prefix XOR NR is
	// NR) and is rewritten in [nonceLen-8:nonceLen] for every frame; nrTail
	// is NR's last 8 bytes, big-endian.
	nonce  [maxNonceLen]byte
	nrTail uint64
	// ad is the associated-data scratch (control | clen, §4.2.2).
	ad [HeaderLen]byte
}

// checkAEAD validates the AEAD description against what framing needs.
func checkAEAD(a *schedule.AEAD) error {
	switch {
	case a == nil:
		return fmt.Errorf("nil AEAD")
	case a.NonceLen < frameIDOffsetLen || a.NonceLen > maxNonceLen:
		return fmt.Errorf("%v nonce length %d outside [%d, %d]", a.ID, a.NonceLen, frameIDOffsetLen, maxNonceLen)
	case a.Overhead < 0 || a.Overhead > MaxCLen-flagsLen:
		return fmt.Errorf("%v overhead %d unusable", a.ID, a.Overhead)
	}
	return nil
}

// init takes a private copy of mk0 and loads generation mk0.Generation().
func (k *keyState) init(a *schedule.AEAD, mk0 *schedule.MasterKey, d schedule.Direction) error {
	if err := checkAEAD(a); err != nil {
		return err
	}
	if mk0 == nil {
		return fmt.Errorf("nil master key")
	}
	if d != schedule.DirAB && d != schedule.DirBA {
		return fmt.Errorf("invalid direction %v", d)
	}
	k.aead, k.dir = a, d
	k.mk = mk0.Clone()
	k.gen = k.mk.Generation()
	return k.load()
}

// initRaw keys the state with a raw traffic key (K and NR) at generation
// gen and no master key, so it cannot rekey. Used by known-answer tests.
func (k *keyState) initRaw(a *schedule.AEAD, key, nr []byte, gen uint64) error {
	if err := checkAEAD(a); err != nil {
		return err
	}
	k.aead, k.gen = a, gen
	return k.setKey(key, nr)
}

// load derives the traffic key of generation k.gen for k.dir and keys the
// AEAD with it, erasing the derived bytes afterwards.
func (k *keyState) load() error {
	tk := k.mk.TrafficKey(k.aead, k.dir)
	if tk == nil {
		return fmt.Errorf("no traffic key for %v", k.aead.ID)
	}
	defer tk.Zero()
	return k.setKey(tk.Key, tk.NR)
}

func (k *keyState) setKey(key, nr []byte) error {
	a := k.aead
	if len(key) != a.KeyLen || len(nr) != a.NonceLen {
		return fmt.Errorf("%v traffic key is %d+%d bytes, want %d+%d", a.ID, len(key), len(nr), a.KeyLen, a.NonceLen)
	}
	c, err := a.New(key)
	if err != nil {
		return err
	}
	if c.NonceSize() != a.NonceLen || c.Overhead() != a.Overhead {
		return fmt.Errorf("%v cipher has nonce %d / tag %d, want %d / %d", a.ID, c.NonceSize(), c.Overhead(), a.NonceLen, a.Overhead)
	}
	k.c = c
	k.nonceLen, k.overhead = a.NonceLen, a.Overhead
	clear(k.nonce[:])
	copy(k.nonce[:], nr)
	k.nrTail = binary.BigEndian.Uint64(nr[a.NonceLen-frameIDOffsetLen:])
	return nil
}

// advance moves to the next generation: mk[gen] -> mk[gen+1] (overwriting
// mk[gen]) and the traffic key derived from it (RFC 8548 §3.8).
func (k *keyState) advance() error {
	if k.mk == nil {
		return fmt.Errorf("no master key to advance")
	}
	if k.gen == ^uint64(0) {
		return ErrGenerationExhausted
	}
	k.c = nil // drop the old generation's AEAD before deriving the new one
	k.mk.Advance()
	k.gen = k.mk.Generation()
	return k.load()
}

// nonceFor returns N = frame_ID XOR NR for the frame at stream offset off
// (RFC 8548 §3.6, §4.2.3). The slice aliases k.nonce.
func (k *keyState) nonceFor(off uint64) []byte {
	binary.BigEndian.PutUint64(k.nonce[k.nonceLen-frameIDOffsetLen:k.nonceLen], k.nrTail^off)
	return k.nonce[:k.nonceLen]
}

// adFor fills the associated data control | clen (RFC 8548 §4.2.2).
func (k *keyState) adFor(control byte, clen int) []byte {
	k.ad[0] = control
	binary.BigEndian.PutUint16(k.ad[1:3], uint16(clen))
	return k.ad[:]
}

// zero erases every key held.
func (k *keyState) zero() {
	if k.mk != nil {
		k.mk.Zero()
		k.mk = nil
	}
	k.c = nil
	clear(k.nonce[:])
	k.nrTail = 0
}
