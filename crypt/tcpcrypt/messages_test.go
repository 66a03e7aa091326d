package tcpcrypt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// testInit1 builds an Init1 for group g with a real public key.
func testInit1(t testing.TB, g kex.Group, ciphers []schedule.AEADID, ignored []byte) []byte {
	t.Helper()
	k, err := g.GenerateKey(detRand(uint64(g.ID())))
	if err != nil {
		t.Fatal(err)
	}
	m := Init1{Ciphers: ciphers, Pub: k.AppendPublic(nil), Ignored: ignored}
	for i := range m.NA {
		m.NA[i] = byte(i)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testInit2(t testing.TB, g kex.Group, cipher schedule.AEADID, ignored []byte) []byte {
	t.Helper()
	k, err := g.GenerateKey(detRand(uint64(g.ID()) + 100))
	if err != nil {
		t.Fatal(err)
	}
	m := Init2{Cipher: cipher, Pub: k.AppendPublic(nil), Ignored: ignored}
	for i := range m.NB {
		m.NB[i] = byte(0xff - i)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInit1Layout checks the wire layout of RFC 8548 §4.1 against the
// example of X25519 offering AES-128-GCM and ChaCha20.
func TestInit1Layout(t *testing.T) {
	g := mustGroup(t, kex.X25519)
	b := testInit1(t, g, []schedule.AEADID{schedule.AES128GCM, schedule.ChaCha20Poly1305}, nil)
	if len(b) != 77 {
		t.Fatalf("len = %d, want 77", len(b))
	}
	want := unhex(t, "15101a0e 0000004d 02 0001 0010")
	if !bytes.Equal(b[:13], want) {
		t.Fatalf("header = % x, want % x", b[:13], want)
	}
	for i := range NonceLen {
		if b[13+i] != byte(i) {
			t.Fatalf("N_A byte %d = %x", i, b[13+i])
		}
	}
}

// TestInit2Layout checks Init2's layout (RFC 8548 §4.1).
func TestInit2Layout(t *testing.T) {
	g := mustGroup(t, kex.X25519)
	b := testInit2(t, g, schedule.AES128GCM, nil)
	if len(b) != 74 {
		t.Fatalf("len = %d, want 74", len(b))
	}
	if want := unhex(t, "097105e0 0000004a 0001"); !bytes.Equal(b[:10], want) {
		t.Fatalf("header = % x, want % x", b[:10], want)
	}
}

// TestTC12_IgnoredTrailerKept: receivers accept and keep trailing bytes;
// the message bytes are kept exactly as received (TC-12).
func TestTC12_IgnoredTrailerKept(t *testing.T) {
	for _, id := range kex.IDs() {
		g := mustGroup(t, id)
		trailer := []byte("future extension")
		b1 := testInit1(t, g, []schedule.AEADID{schedule.AES128GCM}, trailer)
		var m1 Init1
		if err := m1.Unmarshal(b1, g); err != nil {
			t.Fatalf("%v: init1: %v", id, err)
		}
		if !bytes.Equal(m1.Ignored, trailer) {
			t.Errorf("%v: init1 ignored = %q", id, m1.Ignored)
		}
		if raw, _ := m1.Marshal(); !bytes.Equal(raw, b1) {
			t.Errorf("%v: init1 bytes not kept", id)
		}
		if m1.PublicKey() == nil || len(m1.Pub) != g.PublicLen() {
			t.Errorf("%v: init1 public key not parsed", id)
		}
		b2 := testInit2(t, g, schedule.ChaCha20Poly1305, trailer)
		var m2 Init2
		if err := m2.Unmarshal(b2, g); err != nil {
			t.Fatalf("%v: init2: %v", id, err)
		}
		if !bytes.Equal(m2.Ignored, trailer) || m2.Cipher != schedule.ChaCha20Poly1305 {
			t.Errorf("%v: init2 = %+v", id, m2)
		}
		if raw, _ := m2.Marshal(); !bytes.Equal(raw, b2) {
			t.Errorf("%v: init2 bytes not kept", id)
		}
	}
}

// TestMessageRoundTrip parses random well-formed messages of every group
// and checks that re-encoding the fields gives the same bytes.
func TestMessageRoundTrip(t *testing.T) {
	r := detRand(7)
	for _, id := range kex.IDs() {
		g := mustGroup(t, id)
		for i := range 20 {
			ciphers := make([]schedule.AEADID, 1+i%7)
			var tmp [2]byte
			for j := range ciphers {
				io.ReadFull(r, tmp[:])
				ciphers[j] = schedule.AEADID(binary.BigEndian.Uint16(tmp[:]))
			}
			ign := make([]byte, i*3)
			io.ReadFull(r, ign)
			b := testInit1(t, g, ciphers, ign)
			var m Init1
			if err := m.Unmarshal(b, g); err != nil {
				t.Fatalf("%v: %v", id, err)
			}
			if !slices.Equal(m.Ciphers, ciphers) {
				t.Fatalf("%v: ciphers %v, want %v", id, m.Ciphers, ciphers)
			}
			fresh := Init1{Ciphers: m.Ciphers, NA: m.NA, Pub: m.Pub, Ignored: m.Ignored}
			if enc, err := fresh.Marshal(); err != nil || !bytes.Equal(enc, b) {
				t.Fatalf("%v: re-encoding differs (%v)", id, err)
			}
			b2 := testInit2(t, g, ciphers[0], ign)
			var m2 Init2
			if err := m2.Unmarshal(b2, g); err != nil {
				t.Fatalf("%v: %v", id, err)
			}
			fresh2 := Init2{Cipher: m2.Cipher, NB: m2.NB, Pub: m2.Pub, Ignored: m2.Ignored}
			if enc, err := fresh2.Marshal(); err != nil || !bytes.Equal(enc, b2) {
				t.Fatalf("%v: init2 re-encoding differs (%v)", id, err)
			}
		}
	}
}

// TestMessageNoPrefixParses: no proper prefix of a message is a message
// (message_len must match), and no extension either.
func TestMessageNoPrefixParses(t *testing.T) {
	for _, id := range kex.IDs() {
		g := mustGroup(t, id)
		b1 := testInit1(t, g, []schedule.AEADID{1, 2, 0x10}, nil)
		b2 := testInit2(t, g, 1, nil)
		for n := range len(b1) {
			var m Init1
			if m.Unmarshal(b1[:n], g) == nil {
				t.Fatalf("%v: init1 prefix of %d bytes parsed", id, n)
			}
		}
		for n := range len(b2) {
			var m Init2
			if m.Unmarshal(b2[:n], g) == nil {
				t.Fatalf("%v: init2 prefix of %d bytes parsed", id, n)
			}
		}
		var m Init1
		if m.Unmarshal(append(slices.Clone(b1), 0), g) == nil {
			t.Fatalf("%v: init1 with a byte beyond message_len parsed", id)
		}
	}
}

// TestMessageErrors: every malformed message gets a *MessageError with the
// reason (docs/decisions.md, "Malformed Init messages").
func TestMessageErrors(t *testing.T) {
	g := mustGroup(t, kex.X25519)
	p256 := mustGroup(t, kex.P256)
	good1 := testInit1(t, g, []schedule.AEADID{schedule.AES128GCM}, nil)
	good2 := testInit2(t, g, schedule.AES128GCM, nil)
	set := func(b []byte, off int, v ...byte) []byte {
		b = slices.Clone(b)
		copy(b[off:], v)
		return b
	}
	noCiphers := append(unhex(t, "15101a0e 0000004a 00"), make([]byte, 32+32+1)...)
	binary.BigEndian.PutUint32(noCiphers[4:], uint32(len(noCiphers)))
	badPoint := testInit1(t, p256, []schedule.AEADID{1}, nil)
	badPoint[len(badPoint)-35+2] = 0x05 // not a compressed-point prefix
	tooLong := append(slices.Clone(good1), make([]byte, MaxMessageLen)...)
	binary.BigEndian.PutUint32(tooLong[4:], uint32(len(tooLong)))
	tests := []struct {
		name   string
		init2  bool
		group  kex.Group
		b      []byte
		reason string
	}{
		{"init1 empty", false, g, nil, "short"},
		{"init1 bad magic", false, g, set(good1, 0, 0x15, 0x10, 0x1a, 0x0f), "bad-magic"},
		{"init1 init2 magic", false, g, set(good1, 0, 0x09, 0x71, 0x05, 0xe0), "bad-magic"},
		{"init1 length too big", false, g, set(good1, 4, 0, 0, 0, 78), "bad-length"},
		{"init1 length too small", false, g, set(good1, 4, 0, 0, 0, 8), "bad-length"},
		{"init1 nciphers 0", false, g, noCiphers, "no-ciphers"},
		{"init1 nciphers too many", false, g, set(good1, 8, 40), "short"},
		{"init1 bad point", false, p256, badPoint, "bad-public-key"},
		{"init1 too long", false, g, tooLong, "too-long"},
		{"init2 bad magic", true, g, set(good2, 0, 0, 0, 0, 0), "bad-magic"},
		{"init2 short", true, g, good2[:20], "bad-length"},
		{"init2 length", true, g, set(good2, 7, 75), "bad-length"},
		{"init2 wrong group", true, p256, good2, "bad-public-key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.init2 {
				var m Init2
				err = m.Unmarshal(tc.b, tc.group)
			} else {
				var m Init1
				err = m.Unmarshal(tc.b, tc.group)
			}
			var me *MessageError
			if !errors.As(err, &me) || me.Reason != tc.reason {
				t.Fatalf("error = %v, want reason %q", err, tc.reason)
			}
		})
	}
	var m Init1
	if _, err := m.Marshal(); err == nil {
		t.Error("Marshal with no ciphers succeeded")
	}
	m.Ciphers = make([]schedule.AEADID, 256)
	if _, err := m.Marshal(); err == nil {
		t.Error("Marshal with 256 ciphers succeeded")
	}
}

// TestReadMessage: reading from a stream checks magic and bounds from the
// header alone, and consumes exactly message_len bytes.
func TestReadMessage(t *testing.T) {
	g := mustGroup(t, kex.X25519)
	good := testInit1(t, g, []schedule.AEADID{1}, []byte("xy"))
	r := bytes.NewReader(append(slices.Clone(good), 0xaa, 0xbb))
	b, err := readMessage(r, "init1", Init1Magic, minInit1Len(g))
	if err != nil || !bytes.Equal(b, good) || r.Len() != 2 {
		t.Fatalf("readMessage = %x, %v (left %d)", b, err, r.Len())
	}
	huge := slices.Clone(good)
	binary.BigEndian.PutUint32(huge[4:], 1<<31)
	tests := []struct {
		name   string
		in     []byte
		reason string
		is     error
	}{
		{"bad magic", []byte("GET / HTTP/1.1\r\n"), "bad-magic", nil},
		{"huge length", huge, "too-long", nil},
		{"short length", good[:8:8], "bad-length", nil},
		{"eof in header", good[:5], "", io.ErrUnexpectedEOF},
		{"eof in body", good[:40], "", io.ErrUnexpectedEOF},
		{"empty", nil, "", io.ErrUnexpectedEOF},
	}
	tests[2].in = slices.Clone(good[:8])
	binary.BigEndian.PutUint32(tests[2].in[4:], 20)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readMessage(bytes.NewReader(tc.in), "init1", Init1Magic, minInit1Len(g))
			if tc.is != nil {
				wantErrIs(t, err, tc.is)
				return
			}
			var me *MessageError
			if !errors.As(err, &me) || me.Reason != tc.reason {
				t.Fatalf("error = %v, want reason %q", err, tc.reason)
			}
		})
	}
}

