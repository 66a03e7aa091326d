package frame

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

func TestMaxData(t *testing.T) {
	for _, a := range allAEADs(t) {
		if got := MaxData(a); got != 65518 {
			t.Errorf("MaxData(%v) = %d, want 65518 (RFC 8548 §4.2)", a.ID, got)
		}
	}
	if got := MaxData(nil); got != 0 {
		t.Errorf("MaxData(nil) = %d", got)
	}
}

func TestFrameLen(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		n    int
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"two bytes", []byte{0, 0}, 0, false},
		{"zero clen", []byte{0, 0, 0}, 3, true},
		{"smallest real", []byte{0, 0, 17}, 20, true},
		{"largest", []byte{1, 0xff, 0xff, 9}, 65538, true},
		{"cres ignored", []byte{0xfe, 0x01, 0x00}, 259, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := FrameLen(tc.b)
			if n != tc.n || ok != tc.ok {
				t.Errorf("FrameLen = %d, %v; want %d, %v", n, ok, tc.n, tc.ok)
			}
		})
	}
}

// TestRoundTrip seals frames of random sizes up to MaxData, with and
// without URGp and FINp, for every AEAD, and opens them in stream order.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			for _, d := range []schedule.Direction{schedule.DirAB, schedule.DirBA} {
				const start = 77 // first frame after a 77-byte Init1 (docs/test-vectors.md, frame 0)
				s, o := pair(t, a, d, start)
				sizes := []int{0, 1, 15, 16, 17, 1024, MaxData(a) - 2, MaxData(a)}
				for range 40 {
					sizes = append(sizes, rng.IntN(MaxData(a)+1))
				}
				wantOff := uint64(start)
				for i, n := range sizes {
					data := make([]byte, n)
					for j := range data {
						data[j] = byte(rng.Uint32())
					}
					var urg *uint16
					if i%3 == 1 && n <= MaxData(a)-2 {
						urg = u16(uint16(rng.Uint32()))
					}
					fin := i == len(sizes)-1
					frame := mustSeal(t, s, nil, data, fin, urg)
					if want := HeaderLen + 1 + n + a.Overhead + 2*b2i(urg != nil); len(frame) != want {
						t.Fatalf("frame %d: %d bytes, want %d", i, len(frame), want)
					}
					if l, _ := FrameLen(frame); l != len(frame) {
						t.Fatalf("FrameLen = %d, frame is %d", l, len(frame))
					}
					if o.Offset() != wantOff {
						t.Fatalf("opener offset %d, want %d", o.Offset(), wantOff)
					}
					got := mustOpen(t, o, frame)
					wantOff += uint64(len(frame))
					if s.Offset() != wantOff || o.Offset() != wantOff {
						t.Fatalf("offsets sealer %d opener %d, want %d (3+clen per frame)", s.Offset(), o.Offset(), wantOff)
					}
					if !bytes.Equal(got.data, data) {
						t.Fatalf("frame %d: data mismatch", i)
					}
					var wantFlags byte
					if fin {
						wantFlags |= FlagFIN
					}
					if urg != nil {
						wantFlags |= FlagURG
						if got.urgent != *urg {
							t.Fatalf("urgent = %#x, want %#x", got.urgent, *urg)
						}
					} else if got.urgent != 0 {
						t.Fatalf("urgent = %#x without URGp", got.urgent)
					}
					if got.flags != wantFlags || got.rekeyed {
						t.Fatalf("flags %#x rekeyed %v, want %#x false", got.flags, got.rekeyed, wantFlags)
					}
				}
				if !s.FINSent() || !o.FINReceived() {
					t.Fatalf("FINSent %v FINReceived %v", s.FINSent(), o.FINReceived())
				}
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// rawAEAD builds the AEAD for a traffic key straight from the standard
// library and x/crypto, independently of schedule.AEAD.New.
func rawAEAD(t *testing.T, id schedule.AEADID, key []byte) cipher.AEAD {
	t.Helper()
	if id == schedule.ChaCha20Poly1305 {
		c, err := chacha20poly1305.New(key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKnownAnswerLayout rebuilds frames byte for byte from their RFC 8548
// definition (§3.6 nonce, §4.2 layout, §4.2.1 plaintext, §4.2.2 AD), with
// the AEAD called directly, and compares them with Seal's output. It covers
// a first frame at offset 77 carrying "hello" (like frame 0 in
// docs/test-vectors.md) and its rekey, FIN and URG variants.
func TestKnownAnswerLayout(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			mk := testMK("kat")
			s, err := NewSealer(a, mk, schedule.DirAB, 77)
			if err != nil {
				t.Fatal(err)
			}
			type step struct {
				rekey   bool
				data    string
				fin     bool
				urgent  *uint16
				control byte
				pt      []byte
			}
			steps := []step{
				{data: "hello", control: 0, pt: []byte{0x00, 'h', 'e', 'l', 'l', 'o'}},
				{data: "", control: 0, pt: []byte{0x00}},
				{rekey: true, data: "", control: 1, pt: []byte{0x00}},
				{data: "ab", urgent: u16(0x1234), control: 0, pt: []byte{0x02, 0x12, 0x34, 'a', 'b'}},
				{rekey: true, data: "x", urgent: u16(1), control: 1, pt: []byte{0x02, 0x00, 0x01, 'x'}},
				{data: "", fin: true, control: 0, pt: []byte{0x01}},
			}
			mkj := mk.Clone() // the test's own walk along mk[j]
			off := uint64(77)
			for i, st := range steps {
				if st.rekey {
					s.Rekey()
					mkj.Advance()
				}
				got := mustSeal(t, s, nil, []byte(st.data), st.fin, st.urgent)

				tk := mkj.TrafficKey(a, schedule.DirAB)
				nonce := bytes.Clone(tk.NR)
				var fid [8]byte
				binary.BigEndian.PutUint64(fid[:], off)
				for j := range fid { // frame_ID = zeros || offset; N = frame_ID XOR NR
					nonce[len(nonce)-8+j] ^= fid[j]
				}
				clen := len(st.pt) + 16
				ad := []byte{st.control, byte(clen >> 8), byte(clen)}
				want := append(append([]byte(nil), ad...), rawAEAD(t, a.ID, tk.Key).Seal(nil, nonce, st.pt, ad)...)
				if !bytes.Equal(got, want) {
					t.Fatalf("step %d: frame\n got %x\nwant %x", i, got, want)
				}
				off += uint64(len(want))
			}
			if off != 77+25+20+20+24+23+20 {
				t.Fatalf("test arithmetic: end offset %d", off)
			}
		})
	}
}

