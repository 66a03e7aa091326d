package frame

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// TestTC34_RekeyBitOnFirstFrameOnly: rekey = 1 exactly on the first frame
// after Rekey, over several rekeys (RFC 8548 §3.8).
func TestTC34_RekeyBitOnFirstFrameOnly(t *testing.T) {
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			s, o := pair(t, a, schedule.DirAB, 0)
			for gen := uint64(0); gen < 5; gen++ {
				if gen > 0 {
					s.Rekey()
				}
				if s.Generation() != gen || s.Bytes() != 0 {
					t.Fatalf("L = %d bytes %d, want %d 0", s.Generation(), s.Bytes(), gen)
				}
				var sent uint64
				for i := range 3 {
					f := mustSeal(t, s, nil, []byte(fmt.Sprint(gen, i)), false, nil)
					sent += uint64(len(f))
					wantRekey := gen > 0 && i == 0
					if got := f[0] == ControlRekey; got != wantRekey {
						t.Fatalf("gen %d frame %d: control %#x, want rekey=%v", gen, i, f[0], wantRekey)
					}
					got := mustOpen(t, o, f)
					if got.rekeyed != wantRekey || o.Generation() != gen {
						t.Fatalf("gen %d frame %d: rekeyed %v R %d", gen, i, got.rekeyed, o.Generation())
					}
					if string(got.data) != fmt.Sprint(gen, i) {
						t.Fatalf("data %q", got.data)
					}
				}
				if s.Bytes() != sent {
					t.Fatalf("Bytes = %d, want %d", s.Bytes(), sent)
				}
			}
		})
	}
}

// host is one end of a simulated connection: it seals with its Sealer and
// opens the peer's frames with its Opener, applying the RFC 8548 §3.8 rule
// the connection implements (TC-35): after a rekey frame, if R > L, set
// L := R and send a frame with rekey = 1 at once.
type host struct {
	s *Sealer
	o *Opener
}

func (h *host) receive(t *testing.T, frames []byte) (reply []byte, data [][]byte) {
	t.Helper()
	for _, f := range splitFrames(t, frames) {
		got := mustOpen(t, h.o, f)
		data = append(data, got.data)
		if got.rekeyed && h.o.Generation() > h.s.Generation() {
			h.s.Rekey()
			if h.s.Generation() != h.o.Generation() {
				t.Fatalf("L = %d after catching up with R = %d", h.s.Generation(), h.o.Generation())
			}
			reply = mustSeal(t, h.s, reply, nil, false, nil)
		}
	}
	return reply, data
}

