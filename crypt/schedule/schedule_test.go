package schedule

import (
	"bytes"
	"testing"
)

func testSecret(b byte) *SessionSecret {
	return SessionSecretFromBytes(bytes.Repeat([]byte{b}, KLen), 0)
}

// TC-41: K_LEN is at least 32, so session IDs are at least 33 bytes, the
// TCP-ENO minimum (RFC 8548 §5, RFC 8547 §4.8).
func TestTC41_KLenAndSessionIDLength(t *testing.T) {
	if KLen < 32 {
		t.Fatalf("KLen = %d < 32", KLen)
	}
	ss := testSecret(7)
	for _, sn := range [][]byte{nil, {}, bytes.Repeat([]byte{9}, MaxSessionNonceLen)} {
		if id := ss.SessionID(0x23, sn); len(id) != 1+KLen || len(id) < 33 {
			t.Errorf("session ID with %d-byte sn has %d bytes", len(sn), len(id))
		}
	}
}

// TC-13, TC-20: the session ID starts with B's TEP byte as sent, v bit
// included; the tail depends on the secret and sn but not on the TEP byte.
func TestTC13_TC20_SessionIDTEPByte(t *testing.T) {
	ss := testSecret(1)
	fresh := ss.SessionID(0x23, nil)
	resumed := ss.SessionID(0xa3, []byte{1, 2})
	if fresh[0] != 0x23 || resumed[0] != 0xa3 {
		t.Fatalf("first bytes %#x %#x", fresh[0], resumed[0])
	}
	if bytes.Equal(fresh[1:], resumed[1:]) {
		t.Error("session nonce does not enter the session ID")
	}
	if !bytes.Equal(ss.SessionID(0x24, nil)[1:], fresh[1:]) {
		t.Error("TEP byte changed the session ID tail")
	}
	if bytes.Equal(testSecret(2).SessionID(0x23, nil), fresh) {
		t.Error("different secrets give the same session ID")
	}
}

// TC-19: sn = nonce_a | nonce_b changes mk[0] and the session ID, and the
// order of the halves matters (they follow the original roles).
func TestTC19_SessionNonceInDerivation(t *testing.T) {
	ss := testSecret(3)
	na, nb := []byte{1, 2, 3}, []byte{4, 5}
	ab := append(append([]byte(nil), na...), nb...)
	ba := append(append([]byte(nil), nb...), na...)
	m0 := ss.MasterKey(nil).Bytes()
	mab := ss.MasterKey(ab).Bytes()
	mba := ss.MasterKey(ba).Bytes()
	if bytes.Equal(m0, mab) || bytes.Equal(mab, mba) {
		t.Error("sn does not separate master keys")
	}
	if bytes.Equal(ss.SessionID(0xa3, ab), ss.SessionID(0xa3, ba)) {
		t.Error("sn order does not matter for the session ID")
	}
	// Empty nonces on both sides (0-byte resumption nonces are allowed)
	// give the fresh-session derivation.
	if !bytes.Equal(ss.MasterKey([]byte{}).Bytes(), m0) {
		t.Error("empty sn differs from nil sn")
	}
}

// TC-23: Use computes the session ID and mk[0], returns ss[i+1] and erases
// ss[i]; Next leaves the receiver intact; the chain is deterministic.
func TestTC23_UseEraseAndNext(t *testing.T) {
	ss := testSecret(4)
	wantNext := ss.Next()
	wantID := ss.SessionID(0x21, nil)
	wantMK := ss.MasterKey(nil)
	if !bytes.Equal(ss.Bytes(), bytes.Repeat([]byte{4}, KLen)) {
		t.Fatal("Next/SessionID/MasterKey modified the secret")
	}
	id, mk, next := ss.Use(0x21, nil)
	if !bytes.Equal(id, wantID) || !bytes.Equal(mk.Bytes(), wantMK.Bytes()) || !next.Equal(wantNext) {
		t.Fatal("Use differs from SessionID/MasterKey/Next")
	}
	if !bytes.Equal(ss.Bytes(), make([]byte, KLen)) {
		t.Fatal("Use left ss[i] in memory")
	}
	if next.Index() != 1 || next.Next().Index() != 2 {
		t.Errorf("indices %d, %d", next.Index(), next.Next().Index())
	}
	if next.Equal(next.Next()) {
		t.Error("ss[i+1] == ss[i+2]")
	}
}

