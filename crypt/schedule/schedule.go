// Package schedule implements the tcpcrypt key schedule (RFC 8548 §3.3-§3.5)
// and the table of AEAD algorithms it feeds (RFC 8548 §6).
//
// The schedule is modelled as a chain of stage types so that a key can only be
// derived from the stage the RFC derives it from:
//
//	ES, N_A, transcript, Init1, Init2
//	  -> SessionSecret ss[0] = Extract(N_A, transcript|Init1|Init2|ES)  (Fresh)
//	  -> SessionSecret ss[i] = CPRF(ss[i-1], CONST_NEXTK, K_LEN)         (Next)
//	  -> MasterKey     mk[0] = CPRF(ss[i], CONST_REKEY|sn[i], K_LEN)      (MasterKey)
//	  -> MasterKey     mk[j] = CPRF(mk[j-1], CONST_REKEY, K_LEN)          (Advance)
//	  -> TrafficKey    k_ab[j], k_ba[j] = CPRF(mk[j], CONST_KEY_A/B, ...) (TrafficKey)
//
// plus SessionID (RFC 8548 §3.4) and ResumeID (RFC 8548 §3.5) taken from a
// SessionSecret. Every stage has a Zero method that overwrites its secret
// bytes; callers zero a stage as soon as the next one has been derived.
package schedule

// KLen is K_LEN, the length of session secrets, master keys and the session
// ID tail for every TEP defined in RFC 8548 (§5). TCP-ENO requires session IDs
// of at least 33 bytes, so K_LEN must be at least 32 (TC-41).
const KLen = 32

// Key-schedule constants, RFC 8548 §4.3 Table 1. Each is used as the first
// byte of the CPRF "info" (HKDF-Expand CONST) input.
const (
	ConstNextK  = 0x01 // CONST_NEXTK: ss[i] -> ss[i+1]
	ConstSessID = 0x02 // CONST_SESSID: session ID tail
	ConstRekey  = 0x03 // CONST_REKEY: master keys
	ConstKeyA   = 0x04 // CONST_KEY_A: k_ab
	ConstKeyB   = 0x05 // CONST_KEY_B: k_ba
	ConstResume = 0x06 // CONST_RESUME: resumption identifier (0x06, not 0x05; RFC 8548 §4.3 Table 1)
)

// ResumeIDLen is the length of a resumption identifier resume[i]
// (RFC 8548 §3.5); each host sends one 9-byte half.
const ResumeIDLen = 18

// MaxSessionNonceLen bounds sn[i] = nonce_a | nonce_b: each resumption nonce
// is 0..8 bytes (RFC 8548 §3.5).
const MaxSessionNonceLen = 16
