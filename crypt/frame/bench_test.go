package frame

import (
	"crypto/cipher"
	"fmt"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Benchmarks of the framing layer beside the bare AEAD on the same sizes,
// so the framing overhead reads off one run:
//
//	go test ./crypt/frame -run '^$' -bench . -benchtime 1s -count 3

var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"16KiB", 16 << 10}, {"64KiB", -1}} // -1: MaxData

func benchCases(b *testing.B, f func(b *testing.B, a *schedule.AEAD, n int)) {
	for _, a := range allAEADs(b) {
		for _, sz := range benchSizes {
			n := sz.n
			if n < 0 {
				n = MaxData(a)
			}
			b.Run(fmt.Sprintf("%v/%s", a.ID, sz.name), func(b *testing.B) { f(b, a, n) })
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	benchCases(b, func(b *testing.B, a *schedule.AEAD, n int) {
		s, _ := pair(b, a, schedule.DirAB, 0)
		data := make([]byte, n)
		buf := make([]byte, 0, n+64)
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = s.Seal(buf[:0], data, false, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSealZeroCopy seals data the caller already placed at
// DataOffset in the output buffer, so Seal moves no bytes itself.
func BenchmarkSealZeroCopy(b *testing.B) {
	benchCases(b, func(b *testing.B, a *schedule.AEAD, n int) {
		s, _ := pair(b, a, schedule.DirAB, 0)
		buf := make([]byte, 0, n+64)
		data := buf[DataOffset(false) : DataOffset(false)+n]
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = s.Seal(buf[:0], data, false, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	benchCases(b, func(b *testing.B, a *schedule.AEAD, n int) {
		s, o := pair(b, a, schedule.DirAB, 0)
		frame := mustSeal(b, s, nil, make([]byte, n), false, nil)
		out := make([]byte, 0, n+64)
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			o.offset = 0 // reopen the same frame; into out, so frame stays intact
			if _, _, _, _, err := o.Open(out[:0], frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func rawBenchAEAD(b *testing.B, a *schedule.AEAD) (cipher.AEAD, []byte, []byte) {
	c, err := a.New(make([]byte, a.KeyLen))
	if err != nil {
		b.Fatal(err)
	}
	return c, make([]byte, a.NonceLen), []byte{0, 0, 0}
}

// BenchmarkRawAEADSeal is cipher.AEAD.Seal alone on the same data sizes.
func BenchmarkRawAEADSeal(b *testing.B) {
	benchCases(b, func(b *testing.B, a *schedule.AEAD, n int) {
		c, nonce, ad := rawBenchAEAD(b, a)
		data := make([]byte, n)
		buf := make([]byte, 0, n+64)
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			buf = c.Seal(buf[:0], nonce, data, ad)
		}
	})
}

// BenchmarkRawAEADOpen is cipher.AEAD.Open alone on the same data sizes.
func BenchmarkRawAEADOpen(b *testing.B) {
	benchCases(b, func(b *testing.B, a *schedule.AEAD, n int) {
		c, nonce, ad := rawBenchAEAD(b, a)
		ct := c.Seal(nil, nonce, make([]byte, n), ad)
		out := make([]byte, 0, n+64)
		b.SetBytes(int64(n))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Open(out[:0], nonce, ct, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
