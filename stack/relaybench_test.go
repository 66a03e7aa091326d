package stack

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// BenchmarkRelay measures the forwarder's relay between two stacks, plain
// and encrypted on the outer leg: bulk (64 KiB writes one way) and
// request-response (100 bytes each way per op, so each direction parks
// and wakes once per message).
func BenchmarkRelay(b *testing.B) {
	for _, enc := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tcpcrypt"}[enc]
		setup := func(b *testing.B) (c net.Conn, sc net.Conn) {
			tr := newTrio(b, enc, ForwarderOptions{}, nil)
			l, err := tr.s.Listen(addrS4, 80, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := l.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			dc, err := tr.c.Dial(ctxT(b), netip.AddrPort{}, netip.AddrPortFrom(addrS4, 80), nil)
			if err != nil {
				b.Fatal(err)
			}
			sc = <-accepted
			b.Cleanup(func() { dc.Close(); sc.Close() })
			return dc, sc
		}
		b.Run(name+"/bulk", func(b *testing.B) {
			c, sc := setup(b)
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, sc)
				done <- err
			}()
			buf := pattern(64<<10, "relay")
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*Conn).CloseWrite()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
		b.Run(name+"/rr", func(b *testing.B) {
			c, sc := setup(b)
			go func() {
				buf := make([]byte, 100)
				for {
					if _, err := io.ReadFull(sc, buf); err != nil {
						return
					}
					if _, err := sc.Write(buf); err != nil {
						return
					}
				}
			}()
			msg := pattern(100, "rr")
			got := make([]byte, 100)
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
