package schedule

import "crypto/subtle"

// SessionSecret is a session secret ss[i] (RFC 8548 §3.3) together with its
// index i in the chain that starts at the PRK of a fresh key exchange.
//
// A SessionSecret secures at most one connection (RFC 8548 §3.5, TC-25); Use
// derives everything a connection needs from it, steps to ss[i+1] and erases
// ss[i] (TC-23).
type SessionSecret struct {
	b     [KLen]byte
	index uint64
}

// Fresh computes ss[0] = PRK = Extract(N_A, eno_transcript | Init1 | Init2 | ES)
// (RFC 8548 §3.3, TC-8). init1 and init2 must be the messages exactly as
// transmitted (all message_len bytes, including any ignored trailer), and the
// salt is always A's nonce, whichever host computes it.
func Fresh(nA, transcript, init1, init2, es []byte) *SessionSecret {
	ikm := make([]byte, 0, len(transcript)+len(init1)+len(init2)+len(es))
	ikm = append(ikm, transcript...)
	ikm = append(ikm, init1...)
	ikm = append(ikm, init2...)
	ikm = append(ikm, es...)
	s := &SessionSecret{b: Extract(nA, ikm)}
	clear(ikm) // contains ES
	return s
}

// SessionSecretFromBytes rebuilds ss[index] from its KLen bytes (for the
// resumption cache and tests). It copies b. It returns nil if len(b) != KLen.
func SessionSecretFromBytes(b []byte, index uint64) *SessionSecret {
	if len(b) != KLen {
		return nil
	}
	s := &SessionSecret{index: index}
	copy(s.b[:], b)
	return s
}

// Index returns i for ss[i]: 0 for a fresh session.
func (s *SessionSecret) Index() uint64 { return s.index }

// Next returns ss[i+1] = CPRF(ss[i], CONST_NEXTK, K_LEN) (RFC 8548 §3.3).
// The receiver is left unchanged; callers erase it with Zero when done.
func (s *SessionSecret) Next() *SessionSecret {
	n := &SessionSecret{index: s.index + 1}
	okm := CPRF(s.b[:], []byte{ConstNextK}, KLen)
	copy(n.b[:], okm)
	clear(okm)
	return n
}

// ResumeID returns resume[i] = CPRF(ss[i], CONST_RESUME, 18) (RFC 8548 §3.5).
// Bytes 0..8 are the half a host that played role A in the original session
// sends, bytes 9..17 the half of the original B.
func (s *SessionSecret) ResumeID() [ResumeIDLen]byte {
	var id [ResumeIDLen]byte
	s.ResumeIDInto(&id)
	return id
}

// ResumeIDInto writes resume[i] (see ResumeID) into id and erases the
// derivation's output buffer, so that the only copy is the caller's, which
// it clears when done (issue 13: identifiers of secrets not yet used are
// as sensitive as the chain's future).
func (s *SessionSecret) ResumeIDInto(id *[ResumeIDLen]byte) {
	okm := CPRF(s.b[:], []byte{ConstResume}, ResumeIDLen)
	copy(id[:], okm)
	clear(okm)
}

// Clone returns a copy of ss[i]; the caller zeroes it independently.
func (s *SessionSecret) Clone() *SessionSecret {
	c := *s
	return &c
}

// SessionID returns session_id[i] = TEP-byte | CPRF(ss[i], CONST_SESSID | sn[i], K_LEN)
// (RFC 8548 §3.4, TC-13): 1+KLen = 33 bytes. tepByte is the byte host B sent
// for the negotiated TEP, v bit included (always set for a resumed session,
// TC-20). sn is empty for a fresh session and nonce_a | nonce_b for a
// resumed one (RFC 8548 §3.5, TC-19).
func (s *SessionSecret) SessionID(tepByte byte, sn []byte) []byte {
	id := make([]byte, 1, 1+KLen)
	id[0] = tepByte
	return append(id, CPRF(s.b[:], info(ConstSessID, sn), KLen)...)
}

// MasterKey returns mk[0] = CPRF(ss[i], CONST_REKEY | sn[i], K_LEN)
// (RFC 8548 §3.3; sn as for SessionID).
func (s *SessionSecret) MasterKey(sn []byte) *MasterKey {
	m := &MasterKey{}
	okm := CPRF(s.b[:], info(ConstRekey, sn), KLen)
	copy(m.k[:], okm)
	clear(okm)
	return m
}

// Use derives what one connection needs from ss[i] — its session ID and
// mk[0] — then computes ss[i+1] for a later resumption and erases ss[i]
// (RFC 8548 §3.5: "After using the session secret ss[i] to compute mk[0],
// implementations SHOULD compute and cache ss[i+1] ... and then erase ss[i]";
// TC-23). The receiver is zero afterwards and must not be used again.
func (s *SessionSecret) Use(tepByte byte, sn []byte) (sessionID []byte, mk0 *MasterKey, next *SessionSecret) {
	sessionID = s.SessionID(tepByte, sn)
	mk0 = s.MasterKey(sn)
	next = s.Next()
	s.Zero()
	return sessionID, mk0, next
}

// Bytes returns a copy of the secret (for the resumption cache, the key log
// and tests; never log it).
func (s *SessionSecret) Bytes() []byte { return append([]byte(nil), s.b[:]...) }

// Equal reports in constant time whether s and t hold the same secret.
func (s *SessionSecret) Equal(t *SessionSecret) bool {
	return subtle.ConstantTimeCompare(s.b[:], t.b[:]) == 1
}

// Zero overwrites the secret.
func (s *SessionSecret) Zero() {
	if s != nil {
		clear(s.b[:])
	}
}
