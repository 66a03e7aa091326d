package stack

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// randReader is a deterministic stream of pseudo-random bytes.
type randReader struct{ r *rand.ChaCha8 }

func (r randReader) Read(b []byte) (int, error) { return r.r.Read(b) }

// sendHashed writes n deterministic bytes to w and returns their SHA-256.
func sendHashed(w io.Writer, n int64, seed byte) ([32]byte, error) {
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(randReader{rand.NewChaCha8([32]byte{seed})}, n), h)
	_, err := io.CopyBuffer(w, src, make([]byte, 256<<10))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// recvHashed reads exactly n bytes from r and returns their SHA-256.
func recvHashed(r io.Reader, n int64) ([32]byte, int64, error) {
	h := sha256.New()
	got, err := io.CopyBuffer(h, io.LimitReader(r, n), make([]byte, 256<<10))
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, got, err
}

// Large encrypted transfers over a wire that loses, duplicates and
// reorders packets (both directions at once) arrive intact (SHA-256).
func TestLossyTransferSHA256(t *testing.T) {
	t.Run("fresh", func(t *testing.T) { lossyTransfer(t, false) })
	t.Run("resumed", func(t *testing.T) { lossyTransfer(t, true) })
}

// lossyTransfer runs the transfer on a fresh session, or on a session
// resumed (RFC 8548 §3.5) from one made on the same impaired wire.
func lossyTransfer(t *testing.T, resumed bool) {
	size := int64(50 << 20)
	if testing.Short() || raceEnabled {
		size = 5 << 20
	}
	impair := func(seed uint64) wiretest.Hook {
		return wiretest.Chain(
			wiretest.Loss(0.005, seed),
			wiretest.Duplicate(0.005, seed+1),
			wiretest.Reorder(0.01, 3*time.Millisecond, seed+2),
		)
	}
	po := pairOpts{hookAB: impair(1), hookBA: impair(10), noCapture: true}
	if resumed {
		var ha, hb resumingHost
		po.a, po.b = ha.options, hb.options
	}
	p := newPair(t, po)
	if resumed {
		c, s := dialAccept(t, p, false, 79, nil, nil)
		exchange(t, c, s, []byte("prime"), []byte("the cache"))
	}
	client, server := dialAccept(t, p, false, 80, nil, nil)
	checkEncrypted(t, client, server)
	if client.Negotiation().Resumed != resumed || server.Negotiation().Resumed != resumed {
		t.Fatalf("resumed client=%v server=%v, want %v", client.Negotiation().Resumed, server.Negotiation().Resumed, resumed)
	}

	// One direction at a time, and no half-close during the bulk: with
	// data flowing both ways every ACK carries data, and gVisor counts only
	// data-less ACKs as duplicates (sender.isDupAck), so losses wait for
	// RTOs; after the receiver half-closes, gVisor's sender also recovers
	// mostly by RTO (measured, plain TCP too). Each direction still sees
	// impaired data and impaired ACKs.
	start := time.Now()
	transfer := func(w, r *Conn, n int64, seed byte) (sent, got [32]byte, nr int64, err error) {
		var werr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sent, werr = sendHashed(w, n, seed) }()
		got, nr, err = recvHashed(r, n)
		wg.Wait()
		return sent, got, nr, errors.Join(werr, err)
	}
	sentAB, gotAB, nAB, errAB := transfer(client, server, size, 1)
	t.Logf("a->b done after %v", time.Since(start))
	sentBA, gotBA, nBA, errBA := transfer(server, client, size/4, 2)
	exchange(t, client, server, []byte("end a"), []byte("end b")) // FINp both ways, clean EOF
	if err := errors.Join(errAB, errBA); err != nil {
		t.Fatal(err)
	}
	if nAB != size || nBA != size/4 || gotAB != sentAB || gotBA != sentBA {
		t.Fatalf("a->b %d/%d bytes hash ok %v; b->a %d/%d hash ok %v", nAB, size, gotAB == sentAB, nBA, size/4, gotBA == sentBA)
	}
	el := time.Since(start)
	t.Logf("%d MiB + %d MiB in %v (%.1f MB/s); wire: dropped %d, duplicated %d, delayed %d",
		size>>20, size>>22, el, float64(size+size/4)/el.Seconds()/1e6,
		p.hub.Stats.Dropped.Load(), p.hub.Stats.Duplicated.Load(), p.hub.Stats.Delayed.Load())
	if p.hub.Stats.Dropped.Load() == 0 || p.hub.Stats.Duplicated.Load() == 0 || p.hub.Stats.Delayed.Load() == 0 {
		t.Fatal("the wire did not impair the transfer")
	}
}

