package frame

import (
	"bytes"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// Known-answer frames from ../testdata/vectors.json, computed by an
// independent Python implementation (gen_vectors.py, python3-cryptography).

type (
	frameVector     = kat.Frame
	handshakeVector = kat.Handshake
)

func loadVectors(t *testing.T) *kat.File { return kat.Load(t) }

// TestVectorFrames seals and opens each frame from its raw traffic key.
func TestVectorFrames(t *testing.T) {
	for i, fv := range loadVectors(t).Frames {
		a := aead(t, schedule.AEADID(fv.AEAD))
		rekey := fv.Control&ControlRekey != 0
		s, err := newSealerWithKey(a, fv.Key, fv.NR, 0, fv.Offset, rekey)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := mustSeal(t, s, nil, fv.Data, fv.Flags&FlagFIN != 0, fv.Urgent)
		if !bytes.Equal(got, fv.Wire) {
			t.Errorf("frame %d (%v, offset %d): sealed\n got %x\nwant %x", i, fv.AEAD, fv.Offset, got, fv.Wire)
		}
		if rekey {
			continue // a raw-key Opener cannot step generations: see TestVectorStream
		}
		o, err := newOpenerWithKey(a, fv.Key, fv.NR, 0, fv.Offset)
		if err != nil {
			t.Fatal(err)
		}
		d, flags, urg, rekeyed, err := o.Open(nil, bytes.Clone(fv.Wire))
		if err != nil {
			t.Fatalf("frame %d: Open: %v", i, err)
		}
		if !bytes.Equal(d, fv.Data) || flags != fv.Flags || rekeyed {
			t.Errorf("frame %d: opened %x flags %#x rekeyed %v", i, d, flags, rekeyed)
		}
		if fv.Urgent != nil && urg != *fv.Urgent {
			t.Errorf("frame %d: urgent %#x, want %#x", i, urg, *fv.Urgent)
		}
	}
}

// TestVectorStream replays A's and B's streams of handshake
// x25519-aes128gcm from mk[0]: A's frames 0, 4, 5 (rekey = 1 under
// k_ab[1]) and 6 (FINp) at consecutive offsets starting after Init1, B's
// frame 3 starting after Init2. This pins the offset convention (Init bytes
// count) and the rekey walk against the independent implementation.
func TestVectorStream(t *testing.T) {
	v := loadVectors(t)
	h := v.Handshakes[0]
	if h.Name != "x25519-aes128gcm" {
		t.Fatalf("handshake 0 is %q", h.Name)
	}
	a := aead(t, schedule.AEADID(h.AEAD))
	mk := schedule.MasterKeyFromBytes(h.MK0, 0)
	if mk == nil {
		t.Fatal("mk0 length")
	}
	sA, err := NewSealer(a, mk, schedule.DirAB, uint64(len(h.Init1)))
	if err != nil {
		t.Fatal(err)
	}
	oA, err := NewOpener(a, mk, schedule.DirAB, uint64(len(h.Init1)))
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, i := range []int{0, 4, 5, 6} {
		fv := v.Frames[i]
		if fv.Offset != sA.Offset() {
			t.Fatalf("frame %d: vector offset %d, sealer at %d", i, fv.Offset, sA.Offset())
		}
		if fv.Control&ControlRekey != 0 {
			sA.Rekey()
		}
		stream = mustSeal(t, sA, stream, fv.Data, fv.Flags&FlagFIN != 0, fv.Urgent)
		got := mustOpen(t, oA, bytes.Clone(fv.Wire))
		if !bytes.Equal(got.data, fv.Data) || got.flags != fv.Flags || got.rekeyed != (fv.Control != 0) {
			t.Fatalf("frame %d: opened %+v", i, got)
		}
	}
	want := append(append(append(append([]byte(nil), v.Frames[0].Wire...), v.Frames[4].Wire...), v.Frames[5].Wire...), v.Frames[6].Wire...)
	if !bytes.Equal(stream, want) {
		t.Fatalf("A's stream\n got %x\nwant %x", stream, want)
	}
	if sA.Generation() != 1 || oA.Generation() != 1 || !oA.FINReceived() {
		t.Fatalf("L %d R %d FIN %v", sA.Generation(), oA.Generation(), oA.FINReceived())
	}

	sB, err := NewSealer(a, mk, schedule.DirBA, uint64(len(h.Init2)))
	if err != nil {
		t.Fatal(err)
	}
	fv := v.Frames[3]
	if got := mustSeal(t, sB, nil, fv.Data, false, nil); !bytes.Equal(got, fv.Wire) {
		t.Fatalf("B's first frame\n got %x\nwant %x", got, fv.Wire)
	}
}
