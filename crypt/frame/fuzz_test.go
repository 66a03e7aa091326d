package frame

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// seedFrames returns real frames built by the same Sealer calls the table
// tests use, for each AEAD, as (aead index, offset, frame) seeds.
func seedFrames(tb testing.TB) (seeds []struct {
	ai    uint8
	off   uint64
	frame []byte
}) {
	for ai, a := range allAEADs(tb) {
		s, _ := pair(tb, a, schedule.DirAB, 77)
		for _, c := range []struct {
			data  []byte
			urg   *uint16
			rekey bool
			fin   bool
		}{
			{[]byte("hello"), nil, false, false},
			{nil, nil, false, false},
			{[]byte("urgent"), u16(2), false, false},
			{[]byte("r"), nil, true, false},
			{bytes.Repeat([]byte{0xa5}, 300), nil, false, false},
			{nil, nil, false, true},
		} {
			if c.rekey {
				s.Rekey()
			}
			off := s.Offset()
			f := mustSeal(tb, s, nil, c.data, c.fin, c.urg)
			seeds = append(seeds, struct {
				ai    uint8
				off   uint64
				frame []byte
			}{uint8(ai), off, f})
		}
	}
	return seeds
}

// FuzzOpen feeds arbitrary bytes to an Opener: it must never panic, must
// fail with one of its errors, and whatever it accepts must be a frame the
// Sealer would produce for the returned data (authentic round trip).
func FuzzOpen(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s.ai, s.off, s.frame, false)
		f.Add(s.ai, s.off, s.frame, true)
		f.Add(s.ai, s.off, s.frame[:len(s.frame)-1], false)
	}
	f.Add(uint8(0), uint64(0), []byte{0, 0, 0}, false)
	f.Add(uint8(1), ^uint64(0), []byte{1, 0, 17}, false)
	as := allAEADs(f)
	f.Fuzz(func(t *testing.T, ai uint8, off uint64, frame []byte, withDst bool) {
		a := as[int(ai)%len(as)]
		_, o := pair(t, a, schedule.DirAB, off)
		var dst []byte
		if withDst {
			dst = make([]byte, 2, 64)
		}
		in := bytes.Clone(frame)
		d, flags, urgent, rekeyed, err := o.Open(dst, in)
		if err != nil {
			if d != nil {
				t.Fatal("data with an error")
			}
			for _, target := range []error{ErrAuth, ErrMalformed, ErrFrameLength, ErrOffsetExhausted} {
				if errors.Is(err, target) {
					return
				}
			}
			t.Fatalf("unexpected error %v", err)
		}
		if flags&^(FlagFIN|FlagURG) != 0 {
			t.Fatalf("flags %#x", flags)
		}
		// Accepted: re-sealing the same content at the same point gives the
		// same bytes, except reserved bits the sender never sets.
		s, _ := pair(t, a, schedule.DirAB, off)
		if rekeyed {
			s.Rekey()
		}
		var urg *uint16
		if flags&FlagURG != 0 {
			urg = &urgent
		}
		re := mustSeal(t, s, nil, d, flags&FlagFIN != 0, urg)
		if frame[0]&^ControlRekey == 0 && !bytes.Equal(re, frame) {
			t.Fatalf("accepted frame %x does not re-seal: %x", frame, re)
		}
		if len(re) != len(frame) || (re[0]^frame[0])&ControlRekey != 0 {
			t.Fatalf("accepted frame %x does not re-seal: %x", frame, re)
		}
	})
}

// FuzzFrameLen: FrameLen never panics and agrees with the header.
func FuzzFrameLen(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s.frame)
		f.Add(s.frame[:2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := FrameLen(b)
		if ok != (len(b) >= HeaderLen) {
			t.Fatalf("ok = %v for %d bytes", ok, len(b))
		}
		if ok && (n < HeaderLen || n > HeaderLen+MaxCLen || n != HeaderLen+(int(b[1])<<8|int(b[2]))) {
			t.Fatalf("FrameLen = %d for header %x", n, b[:3])
		}
	})
}
