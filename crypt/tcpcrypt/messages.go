package tcpcrypt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Init1 is host A's key-exchange message (RFC 8548 §3.3, §4.1):
//
//	INIT1_MAGIC(4) | message_len(4) | nciphers(1) | sym_cipher(2)*nciphers |
//	N_A(32) | Pub_A | ignored
//
// A received Init1 keeps the exact bytes it was parsed from: the key
// schedule uses "the transmitted encodings" (§3.3), ignored trailer
// included, never a re-encoding (TC-12).
type Init1 struct {
	Ciphers []schedule.AEADID // sym_cipher_list in A's order; unknown IDs kept
	NA      [NonceLen]byte
	Pub     []byte // Pub_A, wire encoding (length prefix included for NIST curves)
	// Ignored is the trailing "ignored" field. We always send it empty; a
	// receiver accepts and keeps whatever arrived (§4.1, TC-12).
	Ignored []byte

	raw []byte         // bytes as received; nil for a message we build
	pub *kex.PublicKey // parsed and validated Pub_A
}

// Init2 is host B's key-exchange message (RFC 8548 §3.3, §4.1):
//
//	INIT2_MAGIC(4) | message_len(4) | sym_cipher(2) | N_B(32) | Pub_B | ignored
type Init2 struct {
	Cipher  schedule.AEADID // B's choice from A's sym_cipher_list
	NB      [NonceLen]byte
	Pub     []byte // Pub_B, wire encoding
	Ignored []byte // see Init1.Ignored

	raw []byte
	pub *kex.PublicKey
}

// Marshal returns the wire encoding: the received bytes for a parsed
// message, otherwise a fresh encoding of the fields. It fails if the cipher
// list is empty or longer than 255, or the message exceeds MaxMessageLen.
func (m *Init1) Marshal() ([]byte, error) {
	if m.raw != nil {
		return m.raw, nil
	}
	if len(m.Ciphers) == 0 || len(m.Ciphers) > 255 {
		return nil, msgErr("init1", "nciphers", "%d ciphers, want 1..255", len(m.Ciphers))
	}
	n := initHeaderLen + 1 + cipherIDLen*len(m.Ciphers) + NonceLen + len(m.Pub) + len(m.Ignored)
	if n > MaxMessageLen {
		return nil, msgErr("init1", "too-long", "%d bytes, at most %d", n, MaxMessageLen)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, Init1Magic)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, byte(len(m.Ciphers)))
	for _, c := range m.Ciphers {
		b = binary.BigEndian.AppendUint16(b, uint16(c))
	}
	b = append(b, m.NA[:]...)
	b = append(b, m.Pub...)
	b = append(b, m.Ignored...)
	return b, nil
}

// Unmarshal parses exactly one whole Init1 (message_len must equal
// len(b)) whose Pub_A belongs to group g, validating the key
// (RFC 8548 §5). It keeps a copy of b. Errors are *MessageError.
func (m *Init1) Unmarshal(b []byte, g kex.Group) error {
	const name = "init1"
	if err := checkHeader(name, b, Init1Magic); err != nil {
		return err
	}
	raw := append([]byte(nil), b...)
	rest := raw[initHeaderLen:]
	if len(rest) < 1 {
		return msgErr(name, "short", "no nciphers field")
	}
	k := int(rest[0])
	rest = rest[1:]
	if k == 0 {
		// Decision (docs/decisions.md, "Malformed Init messages"): an empty sym_cipher_list leaves B
		// nothing to choose; the message is malformed and the connection
		// is aborted.
		return msgErr(name, "no-ciphers", "nciphers = 0")
	}
	if len(rest) < cipherIDLen*k+NonceLen {
		return msgErr(name, "short", "%d bytes after nciphers, need %d for %d ciphers and N_A",
			len(rest), cipherIDLen*k+NonceLen, k)
	}
	ciphers := make([]schedule.AEADID, k)
	for i := range ciphers {
		ciphers[i] = schedule.AEADID(binary.BigEndian.Uint16(rest[cipherIDLen*i:]))
	}
	rest = rest[cipherIDLen*k:]
	var na [NonceLen]byte
	copy(na[:], rest)
	rest = rest[NonceLen:]
	pub, used, err := readPublic(name, g, rest)
	if err != nil {
		return err
	}
	*m = Init1{Ciphers: ciphers, NA: na, Pub: rest[:used:used], Ignored: rest[used:], raw: raw, pub: pub}
	return nil
}

// PublicKey returns the validated Pub_A of a parsed message (nil for a
// message we built).
func (m *Init1) PublicKey() *kex.PublicKey { return m.pub }