// TestTC28_FrameSizeLimit: chunks must keep clen < 2^16 (RFC 8548 §3.6).
func TestTC28_FrameSizeLimit(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, o := pair(t, a, schedule.DirAB, 0)
			max := MaxData(a)
			buf := make([]byte, max+1)
			if _, err := s.Seal(nil, buf, false, nil); err == nil {
				t.Fatal("Seal(MaxData+1) succeeded")
			} else {
				wantErr(t, err, ErrTooLong)
			}
			if _, err := s.Seal(nil, buf[:max-1], false, u16(0)); err == nil {
				t.Fatal("Seal(MaxData-1, URGp) succeeded")
			} else {
				wantErr(t, err, ErrTooLong)
			}
			if s.Offset() != 0 || s.Err() != nil {
				t.Fatalf("ErrTooLong changed the sealer: offset %d err %v", s.Offset(), s.Err())
			}
			f1 := mustSeal(t, s, nil, buf[:max], false, nil)
			f2 := mustSeal(t, s, nil, buf[:max-2], false, u16(7))
			for _, f := range [][]byte{f1, f2} {
				if len(f) != 65538 || binary.BigEndian.Uint16(f[1:3]) != MaxCLen {
					t.Fatalf("largest frame %d bytes clen %d", len(f), binary.BigEndian.Uint16(f[1:3]))
				}
				mustOpen(t, o, f)
			}
		})
	}
}