// fuzzMessage checks the parser invariants: no panic; on success the kept
// bytes equal the input and a re-encoding of the fields equals it too.
func fuzzMessage(t *testing.T, b []byte, init2 bool) {
	for _, id := range kex.IDs() {
		g, _ := kex.Lookup(id)
		if init2 {
			var m Init2
			if err := m.Unmarshal(b, g); err != nil {
				continue
			}
			fresh := Init2{Cipher: m.Cipher, NB: m.NB, Pub: m.Pub, Ignored: m.Ignored}
			enc, err := fresh.Marshal()
			if raw, _ := m.Marshal(); err != nil || !bytes.Equal(enc, b) || !bytes.Equal(raw, b) {
				t.Fatalf("%v: init2 round trip differs", id)
			}
			continue
		}
		var m Init1
		if err := m.Unmarshal(b, g); err != nil {
			continue
		}
		fresh := Init1{Ciphers: m.Ciphers, NA: m.NA, Pub: m.Pub, Ignored: m.Ignored}
		enc, err := fresh.Marshal()
		if raw, _ := m.Marshal(); err != nil || !bytes.Equal(enc, b) || !bytes.Equal(raw, b) {
			t.Fatalf("%v: init1 round trip differs", id)
		}
	}
	// The stream reader must agree with Unmarshal on the length checks.
	if _, err := readMessage(bytes.NewReader(b), "m", Init1Magic, 0); err == nil && len(b) < initHeaderLen {
		t.Fatal("readMessage accepted a short message")
	}
}

func FuzzInit1(f *testing.F) {
	for _, id := range kex.IDs() {
		g, _ := kex.Lookup(id)
		f.Add(testInit1(f, g, []schedule.AEADID{1, 2, 0x10}, nil))
		f.Add(testInit1(f, g, []schedule.AEADID{1}, []byte{1, 2, 3}))
	}
	f.Add([]byte{0x15, 0x10, 0x1a, 0x0e, 0, 0, 0, 9, 0})
	f.Fuzz(func(t *testing.T, b []byte) { fuzzMessage(t, b, false) })
}

func FuzzInit2(f *testing.F) {
	for _, id := range kex.IDs() {
		g, _ := kex.Lookup(id)
		f.Add(testInit2(f, g, 1, nil))
		f.Add(testInit2(f, g, 0x10, []byte{9}))
	}
	f.Add([]byte{0x09, 0x71, 0x05, 0xe0, 0, 0, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) { fuzzMessage(t, b, true) })
}