// Marshal returns the wire encoding (see Init1.Marshal).
func (m *Init2) Marshal() ([]byte, error) {
	if m.raw != nil {
		return m.raw, nil
	}
	n := initHeaderLen + cipherIDLen + NonceLen + len(m.Pub) + len(m.Ignored)
	if n > MaxMessageLen {
		return nil, msgErr("init2", "too-long", "%d bytes, at most %d", n, MaxMessageLen)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint32(b, Init2Magic)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint16(b, uint16(m.Cipher))
	b = append(b, m.NB[:]...)
	b = append(b, m.Pub...)
	b = append(b, m.Ignored...)
	return b, nil
}

// Unmarshal parses exactly one whole Init2 whose Pub_B belongs to g (see
// Init1.Unmarshal): B's public key, or for a KEM TEP its ciphertext.
func (m *Init2) Unmarshal(b []byte, g kex.Group) error {
	const name = "init2"
	if err := checkHeader(name, b, Init2Magic); err != nil {
		return err
	}
	raw := append([]byte(nil), b...)
	rest := raw[initHeaderLen:]
	if len(rest) < cipherIDLen+NonceLen {
		return msgErr(name, "short", "%d bytes after the header, need %d for sym_cipher and N_B",
			len(rest), cipherIDLen+NonceLen)
	}
	cipher := schedule.AEADID(binary.BigEndian.Uint16(rest))
	rest = rest[cipherIDLen:]
	var nb [NonceLen]byte
	copy(nb[:], rest)
	rest = rest[NonceLen:]
	pub, used, err := readReply(name, g, rest)
	if err != nil {
		return err
	}
	*m = Init2{Cipher: cipher, NB: nb, Pub: rest[:used:used], Ignored: rest[used:], raw: raw, pub: pub}
	return nil
}

// PublicKey returns the validated Pub_B of a parsed message.
func (m *Init2) PublicKey() *kex.PublicKey { return m.pub }

// checkHeader checks magic and message_len of a whole message b.
func checkHeader(name string, b []byte, magic uint32) error {
	if len(b) < initHeaderLen {
		return msgErr(name, "short", "%d bytes, header is %d", len(b), initHeaderLen)
	}
	if got := binary.BigEndian.Uint32(b); got != magic {
		return msgErr(name, "bad-magic", "0x%08x, want 0x%08x", got, magic)
	}
	if l := binary.BigEndian.Uint32(b[4:]); uint64(l) != uint64(len(b)) {
		return msgErr(name, "bad-length", "message_len %d, have %d bytes", l, len(b))
	}
	if len(b) > MaxMessageLen {
		return msgErr(name, "too-long", "%d bytes, at most %d", len(b), MaxMessageLen)
	}
	return nil
}

// readPublic parses the public key at the start of b.
func readPublic(name string, g kex.Group, b []byte) (*kex.PublicKey, int, error) {
	if g == nil {
		return nil, 0, msgErr(name, "bad-public-key", "no key-agreement group")
	}
	pub, used, err := g.ReadPublic(b)
	if err != nil {
		return nil, 0, &MessageError{Message: name, Reason: "bad-public-key", Err: err}
	}
	if used <= 0 || used > len(b) {
		return nil, 0, msgErr(name, "bad-public-key", "group reported %d bytes of %d", used, len(b))
	}
	return pub, used, nil
}

// readReply parses Pub_B at the start of b: a public key, or for a KEM
// TEP a ciphertext, whose rejection has its own reason, "bad-ciphertext".
func readReply(name string, g kex.Group, b []byte) (*kex.PublicKey, int, error) {
	if g == nil {
		return nil, 0, msgErr(name, "bad-public-key", "no key-agreement group")
	}
	pub, used, err := g.ReadReply(b)
	if err != nil {
		reason := "bad-public-key"
		if errors.Is(err, kex.ErrInvalidCiphertext) {
			reason = "bad-ciphertext"
		}
		return nil, 0, &MessageError{Message: name, Reason: reason, Err: err}
	}
	if used <= 0 || used > len(b) {
		return nil, 0, msgErr(name, "bad-public-key", "group reported %d bytes of %d", used, len(b))
	}
	return pub, used, nil
}

// minInit1Len and minInit2Len are the shortest well-formed messages for
// group g: one cipher, no ignored bytes.
func minInit1Len(g kex.Group) int { return initHeaderLen + 1 + cipherIDLen + NonceLen + g.PublicLen() }
func minInit2Len(g kex.Group) int { return initHeaderLen + cipherIDLen + NonceLen + g.ReplyLen() }

// readMessage reads one whole Init message from a byte stream: the 8-byte
// header first, whose magic and message_len are checked before any more is
// read (message_len must be in [minLen, MaxMessageLen]), then exactly the
// rest, so no frame byte that follows is consumed.
func readMessage(r io.Reader, name string, magic uint32, minLen int) ([]byte, error) {
	var hdr [initHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, readErr(name, err)
	}
	if got := binary.BigEndian.Uint32(hdr[:]); got != magic {
		return nil, msgErr(name, "bad-magic", "0x%08x, want 0x%08x", got, magic)
	}
	l := binary.BigEndian.Uint32(hdr[4:])
	minLen = max(minLen, initHeaderLen) // message_len counts the header
	switch {
	case uint64(l) < uint64(minLen):
		return nil, msgErr(name, "bad-length", "message_len %d below the minimum %d", l, minLen)
	case l > MaxMessageLen:
		return nil, msgErr(name, "too-long", "message_len %d above the maximum %d", l, MaxMessageLen)
	}
	b := make([]byte, l)
	copy(b, hdr[:])
	if _, err := io.ReadFull(r, b[initHeaderLen:]); err != nil {
		return nil, readErr(name, err)
	}
	return b, nil
}

func readErr(name string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading %s: %w", name, err)
}
