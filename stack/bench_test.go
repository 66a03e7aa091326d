package stack

import (
	"io"
	"net/netip"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// BenchmarkThroughput measures one stream between two in-process stacks,
// encrypted (tcpcrypt, negotiated by ENO) and with ENO off (plain TCP), in
// the same run: the difference is the cost of tcpcrypt.
func BenchmarkThroughput(b *testing.B) {
	for _, bc := range []struct {
		name string
		pol  *Policy
	}{
		{"encrypted", nil},
		{"eno-off", &Policy{Default: eno.ModeOff}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPair(b, pairOpts{noCapture: true})
			client, server := dialAccept(b, p, false, 80, bc.pol, nil)
			if client.Encrypted() != (bc.pol == nil) {
				b.Fatalf("encrypted = %v", client.Encrypted())
			}
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, server)
				done <- err
			}()
			buf := pattern(64<<10, "bench")
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			client.CloseWrite()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkConnect measures connection setup between two stacks:
// a fresh tcpcrypt key exchange, a resumed session (RFC 8548 §3.5) and
// plain TCP (ENO off). Each iteration dials, accepts and closes one
// connection.
func BenchmarkConnect(b *testing.B) {
	withCache := func(o *Options) {
		o.TCPCrypt = &tcpcrypt.Config{Resumption: true, Cache: tcpcrypt.NewCache(tcpcrypt.CacheConfig{})}
	}
	for _, bc := range []struct {
		name        string
		mod         func(*Options)
		pol         *Policy
		encrypted   bool
		wantResumed bool
	}{
		{"fresh", nil, nil, true, false},
		{"resumed", withCache, nil, true, true},
		{"plain", nil, &Policy{Default: eno.ModeOff}, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newPair(b, pairOpts{a: bc.mod, b: bc.mod, noCapture: true})
			l, err := p.b.Listen(addrB4, 80, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := ctxT(b)
			go func() {
				for {
					c, err := l.AcceptConn(ctx)
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			dial := func() *Conn {
				c, err := p.a.Dial(ctx, netip.AddrPort{}, netip.AddrPortFrom(addrB4, 80), bc.pol)
				if err != nil {
					b.Fatal(err)
				}
				return c
			}
			dial().Close() // prime the resumption cache
			resumed := 0
			b.ResetTimer()
			for b.Loop() {
				c := dial()
				if c.Encrypted() != bc.encrypted {
					b.Fatalf("encrypted = %v", c.Encrypted())
				}
				if c.Negotiation().Resumed {
					resumed++
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
			if bc.wantResumed && resumed < b.N*9/10 {
				b.Fatalf("only %d of %d connections resumed", resumed, b.N)
			}
		})
	}
}
