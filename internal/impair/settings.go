package impair

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// StripWhich selects the segments an option is stripped from.
type StripWhich uint8

const (
	StripSYN    StripWhich = iota + 1 // SYN without ACK only
	StripSYNACK                       // SYN-ACK only
	StripAll                          // every segment
)

func (w StripWhich) String() string {
	switch w {
	case StripSYN:
		return "SYN"
	case StripSYNACK:
		return "SYN-ACK"
	case StripAll:
		return "all"
	}
	return fmt.Sprintf("StripWhich(%d)", uint8(w))
}

// Strip removes TCP options of one kind (NOPs them out) from chosen segments.
// The zero Strip strips nothing.
type Strip struct {
	Kind  uint8
	Which StripWhich
}

func (s Strip) matches(p *Packet) bool {
	if s.Kind == 0 || !p.IsTCP() {
		return false
	}
	switch s.Which {
	case StripSYN:
		return p.SYN()
	case StripSYNACK:
		return p.SYNACK()
	case StripAll:
		return true
	}
	return false
}

// Settings are the impairments of one direction. The zero value forwards every
// frame unchanged (apart from the MAC rewrite and TTL decrement) at once.
// Probabilities are per frame, in [0, 1].
type Settings struct {
	Drop      float64 // frame is dropped
	Duplicate float64 // frame is sent twice (each copy delayed on its own)
	Corrupt   float64 // one TCP payload byte is flipped, checksum fixed
	Reorder   float64 // frame is held back ReorderDelay longer than the rest

	Delay        time.Duration // fixed delay of every frame
	Jitter       time.Duration // plus a uniform random [0, Jitter): reorders too
	ReorderDelay time.Duration // extra hold of a reordered frame (default 2ms)

	Strip Strip
}

// maxDelay bounds any delay so queues drain in finite time.
const maxDelay = 10 * time.Second

// Validate checks ranges.
func (s Settings) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"Drop", s.Drop}, {"Duplicate", s.Duplicate}, {"Corrupt", s.Corrupt}, {"Reorder", s.Reorder}} {
		if !(p.v >= 0 && p.v <= 1) { // also rejects NaN
			return fmt.Errorf("impair: %s = %v, want a probability in [0, 1]", p.name, p.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Delay", s.Delay}, {"Jitter", s.Jitter}, {"ReorderDelay", s.ReorderDelay}} {
		if d.v < 0 || d.v > maxDelay {
			return fmt.Errorf("impair: %s = %v, want 0..%v", d.name, d.v, maxDelay)
		}
	}
	if s.Strip.Kind != 0 {
		if s.Strip.Kind == OptEOL || s.Strip.Kind == OptNOP {
			return fmt.Errorf("impair: Strip.Kind = %d: EOL and NOP cannot be stripped", s.Strip.Kind)
		}
		if s.Strip.Which < StripSYN || s.Strip.Which > StripAll {
			return fmt.Errorf("impair: Strip.Which = %v, want StripSYN, StripSYNACK or StripAll", s.Strip.Which)
		}
	}
	return nil
}

func (s Settings) reorderDelay() time.Duration {
	if s.ReorderDelay > 0 {
		return s.ReorderDelay
	}
	return 2 * time.Millisecond
}

// verdict is what happens to one frame.
type verdict struct {
	drop      bool
	strip     bool
	corruptAt int  // payload index to corrupt, or -1
	mask      byte // XOR mask for the corrupted byte
	delays    []time.Duration
	reordered int // how many copies were held back
}

// decide draws the random choices for a frame with payload length payLen that
// the Strip rule matches (or not). It is a pure function of the settings and
// the generator's state, so a seed replays a run's decisions.
func (s *Settings) decide(r *rand.Rand, payLen int, stripMatch bool, v *verdict) {
	*v = verdict{corruptAt: -1, delays: v.delays[:0]}
	if s.Drop > 0 && r.Float64() < s.Drop {
		v.drop = true
		return
	}
	v.strip = stripMatch
	if s.Corrupt > 0 && payLen > 0 && r.Float64() < s.Corrupt {
		v.corruptAt = r.IntN(payLen)
		v.mask = byte(1 + r.IntN(255))
	}
	copies := 1
	if s.Duplicate > 0 && r.Float64() < s.Duplicate {
		copies = 2
	}
	for range copies {
		d := s.Delay
		if s.Jitter > 0 {
			d += time.Duration(r.Int64N(int64(s.Jitter)))
		}
		if s.Reorder > 0 && r.Float64() < s.Reorder {
			d += s.reorderDelay()
			v.reordered++
		}
		v.delays = append(v.delays, d)
	}
}
