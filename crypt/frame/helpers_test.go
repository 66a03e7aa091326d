package frame

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// allAEADs returns every AEAD of RFC 8548 §6 Table 3.
func allAEADs(tb testing.TB) []*schedule.AEAD {
	tb.Helper()
	var as []*schedule.AEAD
	for _, id := range []schedule.AEADID{schedule.AES128GCM, schedule.AES256GCM, schedule.ChaCha20Poly1305} {
		a, ok := schedule.LookupAEAD(id)
		if !ok {
			tb.Fatalf("LookupAEAD(%v) failed", id)
		}
		as = append(as, a)
	}
	return as
}

func aead(tb testing.TB, id schedule.AEADID) *schedule.AEAD {
	tb.Helper()
	a, ok := schedule.LookupAEAD(id)
	if !ok {
		tb.Fatalf("LookupAEAD(%v) failed", id)
	}
	return a
}

// testMK returns a deterministic mk[0] derived from label.
func testMK(label string) *schedule.MasterKey {
	sum := sha256.Sum256([]byte("frame test mk0 " + label))
	return schedule.MasterKeyFromBytes(sum[:], 0)
}

// pair builds the Sealer and Opener of one direction from the same mk[0],
// as the two ends of a connection would.
func pair(tb testing.TB, a *schedule.AEAD, d schedule.Direction, offset uint64) (*Sealer, *Opener) {
	tb.Helper()
	mk := testMK(a.ID.String())
	defer mk.Zero()
	s, err := NewSealer(a, mk, d, offset)
	if err != nil {
		tb.Fatalf("NewSealer: %v", err)
	}
	o, err := NewOpener(a, mk, d, offset)
	if err != nil {
		tb.Fatalf("NewOpener: %v", err)
	}
	return s, o
}

// newSealerWithKey builds a Sealer keyed directly with K and NR (no master
// key, so it cannot rekey), for known-answer vectors. rekeyBit makes the
// first frame carry rekey = 1, as the first frame of a new generation does.
func newSealerWithKey(a *schedule.AEAD, key, nr []byte, gen, offset uint64, rekeyBit bool) (*Sealer, error) {
	s := &Sealer{offset: offset, rekeyBit: rekeyBit}
	if err := s.k.initRaw(a, key, nr, gen); err != nil {
		return nil, err
	}
	s.gen = gen
	return s, nil
}

// newOpenerWithKey builds an Opener keyed directly with K and NR at
// generation gen (no master key, so a rekey = 1 frame fails to open).
func newOpenerWithKey(a *schedule.AEAD, key, nr []byte, gen, offset uint64) (*Opener, error) {
	o := &Opener{offset: offset}
	if err := o.k.initRaw(a, key, nr, gen); err != nil {
		return nil, err
	}
	return o, nil
}

func mustSeal(tb testing.TB, s *Sealer, dst, data []byte, fin bool, urgent *uint16) []byte {
	tb.Helper()
	out, err := s.Seal(dst, data, fin, urgent)
	if err != nil {
		tb.Fatalf("Seal(%d bytes, fin=%v, urg=%v): %v", len(data), fin, urgent != nil, err)
	}
	return out
}

type opened struct {
	data    []byte
	flags   byte
	urgent  uint16
	rekeyed bool
}

func mustOpen(tb testing.TB, o *Opener, frame []byte) opened {
	tb.Helper()
	d, f, u, r, err := o.Open(nil, frame)
	if err != nil {
		tb.Fatalf("Open(%d-byte frame at offset %d): %v", len(frame), o.Offset(), err)
	}
	return opened{bytes.Clone(d), f, u, r}
}

// splitFrames cuts a stream of back-to-back frames into frames.
func splitFrames(tb testing.TB, b []byte) [][]byte {
	tb.Helper()
	var fs [][]byte
	for len(b) > 0 {
		n, ok := FrameLen(b)
		if !ok || n > len(b) {
			tb.Fatalf("truncated frame stream: %d bytes left", len(b))
		}
		fs = append(fs, b[:n:n])
		b = b[n:]
	}
	return fs
}

func wantErr(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error = %v, want %v", err, target)
	}
}

func u16(v uint16) *uint16 { return &v }
