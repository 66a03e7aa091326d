package tcpcrypt

import "time"

// Wire constants of RFC 8548 (§4.1, §4.3, §5). They are fixed by the RFC.
const (
	// Init1Magic and Init2Magic open the key-exchange messages (§4.3 Table 1).
	Init1Magic uint32 = 0x15101a0e
	Init2Magic uint32 = 0x097105e0

	// NonceLen is N_A_LEN = N_B_LEN, the length of the Init nonces (§5).
	NonceLen = 32

	// ResumeHalfLen is the length of one half of a resumption identifier
	// resume[i] (§3.5 Figures 2 and 3).
	ResumeHalfLen = 9
	// MaxResumeNonceLen bounds the resumption nonce: 0..8 bytes (§3.5, TC-14).
	MaxResumeNonceLen = 8

	// initHeaderLen is magic(4) + message_len(4) (§4.1).
	initHeaderLen = 8
	// cipherIDLen is the width of a sym_cipher identifier (§4.1). Big-endian:
	// docs/decisions.md (RFC 8548 uses network byte order for every other
	// multi-byte field; its example values are written 0x0001-style).
	cipherIDLen = 2
	// vBit marks a suboption with data (RFC 8547 §4.2).
	vBit = 0x80
)

// Tunables: defaults chosen by this implementation, not by the RFC.
const (
	// MaxMessageLen bounds message_len of a received Init1/Init2.
	//
	// Decision (docs/decisions.md, "Malformed Init messages"): the RFC sets no maximum. The largest
	// message a conforming peer sends is an Init1 with 255 ciphers and a
	// P-521 key, 8+1+510+32+69 = 620 bytes, or 8+1+510+32+1216 = 1767
	// with the experimental x25519mlkem768 (its Init2 is 8+2+32+1120 =
	// 1162); 4 KiB leaves room for a future "ignored" extension while
	// keeping a hostile length from making us buffer much. Longer messages
	// abort the connection (handshake error).
	MaxMessageLen = 4096

	// DefaultNonceLen is the resumption nonce length we send unless Config
	// says otherwise: 8 bytes, the RFC's MUST default when reuse of session
	// secrets cannot be ruled out, e.g. after VM cloning (§3.5, TC-14).
	DefaultNonceLen = 8
	// NonceLenZero requests a zero-length resumption nonce in
	// Config.NonceLen (whose zero value selects DefaultNonceLen).
	NonceLenZero = -1

	// DefaultOfferSpace is the option space, in bytes, left for the
	// suboptions of the ENO option in our SYN: gVisor's SYN carries MSS (4),
	// SACK-permitted (2), timestamps (10), window scale (3) and a NOP, which
	// leaves 20 of the 40 option bytes; ENO's kind and length take 2.
	// Callers that also send a global suboption byte (b or a bit) pass one
	// less in Config.OfferSpace (docs/decisions.md, "SYN option budget").
	DefaultOfferSpace = 18
	// DefaultAnswerSpace is the same for B's SYN-ACK, whose ENO option
	// always carries the global byte with b = 1: 20 - 2 - 1 (docs/decisions.md).
	DefaultAnswerSpace = 17

	// DefaultRekeyAfter is how many frame bytes we send under one key
	// generation before rekeying on our own (RFC 8548 gives no number,
	// docs/decisions.md). 1 GiB is far below the AES-GCM data limit for
	// deterministic nonces (about 2^38 bytes with 64 KiB frames) and costs
	// one HMAC chain step per GiB.
	DefaultRekeyAfter = 1 << 30

	// closeFlushTimeout bounds how long Close waits to send the FINp frame
	// (and any ciphertext still pending) before closing the stream anyway.
	closeFlushTimeout = 5 * time.Second

	// answerTimeout bounds how long Read spends writing the rekey frame it
	// owes the peer (see Conn). Sockets take 20 bytes at once; only a
	// transport without buffer space and a peer not reading makes it wait.
	answerTimeout = 50 * time.Millisecond

	// minReadBuf is the initial read buffer; it grows to the largest frame
	// seen (at most frame.HeaderLen+frame.MaxCLen) so idle connections stay
	// small.
	minReadBuf = 4 << 10
)