// TestTC29_OffsetNeverWraps: the frame ID must never repeat under a key, so
// a frame reaching past stream offset 2^64-1 is refused, fatally, on both
// sides.
func TestTC29_OffsetNeverWraps(t *testing.T) {
	a := aead(t, schedule.AES128GCM)
	const empty = HeaderLen + 1 + 16 // 20-byte empty frame
	t.Run("exact end", func(t *testing.T) {
		s, o := pair(t, a, schedule.DirAB, math.MaxUint64-2*empty+1)
		for range 2 {
			mustOpen(t, o, mustSeal(t, s, nil, nil, false, nil))
		}
		if s.Offset() != 0 || o.Offset() != 0 {
			t.Fatalf("offsets after the last byte: %d %d", s.Offset(), o.Offset())
		}
		_, err := s.Seal(nil, nil, false, nil)
		wantErr(t, err, ErrOffsetExhausted)
		_, err = s.Seal(nil, nil, true, nil) // sticky: not even a FIN frame
		wantErr(t, err, ErrOffsetExhausted)
		s.Rekey() // rekeying does not reopen a wrapped stream (Decision)
		_, err = s.Seal(nil, nil, false, nil)
		wantErr(t, err, ErrOffsetExhausted)
		// The opener refuses a frame at the wrapped offset 0.
		s2, _ := pair(t, a, schedule.DirAB, 0)
		_, _, _, _, err = o.Open(nil, mustSeal(t, s2, nil, nil, false, nil))
		wantErr(t, err, ErrOffsetExhausted)
	})
	t.Run("crossing", func(t *testing.T) {
		s, o := pair(t, a, schedule.DirAB, math.MaxUint64-empty) // 21 bytes left
		f := mustSeal(t, s, nil, nil, false, nil)                // 20 fit
		mustOpen(t, o, f)
		if _, err := s.Seal(nil, nil, false, nil); err == nil {
			t.Fatal("frame crossing 2^64 sealed")
		} else {
			wantErr(t, err, ErrOffsetExhausted)
		}
		if _, err := s.Seal(nil, nil, false, nil); err == nil {
			t.Fatal("not sticky")
		}
		// Opener side: a frame that crosses 2^64.
		o2 := pairOpenerAt(t, a, math.MaxUint64-10)
		_, _, _, _, err := o2.Open(nil, f)
		wantErr(t, err, ErrOffsetExhausted)
	})
	t.Run("distinct nonces", func(t *testing.T) {
		// Every frame of a generation has its own offset, hence nonce.
		s, _ := pair(t, a, schedule.DirAB, 0)
		seen := map[[12]byte]bool{}
		for i := range 50 {
			var n [12]byte
			copy(n[:], s.k.nonceFor(s.Offset()))
			if seen[n] {
				t.Fatalf("nonce repeated at frame %d", i)
			}
			seen[n] = true
			mustSeal(t, s, nil, make([]byte, i), false, nil)
		}
	})
}

func pairOpenerAt(t *testing.T, a *schedule.AEAD, off uint64) *Opener {
	t.Helper()
	_, o := pair(t, a, schedule.DirAB, off)
	return o
}

// TestTC30_AuthFailure: a forged frame yields ErrAuth, no plaintext, and
// every later Open fails too.
func TestTC30_AuthFailure(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, o := pair(t, a, schedule.DirAB, 100)
			f1 := mustSeal(t, s, nil, []byte("first"), false, nil)
			f2 := mustSeal(t, s, nil, []byte("second"), false, nil)
			bad := bytes.Clone(f1)
			bad[len(bad)-1] ^= 0x80
			d, _, _, _, err := o.Open(nil, bad)
			wantErr(t, err, ErrAuth)
			if d != nil {
				t.Fatal("data returned from a failed frame")
			}
			if bytes.Contains(bad, []byte("first")) {
				t.Fatal("plaintext left in the frame buffer")
			}
			for _, f := range [][]byte{f1, f2} {
				if _, _, _, _, err := o.Open(nil, f); err == nil {
					t.Fatal("ErrAuth not sticky")
				} else {
					wantErr(t, err, ErrAuth)
				}
			}
		})
	}
}

