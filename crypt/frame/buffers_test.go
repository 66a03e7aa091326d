package frame

import (
	"bytes"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// TestOpenBufferModes: Open decrypts in place or into dst storage,
// whatever dst aliases, without panicking on overlaps the AEADs refuse.
func TestOpenBufferModes(t *testing.T) {
	msg := []byte("the quick brown fox jumps over the lazy dog")
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			for _, c := range []struct {
				name string
				// dst builds dst from the buffer holding the frame at buf[8:].
				dst     func(buf []byte, n int) []byte
				inPlace bool // data must alias the frame
			}{
				{"nil", func(buf []byte, n int) []byte { return nil }, true},
				{"separate with room", func(buf []byte, n int) []byte { return append(make([]byte, 0, 200), "prefix"...) }, false},
				{"separate too small", func(buf []byte, n int) []byte { return []byte("prefix") }, false},
				{"empty non-nil", func(buf []byte, n int) []byte { return []byte{} }, false},
				{"frame[:0]", func(buf []byte, n int) []byte { return buf[8:8] }, true},
				{"ciphertext[:0]", func(buf []byte, n int) []byte { return buf[8+HeaderLen : 8+HeaderLen] }, true},
				{"header middle", func(buf []byte, n int) []byte { return buf[9:9] }, true},
				{"before frame, overlapping", func(buf []byte, n int) []byte { return buf[:0] }, true},
				{"inside ciphertext", func(buf []byte, n int) []byte { return buf[8+10 : 8+10] }, true},
				{"after frame", func(buf []byte, n int) []byte { return buf[8+n : 8+n] }, false},
			} {
				t.Run(c.name, func(t *testing.T) {
					s, o := pair(t, a, schedule.DirAB, 0)
					for i, urg := range []*uint16{nil, u16(0x0102)} {
						buf := make([]byte, 8, 1024)
						buf = mustSeal(t, s, buf, msg, i == 1, urg)
						n := len(buf) - 8
						frame := buf[8 : 8+n : 8+n]
						wire := bytes.Clone(frame)
						dst := c.dst(buf, n)
						dstBefore := bytes.Clone(dst)
						d, flags, u, _, err := o.Open(dst, frame)
						if err != nil {
							t.Fatalf("Open: %v", err)
						}
						if !bytes.Equal(d, msg) {
							t.Fatalf("data %q", d)
						}
						if urg != nil && (u != *urg || flags != FlagURG|FlagFIN) {
							t.Fatalf("urgent %#x flags %#x", u, flags)
						}
						aliasesFrame := anyOverlap(d, frame)
						if aliasesFrame != c.inPlace {
							t.Fatalf("data aliases frame: %v, want %v", aliasesFrame, c.inPlace)
						}
						if !c.inPlace {
							if !bytes.Equal(frame, wire) {
								t.Fatal("frame modified though dst had its own storage")
							}
							if !bytes.Equal(dst, dstBefore) {
								t.Fatal("dst's own bytes changed")
							}
							if cap(dst)-len(dst) >= len(msg)+3 && !anyOverlap(d, dst[:cap(dst)]) {
								t.Fatal("data not in dst's spare capacity")
							}
						}
					}
				})
			}
		})
	}
}

// TestOpenFailureLeavesNoPlaintext: on ErrAuth the dst spare capacity holds
// no plaintext either.
func TestOpenFailureLeavesNoPlaintext(t *testing.T) {
	for _, a := range allAEADs(t) {
		s, o := pair(t, a, schedule.DirAB, 0)
		secret := bytes.Repeat([]byte("SECRET"), 20)
		f := mustSeal(t, s, nil, secret, false, nil)
		f[1+HeaderLen] ^= 1 // a ciphertext bit: decryption would still yield mostly-plaintext
		dst := make([]byte, 0, 512)
		_, _, _, _, err := o.Open(dst, f)
		wantErr(t, err, ErrAuth)
		if bytes.Contains(dst[:cap(dst)], []byte("SECRET")) {
			t.Fatalf("%v: plaintext left in dst", a.ID)
		}
	}
}

// TestSealBufferModes: Seal appends after dst's contents, in place when
// dst has room, and copes with data aliasing dst's spare capacity.
func TestSealBufferModes(t *testing.T) {
	a := aead(t, schedule.AES128GCM)
	msg := []byte("payload bytes for aliasing checks")
	ref, _ := pair(t, a, schedule.DirAB, 0)
	want := mustSeal(t, ref, nil, msg, false, nil)
	for _, c := range []struct {
		name string
		// build returns dst and data (possibly aliasing dst).
		build func() (dst, data []byte)
	}{
		{"nil", func() ([]byte, []byte) { return nil, bytes.Clone(msg) }},
		{"prefix, no room", func() ([]byte, []byte) { return []byte("pre"), bytes.Clone(msg) }},
		{"prefix, room", func() ([]byte, []byte) { return append(make([]byte, 0, 256), "pre"...), bytes.Clone(msg) }},
		{"data at DataOffset (zero copy)", func() ([]byte, []byte) {
			buf := append(make([]byte, 0, 256), "pre"...)
			data := buf[3+DataOffset(false) : 3+DataOffset(false)+len(msg)]
			copy(data, msg)
			return buf, data
		}},
		{"data where the header goes", func() ([]byte, []byte) {
			buf := append(make([]byte, 0, 256), "pre"...)
			data := buf[3 : 3+len(msg)]
			copy(data, msg)
			return buf, data
		}},
		{"data is dst itself", func() ([]byte, []byte) {
			buf := append(make([]byte, 0, 256), msg...)
			return buf[:0], buf[:len(msg)]
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _ := pair(t, a, schedule.DirAB, 0)
			dst, data := c.build()
			prefix := bytes.Clone(dst)
			out, err := s.Seal(dst, data, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out[:len(prefix)], prefix) || !bytes.Equal(out[len(prefix):], want) {
				t.Fatalf("got %x\nwant %x%x", out, prefix, want)
			}
			if cap(dst)-len(dst) >= len(want) && &out[:1][0] != &dst[:1][0] {
				t.Fatal("Seal reallocated though dst had room")
			}
		})
	}
}

// TestZeroAllocsPerFrame: steady-state Seal into a buffer with room and
// Open in place or into dst allocate nothing.
func TestZeroAllocsPerFrame(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, o := pair(t, a, schedule.DirAB, 0)
			data := make([]byte, 16<<10)
			buf := make([]byte, 0, len(data)+64)
			out := make([]byte, 0, len(data)+64)
			urg := uint16(3)
			var err error
			allocs := testing.AllocsPerRun(50, func() {
				buf, err = s.Seal(buf[:0], data, false, &urg)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, _, _, err = o.Open(nil, buf); err != nil {
					t.Fatal(err)
				}
				buf, err = s.Seal(buf[:0], data, false, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, _, _, err = o.Open(out[:0], buf); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per Seal+Open pair", allocs)
			}
		})
	}
}
