package tcpcrypt

import (
	"io"
	"net"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// benchConnect runs one whole connection setup, both hosts: ENO
// negotiation through real Negotiators, then both handshakes over
// net.Pipe. It returns whether the session was resumed.
func benchConnect(b *testing.B, cfgA, cfgB *Config) bool {
	sa, sb := cfgA.NewSession(host(cfgB), Policy{}), cfgB.NewSession(host(cfgA), Policy{})
	ra, rb, err := negotiate(b, sa, sb)
	if err != nil {
		b.Fatal(err)
	}
	pa, pb := net.Pipe()
	ca, cb, errA, errB := runHandshakes(b, sa, sb, ra, rb, pa, pb)
	if errA != nil || errB != nil {
		b.Fatal(errA, errB)
	}
	pa.Close()
	pb.Close()
	ca.Close()
	cb.Close()
	return ca.Resumed()
}

// BenchmarkHandshake measures connection setups per second with both
// hosts' CPU in one process: .../fresh is a key exchange with Init1 and
// Init2 (ECDHE, or X-Wing for x25519mlkem768), .../resumed a resumption
// from the cache (no public-key operations).
func BenchmarkHandshake(b *testing.B) {
	for _, tep := range kex.AllIDs() {
		b.Run(tep.String()+"/fresh", func(b *testing.B) {
			cfg := &Config{TEPs: []kex.ID{tep}}
			b.ReportAllocs()
			for b.Loop() {
				benchConnect(b, cfg, cfg)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
		b.Run(tep.String()+"/resumed", func(b *testing.B) {
			cfgA := &Config{TEPs: []kex.ID{tep}, Resumption: true, Cache: NewCache(CacheConfig{})}
			cfgB := &Config{TEPs: []kex.ID{tep}, Resumption: true, Cache: NewCache(CacheConfig{})}
			benchConnect(b, cfgA, cfgB)
			b.ReportAllocs()
			for b.Loop() {
				if !benchConnect(b, cfgA, cfgB) {
					b.Fatal("not resumed")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkConnWrite measures Write -> Read throughput of 64 KiB writes
// over net.Pipe (one frame per write; both directions' CPU).
func BenchmarkConnWrite(b *testing.B) {
	for _, id := range []schedule.AEADID{schedule.AES128GCM, schedule.AES256GCM, schedule.ChaCha20Poly1305} {
		b.Run(id.String(), func(b *testing.B) {
			cfg := &Config{AEADs: []schedule.AEADID{id}}
			ca, cb := connPair(b, cfg, cfg, Policy{}, Policy{}, pipeStreams)
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, cb); close(done) }()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ca.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			ca.CloseWrite()
			<-done
		})
	}
}