// TestTC30_EveryBitFlip flips each bit of frames (header and ciphertext):
// each must fail with ErrAuth or a clean length/format error, never yield
// data.
func TestTC30_EveryBitFlip(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, _ := pair(t, a, schedule.DirAB, 5)
			type fr struct {
				name string
				b    []byte
				off  uint64
				gen  uint64 // the receiver's R before this frame
			}
			var frames []fr
			for _, c := range []struct {
				name  string
				data  []byte
				urg   *uint16
				rekey bool
				fin   bool
			}{
				{"empty", nil, nil, false, false},
				{"data", []byte("some data"), nil, false, false},
				{"urgent", []byte("u"), u16(0xbeef), false, false},
				{"rekey", []byte("r"), nil, true, false},
				{"fin", nil, nil, false, true},
			} {
				gen := s.Generation()
				if c.rekey {
					s.Rekey()
				}
				off := s.Offset()
				frames = append(frames, fr{c.name, mustSeal(t, s, nil, c.data, c.fin, c.urg), off, gen})
			}
			// A fresh Opener per flip, at the frame's offset and generation.
			mk := testMK(a.ID.String())
			opener := func(f fr) *Opener {
				m := mk.Clone()
				for range f.gen {
					m.Advance()
				}
				o, err := NewOpener(a, m, schedule.DirAB, f.off)
				if err != nil {
					t.Fatal(err)
				}
				return o
			}
			for _, f := range frames {
				for bit := range len(f.b) * 8 {
					b := bytes.Clone(f.b)
					b[bit/8] ^= 1 << (bit % 8)
					d, _, _, _, err := opener(f).Open(nil, b)
					if err == nil {
						t.Fatalf("%s: flipping bit %d opened: %q", f.name, bit, d)
					}
					if d != nil || !(errors.Is(err, ErrAuth) || errors.Is(err, ErrFrameLength) || errors.Is(err, ErrMalformed)) {
						t.Fatalf("%s: bit %d: data %v err %v", f.name, bit, d, err)
					}
				}
				mustOpen(t, opener(f), bytes.Clone(f.b)) // unflipped, it opens
			}
		})
	}
}

// TestWrongOffsetOrKey: a frame opened at another offset, in the other
// direction or under another generation fails authentication.
func TestWrongOffsetOrKey(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, _ := pair(t, a, schedule.DirAB, 1000)
			f := mustSeal(t, s, nil, []byte("payload"), false, nil)
			mk := testMK(a.ID.String())
			for _, c := range []struct {
				name string
				d    schedule.Direction
				off  uint64
				gen  int
			}{
				{"offset-1", schedule.DirAB, 999, 0},
				{"offset+1", schedule.DirAB, 1001, 0},
				{"offset 0", schedule.DirAB, 0, 0},
				{"offset high bit", schedule.DirAB, 1000 | 1<<63, 0},
				{"direction", schedule.DirBA, 1000, 0},
				{"generation", schedule.DirAB, 1000, 1},
			} {
				m := mk.Clone()
				for range c.gen {
					m.Advance()
				}
				o, err := NewOpener(a, m, c.d, c.off)
				if err != nil {
					t.Fatal(err)
				}
				_, _, _, _, err = o.Open(nil, bytes.Clone(f))
				if !errors.Is(err, ErrAuth) {
					t.Errorf("%s: err %v, want ErrAuth", c.name, err)
				}
			}
		})
	}
}