func newHosts(t *testing.T, a *schedule.AEAD) (hA, hB *host) {
	t.Helper()
	mk := testMK("hosts " + a.ID.String())
	defer mk.Zero()
	mustNew := func(s *Sealer, err error) *Sealer {
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustNewO := func(o *Opener, err error) *Opener {
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	// A's stream starts after a 77-byte Init1, B's after a 51-byte Init2.
	hA = &host{mustNew(NewSealer(a, mk, schedule.DirAB, 77)), mustNewO(NewOpener(a, mk, schedule.DirBA, 51))}
	hB = &host{mustNew(NewSealer(a, mk, schedule.DirBA, 51)), mustNewO(NewOpener(a, mk, schedule.DirAB, 77))}
	return hA, hB
}

// TestTC35_RekeySequencesBothDirections runs random traffic with rekeys
// started by either side; generations stay in step: each side's L equals
// the other's R once the frames in flight are delivered.
func TestTC35_RekeySequencesBothDirections(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, a := range allAEADs(t) {
		t.Run(a.ID.String(), func(t *testing.T) {
			hA, hB := newHosts(t, a)
			hosts := [2]*host{hA, hB}
			var rekeys [2]int
			for step := range 200 {
				i := rng.IntN(2)
				me, peer := hosts[i], hosts[1-i]
				if rng.IntN(4) == 0 {
					me.s.Rekey()
					rekeys[i]++
				}
				msg := fmt.Appendf(nil, "step %d from %d", step, i)
				out := mustSeal(t, me.s, nil, msg, false, nil)
				reply, data := peer.receive(t, out)
				if len(data) != 1 || !bytes.Equal(data[0], msg) {
					t.Fatalf("step %d: got %q", step, data)
				}
				if reply != nil {
					if back, _ := me.receive(t, reply); back != nil {
						t.Fatalf("step %d: rekey answered twice (ping-pong)", step)
					}
				}
				for _, h := range hosts {
					if h.s.Generation() != h.o.Generation() {
						t.Fatalf("step %d: a host has L=%d R=%d", step, h.s.Generation(), h.o.Generation())
					}
				}
				if hA.s.Generation() != hB.o.Generation() || hB.s.Generation() != hA.o.Generation() {
					t.Fatalf("step %d: out of step", step)
				}
			}
			if rekeys[0] < 3 || rekeys[1] < 3 {
				t.Fatalf("too few rekeys to mean anything: %v", rekeys)
			}
			t.Logf("final generation %d after %v rekeys", hA.s.Generation(), rekeys)
		})
	}
}

// TestTC35_ConcurrentRekeys: both hosts start a rekey before seeing the
// other's; neither must answer, both end at generation 1.
func TestTC35_ConcurrentRekeys(t *testing.T) {
	hA, hB := newHosts(t, aead(t, schedule.AES128GCM))
	hA.s.Rekey()
	hB.s.Rekey()
	fa := mustSeal(t, hA.s, nil, nil, false, nil)
	fb := mustSeal(t, hB.s, nil, nil, false, nil)
	if r, _ := hB.receive(t, fa); r != nil {
		t.Fatal("B answered a rekey it had already made")
	}
	if r, _ := hA.receive(t, fb); r != nil {
		t.Fatal("A answered a rekey it had already made")
	}
	for _, h := range []*host{hA, hB} {
		if h.s.Generation() != 1 || h.o.Generation() != 1 {
			t.Fatalf("L %d R %d", h.s.Generation(), h.o.Generation())
		}
	}
}

// TestTC35_RekeyTwiceBeforeSealing: Rekey called twice before any frame
// (e.g. our own rekey, then catching up with a peer that went two ahead)
// makes Seal emit an empty rekey frame for the skipped generation, so the
// peer's R reaches our L.
func TestTC35_RekeyTwiceBeforeSealing(t *testing.T) {
	for _, a := range allAEADs(t) {
		s, o := pair(t, a, schedule.DirAB, 0)
		mustOpen(t, o, mustSeal(t, s, nil, []byte("gen0"), false, nil))
		s.Rekey()
		s.Rekey()
		s.Rekey()
		if s.Generation() != 3 {
			t.Fatalf("L = %d", s.Generation())
		}
		out := mustSeal(t, s, nil, []byte("gen3"), true, u16(5))
		fs := splitFrames(t, out)
		if len(fs) != 3 {
			t.Fatalf("%d frames, want 2 empty rekey frames + data", len(fs))
		}
		for i, f := range fs {
			got := mustOpen(t, o, f)
			if !got.rekeyed || o.Generation() != uint64(i+1) {
				t.Fatalf("frame %d: rekeyed %v R %d", i, got.rekeyed, o.Generation())
			}
			if i < 2 && (len(got.data) != 0 || got.flags != 0) {
				t.Fatalf("filler frame %d: data %q flags %#x", i, got.data, got.flags)
			}
			if i == 2 && (string(got.data) != "gen3" || got.flags != FlagFIN|FlagURG || got.urgent != 5) {
				t.Fatalf("data frame: %+v", got)
			}
		}
		if s.Bytes() != uint64(len(fs[2])) {
			t.Fatalf("Bytes = %d, want %d", s.Bytes(), len(fs[2]))
		}
	}
}

// TestTC36_GenerationsExposed: what the connection needs to obey the
// one-outstanding-empty-rekey rule (TC-36) and to answer rekeys (TC-35):
// L (Sealer.Generation), R (Opener.Generation), the rekeyed result of Open
// and Sealer.FINSent.
func TestTC36_GenerationsExposed(t *testing.T) {
	hA, hB := newHosts(t, aead(t, schedule.AES128GCM))
	// A probes liveness with an empty rekey frame (RFC 8548 §3.9).
	hA.s.Rekey()
	probe := mustSeal(t, hA.s, nil, nil, false, nil)
	// While R < L, the connection must not start another empty rekey; it
	// can tell from the exposed generations.
	outstanding := hA.o.Generation() < hA.s.Generation()
	if !outstanding {
		t.Fatal("outstanding rekey not visible")
	}
	answer, _ := hB.receive(t, probe)
	if answer == nil {
		t.Fatal("B did not answer the probe")
	}
	hA.receive(t, answer)
	if hA.o.Generation() != hA.s.Generation() {
		t.Fatal("answer did not complete the rekey")
	}
	// After FIN the connection must not answer (TC-35), but L still follows R.
	mustSeal(t, hB.s, nil, nil, true, nil)
	if !hB.s.FINSent() {
		t.Fatal("FINSent false")
	}
	hA.s.Rekey()
	f := mustSeal(t, hA.s, nil, nil, false, nil)
	got := mustOpen(t, hB.o, f)
	if !got.rekeyed || hB.o.Generation() <= hB.s.Generation() {
		t.Fatal("B should see R > L")
	}
	hB.s.Rekey()
	if hB.s.Generation() != hB.o.Generation() {
		t.Fatal("L := R after FIN")
	}
	if _, err := hB.s.Seal(nil, nil, false, nil); err == nil {
		t.Fatal("frame after FINp")
	}
}

// TestTC37_RetransmissionUsesOriginalBytes: frames sealed before a rekey
// are final bytes; retransmitting them (TCP resending the same sequence
// numbers) needs no key, and the receiver decrypts them under the original
// generation. The Sealer cannot seal under an old generation at all.
func TestTC37_RetransmissionUsesOriginalBytes(t *testing.T) {
	a := aead(t, schedule.AES128GCM)
	s, _ := pair(t, a, schedule.DirAB, 0)
	var stream []byte
	stream = mustSeal(t, s, stream, []byte("before rekey"), false, nil)
	copyOfFirst := bytes.Clone(stream)
	s.Rekey()
	stream = mustSeal(t, s, stream, []byte("after rekey"), false, nil)
	if !bytes.Equal(stream[:len(copyOfFirst)], copyOfFirst) {
		t.Fatal("sealing after a rekey changed earlier frame bytes")
	}
	if s.k.gen != 1 {
		t.Fatalf("sealer still holds generation %d", s.k.gen)
	}
	// A receiver that lost everything and gets the retransmitted stream.
	_, o := pair(t, a, schedule.DirAB, 0)
	fs := splitFrames(t, stream)
	if got := mustOpen(t, o, fs[0]); string(got.data) != "before rekey" || o.Generation() != 0 {
		t.Fatalf("retransmitted frame: %+v R %d", got, o.Generation())
	}
	if got := mustOpen(t, o, fs[1]); string(got.data) != "after rekey" || o.Generation() != 1 {
		t.Fatalf("%+v R %d", got, o.Generation())
	}
}

// TestTC38_OldKeysErased: after a rekey neither side holds the previous
// generation's master key, and each holds its own copy of mk[0].
func TestTC38_OldKeysErased(t *testing.T) {
	a := aead(t, schedule.ChaCha20Poly1305)
	mk := testMK("erase")
	mk0 := mk.Bytes()
	s, err := NewSealer(a, mk, schedule.DirAB, 0)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(a, mk, schedule.DirAB, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.k.mk == mk || o.k.mk == mk || s.k.mk == o.k.mk {
		t.Fatal("master key shared instead of copied")
	}
	mk1 := mk.Clone()
	mk1.Advance()
	s.Rekey() // erases mk[0] at once: nothing of generation 0 is still to be sealed
	if got := s.k.mk.Bytes(); bytes.Equal(got, mk0) || !bytes.Equal(got, mk1.Bytes()) {
		t.Fatal("sealer does not hold exactly mk[1]")
	}
	if !bytes.Equal(mk.Bytes(), mk0) {
		t.Fatal("caller's mk[0] changed")
	}
	mustOpen(t, o, mustSeal(t, s, nil, []byte("x"), false, nil))
	if got := o.k.mk.Bytes(); bytes.Equal(got, mk0) || !bytes.Equal(got, mk1.Bytes()) {
		t.Fatal("opener does not hold exactly mk[1]")
	}
	// The traffic keys derived along the way are erased too.
	tk := mk1.TrafficKey(a, schedule.DirAB)
	if bytes.Equal(tk.Key, make([]byte, len(tk.Key))) {
		t.Fatal("test derivation broken")
	}
}

// TestGenerationLimit: Rekey far ahead of the frames sent is refused.
func TestGenerationLimit(t *testing.T) {
	s, _ := pair(t, aead(t, schedule.AES128GCM), schedule.DirAB, 0)
	for range maxPendingRekeys {
		s.Rekey()
	}
	if s.Err() != nil {
		t.Fatalf("%d pending rekeys refused: %v", maxPendingRekeys, s.Err())
	}
	s.Rekey()
	_, err := s.Seal(nil, nil, false, nil)
	wantErr(t, err, ErrGenerationExhausted)
}

// TestZeroCopyWithPendingRekeyFrames: data placed at DataOffset in dst's
// spare capacity (the zero-copy path) survives the empty rekey frames that
// Seal writes in front of it when the sealer owes some (TC-35 catch-up).
func TestZeroCopyWithPendingRekeyFrames(t *testing.T) {
	for _, a := range allAEADs(t) {
		for _, rekeys := range []int{0, 1, 2, 3} {
			s, o := pair(t, a, schedule.DirAB, 0)
			mustOpen(t, o, mustSeal(t, s, nil, []byte("gen0"), false, nil))
			for range rekeys {
				s.Rekey()
			}
			want := make([]byte, 3000)
			for i := range want {
				want[i] = byte(i * 7)
			}
			buf := make([]byte, 0, 8192)
			off := DataOffset(false)
			data := buf[off : off+len(want)]
			copy(data, want)
			out, err := s.Seal(buf, data, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			fs := splitFrames(t, out)
			t.Logf("%v rekeys=%d frames=%d", a.ID, rekeys, len(fs))
			for _, f := range fs[:len(fs)-1] {
				mustOpen(t, o, f)
			}
			got := mustOpen(t, o, fs[len(fs)-1])
			if !bytes.Equal(got.data, want) {
				t.Fatalf("%v, %d rekeys: data corrupted", a.ID, rekeys)
			}
		}
	}
}