// Resumption between two stacks (RFC 8548 §3.5): the second connection
// resumes from the first one's session secret on both ends, with a new
// session ID.
func TestResumptionBetweenStacks(t *testing.T) {
	withCache := func(o *Options) {
		o.TCPCrypt = &tcpcrypt.Config{Resumption: true, Cache: tcpcrypt.NewCache(tcpcrypt.CacheConfig{})}
	}
	p := newPair(t, pairOpts{a: withCache, b: withCache})
	var ids [][]byte
	for i := range 3 {
		port := uint16(80 + i)
		client, server := dialAccept(t, p, i == 2, port, nil, nil)
		checkEncrypted(t, client, server)
		cn, sn := client.Negotiation(), server.Negotiation()
		wantResumed := i == 1 // the third connection is IPv6: another peer, no cached secret
		if cn.Resumed != wantResumed || sn.Resumed != wantResumed {
			t.Fatalf("connection %d: resumed client=%v server=%v, want %v", i, cn.Resumed, sn.Resumed, wantResumed)
		}
		exchange(t, client, server, []byte("resumed?"), []byte("yes"))
		for _, id := range ids {
			if bytes.Equal(id, cn.SessionID) {
				t.Fatal("session ID reused")
			}
		}
		ids = append(ids, cn.SessionID)
		// Resumption SYNs carry the v bit and resumption data (RFC 8548 §3.5).
		for _, s := range p.capAB.Segments() {
			if s.SYNOnly() && s.Dst.Port() == port {
				t.Logf("connection %d SYN ENO % x", i, s.ENO())
			}
		}
	}
}

// Policy off: no ENO on the wire at all (not even a vacuous option), plain
// TCP, reason policy-off.
func TestPolicyOffSendsNoENO(t *testing.T) {
	p := newPair(t, pairOpts{})
	client, server := dialAccept(t, p, false, 80, &Policy{Default: eno.ModeOff}, nil)
	if client.Encrypted() || server.Encrypted() {
		t.Fatal("encrypted with policy off")
	}
	for _, s := range append(p.capAB.Segments(), p.capBA.Segments()...) {
		if len(s.ENO()) > 0 {
			t.Fatalf("ENO % x on the wire with policy off", s.ENO())
		}
	}
	exchange(t, client, server, []byte("plain"), []byte("plain"))
}

// On the forwarder's inner legs (between the host's kernel and us, a round
// trip of microseconds) a bulk transfer retransmits nothing in either
// direction. With SACK, and so gVisor's RACK tail loss probes (2·SRTT, no
// floor), it retransmitted spuriously and kept shrinking the congestion
// window; the shim drops SACK-permitted from SYNs the forwarder takes (see
// configureTCP).
func TestNoSpuriousRetransmitsOnInnerLeg(t *testing.T) {
	tr := newTrio(t, false, ForwarderOptions{}, nil)
	n := int64(48 << 20)
	if raceEnabled {
		n = 12 << 20 // the race detector slows the copy tenfold
	}
	l, err := tr.s.Listen(addrS4, 81, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echo := make(chan error, 1)
	received := make(chan struct{}) // the upload is all at the server
	go func() {
		defer close(received)
		c, err := l.Accept()
		if err != nil {
			echo <- err
			return
		}
		defer c.Close()
		if _, _, err := recvHashed(c, n); err != nil {
			echo <- fmt.Errorf("server receive: %w", err)
			return
		}
		received <- struct{}{}
		_, err = sendHashed(c, n, 9)
		echo <- err
	}()
	c, err := tr.c.Dial(ctxT(t), netip.AddrPortFrom(addrC4, 0), netip.AddrPortFrom(addrS4, 81), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := sendHashed(c, n, 7); err != nil {
		t.Fatalf("upload: %v", err)
	}
	// Uploading, the inner leg's sender is the client stack (alone on it).
	if r := tr.c.gv.Stats().TCP.Retransmits.Value(); r != 0 {
		t.Errorf("upload: the client retransmitted %d segments on a lossless inner leg", r)
	}
	// The forwarder's outer leg (SACK, RACK) may retransmit until the
	// upload is all at the server; count from there.
	<-received
	fwdBefore := tr.f.gv.Stats().TCP.Retransmits.Value()
	if _, got, err := recvHashed(c, n); err != nil {
		t.Fatalf("download: %d of %d bytes: %v", got, n, err)
	}
	if err := <-echo; err != nil {
		t.Fatal(err)
	}
	// Downloading, the forwarder sends on the inner leg and only
	// acknowledges on the outer one.
	if r := tr.f.gv.Stats().TCP.Retransmits.Value() - fwdBefore; r != 0 {
		t.Errorf("download: the forwarder retransmitted %d segments on a lossless inner leg", r)
	}
}
