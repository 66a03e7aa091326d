package schedule

import (
	"bytes"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
	"testing"
)

// Known-answer vectors from ../testdata/gen_vectors.py, an independent
// Python implementation (python3-cryptography + hmac-based HKDF).

type (
	handshakeVector = kat.Handshake
	frameVector     = kat.Frame
)

func loadVectors(t testing.TB) *kat.File { return kat.Load(t) }

func checkHex(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func checkTraffic(t *testing.T, what string, k *TrafficKey, a *AEAD, want []byte) {
	t.Helper()
	if len(k.Key) != a.KeyLen || len(k.NR) != a.NonceLen {
		t.Errorf("%s: key %d bytes, NR %d bytes; want %d, %d", what, len(k.Key), len(k.NR), a.KeyLen, a.NonceLen)
	}
	checkHex(t, what, append(append([]byte(nil), k.Key...), k.NR...), want)
}

// TC-8, TC-13, TC-19, TC-20, TC-23: every value of the key schedule, fresh
// and resumed, against the independent Python derivation.
func TestVectorsKeySchedule(t *testing.T) {
	for _, v := range loadVectors(t).Handshakes {
		t.Run(v.Name, func(t *testing.T) {
			a, ok := LookupAEAD(AEADID(v.AEAD))
			if !ok {
				t.Fatalf("AEAD %#04x not implemented", v.AEAD)
			}
			// TC-8: PRK = Extract(N_A, transcript|Init1|Init2|ES).
			ss0 := Fresh(v.NA, v.Transcript, v.Init1, v.Init2, v.ES)
			checkHex(t, "ss0", ss0.Bytes(), v.SS0)
			if ss0.Index() != 0 {
				t.Errorf("ss0 index %d", ss0.Index())
			}
			// TC-13: session ID = B's TEP byte | CPRF(ss0, 0x02, 32).
			checkHex(t, "session_id", ss0.SessionID(v.TEP, nil), v.SessionID)
			ar := ss0.ResumeID()
			checkHex(t, "resume0", ar[:], v.Resume0)

			mk := ss0.MasterKey(nil)
			checkHex(t, "mk0", mk.Bytes(), v.MK0)
			checkTraffic(t, "k_ab0", mk.TrafficKey(a, DirAB), a, v.KAB0)
			checkTraffic(t, "k_ba0", mk.TrafficKey(a, DirBA), a, v.KBA0)
			mk.Advance()
			if mk.Generation() != 1 {
				t.Errorf("generation after Advance = %d", mk.Generation())
			}
			checkHex(t, "mk1", mk.Bytes(), v.MK1)
			checkTraffic(t, "k_ab1", mk.TrafficKey(a, DirAB), a, v.KAB1)
			checkTraffic(t, "k_ba1", mk.TrafficKey(a, DirBA), a, v.KBA1)

			// TC-23: Use yields the same session ID and mk0, then ss1, and
			// erases ss0.
			sid, mk0, ss1 := ss0.Use(v.TEP, nil)
			checkHex(t, "Use session_id", sid, v.SessionID)
			checkHex(t, "Use mk0", mk0.Bytes(), v.MK0)
			checkHex(t, "ss1", ss1.Bytes(), v.SS1)
			checkHex(t, "ss0 after Use", ss0.Bytes(), make([]byte, KLen))
			if ss1.Index() != 1 {
				t.Errorf("ss1 index %d", ss1.Index())
			}
			r1 := ss1.ResumeID()
			checkHex(t, "resume1", r1[:], v.Resume1)

			// TC-19/TC-20: resumed session from ss[i] with sn = nonce_a|nonce_b.
			r := v.Resumed
			if r.Index != ss1.Index() {
				t.Fatalf("resumed index %d, have ss[%d]", r.Index, ss1.Index())
			}
			if r.TEPByte&0x80 == 0 {
				t.Errorf("resumed TEP byte %#x lacks the v bit", r.TEPByte)
			}
			sn := append(append([]byte(nil), r.NonceA...), r.NonceB...)
			// The cache hands ss[1] over as bytes.
			cached := SessionSecretFromBytes(v.SS1, 1)
			rsid, rmk, ss2 := cached.Use(r.TEPByte, sn)
			checkHex(t, "resumed session_id", rsid, r.SessionID)
			checkHex(t, "resumed mk0", rmk.Bytes(), r.MK0)
			checkTraffic(t, "resumed k_ab0", rmk.TrafficKey(a, DirAB), a, r.KAB0)
			checkTraffic(t, "resumed k_ba0", rmk.TrafficKey(a, DirBA), a, r.KBA0)
			if ss2.Index() != 2 {
				t.Errorf("ss2 index %d", ss2.Index())
			}
			checkHex(t, "ss2", ss2.Bytes(), CPRF(v.SS1, []byte{ConstNextK}, KLen))
		})
	}
}

// TC-45: the AEAD table seals frames exactly as the independent
// implementation does (RFC 8548 §4.2: nonce = frame ID XOR NR, AD =
// control|clen). This checks the AEADs and key lengths; framing itself
// belongs to crypt/frame.
func TestVectorsFrameAEAD(t *testing.T) {
	for i, v := range loadVectors(t).Frames {
		a, ok := LookupAEAD(AEADID(v.AEAD))
		if !ok {
			t.Fatalf("frame %d: AEAD %#04x not implemented", i, v.AEAD)
		}
		c, err := a.New(v.Key)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(v.NR) != a.NonceLen || c.NonceSize() != a.NonceLen || c.Overhead() != a.Overhead {
			t.Fatalf("frame %d: NR %d, nonce %d, overhead %d", i, len(v.NR), c.NonceSize(), c.Overhead())
		}
		pt := []byte{v.Flags}
		if v.Urgent != nil {
			pt = append(pt, byte(*v.Urgent>>8), byte(*v.Urgent))
		}
		pt = append(pt, v.Data...)
		clen := len(pt) + a.Overhead
		ad := []byte{v.Control, byte(clen >> 8), byte(clen)}
		nonce := make([]byte, a.NonceLen)
		for j := 0; j < 8; j++ {
			nonce[a.NonceLen-1-j] = byte(v.Offset >> (8 * j))
		}
		for j := range nonce {
			nonce[j] ^= v.NR[j]
		}
		wire := c.Seal(append([]byte(nil), ad...), nonce, pt, ad)
		if !bytes.Equal(wire, v.Wire) {
			t.Errorf("frame %d (%v, offset %d): got %x want %x", i, a.ID, v.Offset, wire, v.Wire)
		}
		got, err := c.Open(nil, nonce, v.Wire[3:], v.Wire[:3])
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("frame %d: open: %v", i, err)
		}
	}
}
