package impair

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Captured is one frame seen on the wire.
type Captured struct {
	Time  time.Time
	Frame []byte
}

// Capture records the frames seen on one interface, both directions, like
// tcpdump without a filter. Frames are kept in memory up to a byte limit;
// later ones are counted but not kept.
//
// One goroutine reads until Stop; Stop waits for it.
type Capture struct {
	pc   *packetConn
	done chan struct{}

	mu      sync.Mutex // guards the fields below
	frames  []Captured
	bytes   int
	max     int
	dropped int // frames not kept (over the byte limit)
}

// NewCapture starts capturing on ifname, keeping at most maxBytes of frames
// (<= 0: 64 MiB). Like NewBridge it must be called from a thread in the
// interface's network namespace.
func NewCapture(ifname string, maxBytes int) (*Capture, error) {
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	pc, err := openPacket(ifname, false, 8<<20)
	if err != nil {
		return nil, err
	}
	c := &Capture{pc: pc, done: make(chan struct{}), max: maxBytes}
	go c.read()
	return c, nil
}

// read runs until the socket is closed by Stop.
func (c *Capture) read() {
	defer close(c.done)
	// Large enough for the 64 KiB GSO frames a veth with offloads carries.
	buf := make([]byte, 1<<17)
	for {
		n, err := c.pc.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		if c.bytes+n > c.max {
			c.dropped++
		} else {
			c.frames = append(c.frames, Captured{Time: now, Frame: bytes.Clone(buf[:n])})
			c.bytes += n
		}
		c.mu.Unlock()
	}
}

// Stop ends the capture and returns what it kept. Frames already queued on
// the socket are read first (for up to a second), so a capture stopped right
// after the traffic still holds all of it. Stop is idempotent.
func (c *Capture) Stop() []Captured {
	deadline := time.Now().Add(time.Second)
	for c.pc.pending() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c.pc.Close()
	<-c.done
	return c.Frames()
}

// Frames returns a copy of the frame list so far.
func (c *Capture) Frames() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.frames...)
}

// Dropped returns how many frames were seen but not kept.
func (c *Capture) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Segments parses the TCP segments among frames (skipping everything else).
func Segments(frames []Captured) []Packet {
	var out []Packet
	for _, f := range frames {
		p, err := ParseFrame(f.Frame)
		if err == nil && p.IsTCP() {
			out = append(out, p)
		}
	}
	return out
}

// Streams reassembles the payload of every TCP flow direction in segs by
// sequence number (relative to the first sequence number seen, or the SYN's):
// retransmissions and duplicates overlap harmlessly, and holes (bytes the
// capture missed) are left as zeros. It is for searching captured bytes, not
// for a faithful TCP receiver.
func Streams(segs []Packet) map[FlowKey][]byte {
	type piece struct {
		off  int64
		data []byte
	}
	isn := map[FlowKey]uint32{}
	pieces := map[FlowKey][]piece{}
	for i := range segs {
		p := &segs[i]
		k := p.Flow()
		base, ok := isn[k]
		if p.Flags&FlagSYN != 0 {
			base, ok = p.Seq+1, true
			isn[k] = base
		}
		if p.PayLen == 0 {
			continue
		}
		if !ok {
			base = p.Seq
			isn[k] = base
		}
		off := int64(int32(p.Seq - base)) // serial-number arithmetic (RFC 1982)
		if off < 0 {
			continue
		}
		pieces[k] = append(pieces[k], piece{off: off, data: p.Payload()})
	}
	out := make(map[FlowKey][]byte, len(pieces))
	for k, ps := range pieces {
		sort.Slice(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
		var end int64
		for _, p := range ps {
			end = max(end, p.off+int64(len(p.data)))
		}
		if end > 1<<30 {
			continue // nonsense offsets: not a stream we can rebuild
		}
		b := make([]byte, end)
		for _, p := range ps {
			copy(b[p.off:], p.data)
		}
		out[k] = b
	}
	return out
}

// HexDump formats b as offset, hex bytes and ASCII, 16 bytes a line.
func HexDump(b []byte) string {
	var s bytes.Buffer
	for i := 0; i < len(b); i += 16 {
		line := b[i:min(i+16, len(b))]
		fmt.Fprintf(&s, "  %04x ", i)
		for j := range 16 {
			if j < len(line) {
				fmt.Fprintf(&s, " %02x", line[j])
			} else {
				s.WriteString("   ")
			}
		}
		s.WriteString("  |")
		for _, c := range line {
			if c >= 0x20 && c < 0x7f {
				s.WriteByte(c)
			} else {
				s.WriteByte('.')
			}
		}
		s.WriteString("|\n")
	}
	return s.String()
}

// Describe is a one-line summary of a TCP segment, tcpdump-style, with the
// options spelled out (ENO with its body in hex).
func Describe(p *Packet) string {
	if !p.IsTCP() {
		return fmt.Sprintf("IPv%d %s > %s proto %d", p.Version, p.Src, p.Dst, p.Proto)
	}
	flags := ""
	for _, f := range []struct {
		bit  uint8
		name string
	}{{FlagSYN, "S"}, {FlagFIN, "F"}, {FlagRST, "R"}, {FlagPSH, "P"}, {FlagACK, "."}} {
		if p.Flags&f.bit != 0 {
			flags += f.name
		}
	}
	opts, err := p.Options()
	var os []string
	for _, o := range opts {
		switch o.Kind {
		case OptNOP:
			os = append(os, "nop")
		case 2:
			os = append(os, "mss")
		case 3:
			os = append(os, "wscale")
		case 4:
			os = append(os, "sackOK")
		case 5:
			os = append(os, "sack")
		case 8:
			os = append(os, "TS")
		case OptENO:
			os = append(os, fmt.Sprintf("ENO[%x]", o.Data))
		default:
			os = append(os, fmt.Sprintf("opt-%d", o.Kind))
		}
	}
	if err != nil {
		os = append(os, "(malformed)")
	}
	return fmt.Sprintf("%s > %s [%s] seq %d len %d options %v", p.Flow().Src, p.Flow().Dst, flags, p.Seq, p.PayLen, os)
}
