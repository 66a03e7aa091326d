package eno

import (
	"sync"
	"testing"
)

// Concurrent use from several goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	for range 20 {
		a := NewActive(activeCfg(newFakePolicy(), tepP256, tepX25519))
		b := NewPassive(Config{Policy: newFakePolicy()})
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for _, n := range []*Negotiator{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					n.State()
					n.Result()
					n.PeerAppAware()
					n.Outgoing(false, false)
				}
			}()
		}
		handshake(a, b)
		close(stop)
		wg.Wait()
		mustResult(t, "A", a)
		mustResult(t, "B", b)
	}
}

func BenchmarkParseSYNForm(b *testing.B) {
	opt := append(append(h("45 16 01 21 a3"), ones(9)...), ones(8)...)
	opt[1] = byte(len(opt))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSYNForm(opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOptions(b *testing.B) {
	a := ackArea(NonSYNForm)
	b.ReportAllocs()
	for b.Loop() {
		if enos, _, err := Options(a); err != nil || len(enos) != 1 {
			b.Fatal(enos, err)
		}
	}
}

// BenchmarkHandshake: a whole three-way handshake on both sides.
func BenchmarkHandshake(b *testing.B) {
	pa, pb := newFakePolicy(), newFakePolicy()
	ca, cb := activeCfg(pa, tepP256, tepX25519), Config{Policy: pb}
	b.ReportAllocs()
	for b.Loop() {
		x, y := NewActive(ca), NewPassive(cb)
		handshake(x, y)
		if x.State() != StateEnabled || y.State() != StateEnabled {
			b.Fatal("not enabled")
		}
		pb.valids, pa.valids = pb.valids[:0], pa.valids[:0]
	}
}