// TestTC31_FINpOnLastFrameOnly: FINp appears only on the frame sealed with
// fin, and no frame can follow it (RFC 8548 §3.7).
func TestTC31_FINpOnLastFrameOnly(t *testing.T) {
	a := aead(t, schedule.ChaCha20Poly1305)
	s, o := pair(t, a, schedule.DirBA, 0)
	for i := range 5 {
		f := mustSeal(t, s, nil, []byte{byte(i)}, false, nil)
		if got := mustOpen(t, o, f); got.flags&FlagFIN != 0 || o.FINReceived() {
			t.Fatalf("frame %d carries FINp", i)
		}
	}
	if s.FINSent() {
		t.Fatal("FINSent before the FIN frame")
	}
	last := mustSeal(t, s, nil, []byte("bye"), true, nil)
	if got := mustOpen(t, o, last); got.flags != FlagFIN || string(got.data) != "bye" {
		t.Fatalf("last frame flags %#x data %q", got.flags, got.data)
	}
	off := s.Offset()
	for _, c := range []struct {
		fin bool
		urg *uint16
	}{{false, nil}, {true, nil}, {false, u16(1)}} {
		out, err := s.Seal([]byte("keep"), nil, c.fin, c.urg)
		wantErr(t, err, ErrAfterFIN)
		if string(out) != "keep" || s.Offset() != off {
			t.Fatalf("Seal after FIN wrote %q, offset %d", out, s.Offset())
		}
	}
	// The receiving side refuses anything after the FINp frame.
	if !o.FINReceived() {
		t.Fatal("FINReceived false")
	}
	_, _, _, _, err := o.Open(nil, last)
	wantErr(t, err, ErrAfterFIN)
}

// TestOpenMalformed: frames no honest peer sends are refused cleanly.
func TestOpenMalformed(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			mk := testMK("malformed")
			tk := mk.TrafficKey(a, schedule.DirAB)
			raw := rawAEAD(t, a.ID, tk.Key)
			// seal builds an authentic frame around any plaintext at offset 0.
			seal := func(control byte, pt []byte) []byte {
				clen := len(pt) + raw.Overhead()
				ad := []byte{control, byte(clen >> 8), byte(clen)}
				nonce := bytes.Clone(tk.NR) // offset 0: frame_ID is all zero
				return append(ad, raw.Seal(nil, nonce, pt, ad)...)
			}
			for _, c := range []struct {
				name   string
				frame  []byte
				target error
				sticky bool
			}{
				{"empty buffer", nil, ErrFrameLength, false},
				{"two bytes", []byte{0, 0}, ErrFrameLength, false},
				{"short of clen", []byte{0, 0, 20, 1, 2}, ErrFrameLength, false},
				{"longer than clen", append(seal(0, []byte{0}), 0), ErrFrameLength, false},
				{"clen 0", []byte{0, 0, 0}, ErrMalformed, true},
				{"clen below tag", append([]byte{0, 0, 5}, make([]byte, 5)...), ErrMalformed, true},
				{"clen = tag (authentic empty plaintext)", seal(0, nil), ErrMalformed, true},
				{"URGp without urgent", seal(0, []byte{FlagURG, 1}), ErrMalformed, true},
				{"URGp flags only", seal(0, []byte{FlagURG}), ErrMalformed, true},
			} {
				t.Run(c.name, func(t *testing.T) {
					o, err := NewOpener(a, mk, schedule.DirAB, 0)
					if err != nil {
						t.Fatal(err)
					}
					d, _, _, _, err := o.Open(nil, c.frame)
					wantErr(t, err, c.target)
					if d != nil {
						t.Fatal("data returned")
					}
					good := seal(0, []byte{0, 'o', 'k'})
					d, _, _, _, err = o.Open(nil, good)
					if c.sticky {
						wantErr(t, err, c.target)
					} else if err != nil || string(d) != "ok" {
						t.Fatalf("after non-fatal %v: Open = %q, %v", c.target, d, err)
					}
				})
			}
		})
	}
}