func TestZero(t *testing.T) {
	ss := testSecret(5)
	mk := ss.MasterKey(nil)
	a, _ := LookupAEAD(ChaCha20Poly1305)
	tk := mk.TrafficKey(a, DirAB)
	ss.Zero()
	mk.Zero()
	tk.Zero()
	zero := make([]byte, 64)
	if !bytes.Equal(ss.Bytes(), zero[:KLen]) || !bytes.Equal(mk.Bytes(), zero[:KLen]) ||
		!bytes.Equal(tk.Key, zero[:a.KeyLen]) || !bytes.Equal(tk.NR, zero[:a.NonceLen]) {
		t.Fatal("Zero left secret bytes")
	}
	// Zero on nil is harmless (deferred cleanup of never-made keys).
	(*SessionSecret)(nil).Zero()
	(*MasterKey)(nil).Zero()
	(*TrafficKey)(nil).Zero()
}

// RFC 8548 §3.8: each direction walks its own copy of the master key; Advance
// overwrites mk[j]; keys of different generations and directions differ.
func TestMasterKeyCloneAdvance(t *testing.T) {
	a, _ := LookupAEAD(AES128GCM)
	mk := testSecret(6).MasterKey(nil)
	send, recv := mk.Clone(), mk.Clone()
	mk.Zero()
	if bytes.Equal(send.Bytes(), make([]byte, KLen)) {
		t.Fatal("Clone shares storage with the original")
	}
	k0 := send.TrafficKey(a, DirAB)
	send.Advance()
	if send.Generation() != 1 || recv.Generation() != 0 {
		t.Fatalf("generations %d, %d", send.Generation(), recv.Generation())
	}
	if !bytes.Equal(recv.TrafficKey(a, DirAB).Key, k0.Key) {
		t.Error("advancing one copy changed the other")
	}
	k1 := send.TrafficKey(a, DirAB)
	if bytes.Equal(k0.Key, k1.Key) || bytes.Equal(k0.NR, k1.NR) {
		t.Error("generation 1 key equals generation 0")
	}
	if kb := send.TrafficKey(a, DirBA); bytes.Equal(kb.Key, k1.Key) {
		t.Error("k_ab == k_ba")
	}
	recv.Advance()
	if !bytes.Equal(recv.Bytes(), send.Bytes()) {
		t.Error("copies diverge after the same number of Advance calls")
	}
	if send.TrafficKey(nil, DirAB) != nil {
		t.Error("TrafficKey(nil AEAD) != nil")
	}
}

func TestFromBytesLength(t *testing.T) {
	for _, n := range []int{0, 31, 33} {
		if SessionSecretFromBytes(make([]byte, n), 0) != nil {
			t.Errorf("SessionSecretFromBytes(%d bytes) accepted", n)
		}
		if MasterKeyFromBytes(make([]byte, n), 0) != nil {
			t.Errorf("MasterKeyFromBytes(%d bytes) accepted", n)
		}
	}
	b := bytes.Repeat([]byte{8}, KLen)
	ss := SessionSecretFromBytes(b, 9)
	b[0] = 0
	if ss.Bytes()[0] != 8 || ss.Index() != 9 {
		t.Error("SessionSecretFromBytes does not copy")
	}
	mk := MasterKeyFromBytes(ss.Bytes(), 4)
	if mk.Generation() != 4 || !bytes.Equal(mk.Bytes(), ss.Bytes()) {
		t.Error("MasterKeyFromBytes")
	}
	out := ss.Bytes()
	out[0] = 0
	if ss.Bytes()[0] != 8 {
		t.Error("Bytes aliases the secret")
	}
}

func TestDirection(t *testing.T) {
	if DirAB.String() != "ab" || DirBA.String() != "ba" || DirAB.Reverse() != DirBA || DirBA.Reverse() != DirAB {
		t.Error("Direction names/Reverse")
	}
}

// TestResumeIDIntoAndClone: ResumeIDInto gives resume[i] as ResumeID
// does (the cache derives identifiers into buffers it then clears), and a
// clone is zeroed independently of the secret it copies.
func TestResumeIDIntoAndClone(t *testing.T) {
	ss := SessionSecretFromBytes(bytes.Repeat([]byte{7}, KLen), 3)
	var id [ResumeIDLen]byte
	ss.ResumeIDInto(&id)
	if id != ss.ResumeID() || id == ([ResumeIDLen]byte{}) {
		t.Fatalf("ResumeIDInto %x, ResumeID %x", id, ss.ResumeID())
	}
	c := ss.Clone()
	if !c.Equal(ss) || c.Index() != 3 {
		t.Fatal("clone differs")
	}
	c.Zero()
	if c.Equal(ss) || !bytes.Equal(ss.Bytes(), bytes.Repeat([]byte{7}, KLen)) {
		t.Fatal("zeroing a clone touched the original")
	}
}