// TestTC40_ReservedBits: cres and fres are sent as zero and ignored on
// receipt (RFC 8548 §4.2, §4.2.1).
func TestTC40_ReservedBits(t *testing.T) {
	a := aead(t, schedule.AES256GCM)
	mk := testMK("reserved")
	t.Run("sent as zero", func(t *testing.T) {
		s, err := NewSealer(a, mk, schedule.DirAB, 0)
		if err != nil {
			t.Fatal(err)
		}
		tk := mk.TrafficKey(a, schedule.DirAB)
		raw := rawAEAD(t, a.ID, tk.Key)
		for i, c := range []struct {
			fin bool
			urg *uint16
		}{{false, nil}, {false, u16(0xffff)}, {true, u16(0)}} {
			off := s.Offset()
			f := mustSeal(t, s, nil, []byte("z"), c.fin, c.urg)
			if f[0] != 0 {
				t.Fatalf("frame %d: control %#x", i, f[0])
			}
			nonce := bytes.Clone(tk.NR)
			binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(nonce[4:])^off)
			pt, err := raw.Open(nil, nonce, f[3:], f[:3])
			if err != nil {
				t.Fatal(err)
			}
			if pt[0]&^(FlagFIN|FlagURG) != 0 {
				t.Fatalf("frame %d: fres bits sent: flags %#x", i, pt[0])
			}
		}
	})
	t.Run("ignored on receipt", func(t *testing.T) {
		tk := mk.TrafficKey(a, schedule.DirAB)
		raw := rawAEAD(t, a.ID, tk.Key)
		seal := func(off uint64, control byte, pt []byte) []byte {
			clen := len(pt) + 16
			ad := []byte{control, byte(clen >> 8), byte(clen)}
			nonce := bytes.Clone(tk.NR)
			binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(nonce[4:])^off)
			return append(ad, raw.Seal(nil, nonce, pt, ad)...)
		}
		o, err := NewOpener(a, mk, schedule.DirAB, 0)
		if err != nil {
			t.Fatal(err)
		}
		f1 := seal(0, 0xfe, []byte{0xfc, 'a'}) // every cres and fres bit set
		got := mustOpen(t, o, f1)
		if got.flags != 0 || got.rekeyed || string(got.data) != "a" || o.Generation() != 0 {
			t.Fatalf("cres/fres not ignored: %+v gen %d", got, o.Generation())
		}
		f2 := seal(uint64(len(f1)), 0x80, []byte{0xfc | FlagURG | FlagFIN, 0, 9, 'b'})
		got = mustOpen(t, o, f2)
		if got.flags != FlagFIN|FlagURG || got.urgent != 9 || string(got.data) != "b" {
			t.Fatalf("flags with fres: %+v", got)
		}
	})
}

func TestNewErrors(t *testing.T) {
	a := aead(t, schedule.AES128GCM)
	mk := testMK("new")
	bad := *a
	bad.NonceLen = 4
	for _, c := range []struct {
		name string
		a    *schedule.AEAD
		mk   *schedule.MasterKey
		d    schedule.Direction
	}{
		{"nil aead", nil, mk, schedule.DirAB},
		{"nil mk", a, nil, schedule.DirAB},
		{"bad direction", a, mk, schedule.Direction(7)},
		{"short nonce", &bad, mk, schedule.DirAB},
	} {
		if s, err := NewSealer(c.a, c.mk, c.d, 0); err == nil || s != nil {
			t.Errorf("%s: NewSealer = %v, %v", c.name, s, err)
		}
		if o, err := NewOpener(c.a, c.mk, c.d, 0); err == nil || o != nil {
			t.Errorf("%s: NewOpener = %v, %v", c.name, o, err)
		}
	}
}

func TestZero(t *testing.T) {
	a := aead(t, schedule.AES128GCM)
	s, o := pair(t, a, schedule.DirAB, 0)
	f := mustSeal(t, s, nil, []byte("x"), false, nil)
	smk, omk := s.k.mk, o.k.mk
	s.Zero()
	o.Zero()
	for _, m := range []*schedule.MasterKey{smk, omk} {
		if !bytes.Equal(m.Bytes(), make([]byte, schedule.KLen)) {
			t.Fatal("master key not erased")
		}
	}
	_, err := s.Seal(nil, nil, false, nil)
	wantErr(t, err, ErrZeroed)
	_, _, _, _, err = o.Open(nil, f)
	wantErr(t, err, ErrZeroed)
	s.Rekey() // no effect, no panic
	if s.k.c != nil || o.k.c != nil {
		t.Fatal("AEAD kept after Zero")
	}
}
