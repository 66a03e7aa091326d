package tcpcrypt

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/cpumeter"
	"github.com/tcpcryptd/tcpcryptd/crypt/internal/kat"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

const hybridTEP = kex.X25519MLKEM768

// TestHybridHandshakeVectors: a fresh x25519mlkem768 handshake from the
// vectors' seeds and nonces (injected through Config.Rand) gives the
// independent Node implementation's Init1, Init2, ES, ss[0], session ID
// and traffic keys on both hosts; a resumption from the ss[1] it cached
// gives the vector's resumed session ID and keys (RFC 8548 §3.3-§3.5
// unchanged by the hybrid TEP).
func TestHybridHandshakeVectors(t *testing.T) {
	for _, hv := range kat.LoadPQ(t).Handshakes {
		t.Run(hv.Name, func(t *testing.T) {
			checkLeaks(t)
			var logA, logB bytes.Buffer
			cfgA := &Config{TEPs: []kex.ID{hybridTEP}, AEADs: aeadIDs(hv.AEADsOffered), KeyLog: &logA,
				Resumption: true, Cache: NewCache(CacheConfig{}), AnswerSpace: 18,
				Rand: bytes.NewReader(bytes.Join([][]byte{hv.PrivA, hv.NA, hv.Resumed.NonceA}, nil))}
			cfgB := &Config{TEPs: []kex.ID{hybridTEP}, AEADs: []schedule.AEADID{schedule.AEADID(hv.AEAD)}, KeyLog: &logB,
				Resumption: true, Cache: NewCache(CacheConfig{}), AnswerSpace: 18,
				Rand: bytes.NewReader(bytes.Join([][]byte{hv.PrivB, hv.NB, hv.Resumed.NonceB}, nil))}
			aead, _ := schedule.LookupAEAD(schedule.AEADID(hv.AEAD))

			// Fresh.
			ra, rb := freshResults(hybridTEP, hv.Transcript)
			pa, pb := pipeStreams(t)
			a, b := &recConn{Conn: pa}, &recConn{Conn: pb}
			ca, cb, errA, errB := runHandshakes(t, cfgA.NewSession(host(cfgB), Policy{}), cfgB.NewSession(host(cfgA), Policy{}), ra, rb, a, b)
			if errA != nil || errB != nil {
				t.Fatalf("handshake: %v / %v", errA, errB)
			}
			if got := hex.EncodeToString(a.bytes()); got != hex.EncodeToString(hv.Init1) {
				t.Errorf("init1 = %s\nwant    %x", got, []byte(hv.Init1))
			}
			if got := hex.EncodeToString(b.bytes()); got != hex.EncodeToString(hv.Init2) {
				t.Errorf("init2 = %s\nwant    %x", got, []byte(hv.Init2))
			}
			for _, c := range []*Conn{ca, cb} {
				if !bytes.Equal(c.SessionID(), hv.SessionID) || c.TEP() != hybridTEP || c.Resumed() {
					t.Errorf("%v: session ID %x tep %v resumed %v", c.Role(), c.SessionID(), c.TEP(), c.Resumed())
				}
			}
			want := fmt.Sprintf("TCPCRYPT_ES %x %x\nTCPCRYPT_SS %x %x\n", hv.SessionID, hv.ES, hv.SessionID, hv.SS0)
			if logA.String() != want || logB.String() != want {
				t.Errorf("key logs:\n%s%s\nwant\n%s", logA.String(), logB.String(), want)
			}
			exchange(t, ca, cb, "hello")
			exchange(t, cb, ca, "world!")
			mk0 := schedule.MasterKeyFromBytes(hv.MK0, 0)
			if got := openAll(t, aead, mk0, schedule.DirAB, uint64(len(hv.Init1)), a.bytes()[len(hv.Init1):]); string(got) != "hello" {
				t.Errorf("A's frame under k_ab[0] = %q", got)
			}
			mk0 = schedule.MasterKeyFromBytes(hv.MK0, 0)
			if got := openAll(t, aead, mk0, schedule.DirBA, uint64(len(hv.Init2)), b.bytes()[len(hv.Init2):]); string(got) != "world!" {
				t.Errorf("B's frame under k_ba[0] = %q", got)
			}
			pa.Close()
			pb.Close()
			ca.Close()
			cb.Close()

			// Resumed with ss[1] through real ENO negotiation.
			sa, sb := cfgA.NewSession(host(cfgB), Policy{}), cfgB.NewSession(host(cfgA), Policy{})
			ra, rb, err := negotiate(t, sa, sb)
			if err != nil || ra.TEPByte != 0x80|byte(hybridTEP) {
				t.Fatalf("negotiation: %v, TEP byte %#x", err, ra.TEPByte)
			}
			pa, pb = pipeStreams(t)
			a, b = &recConn{Conn: pa}, &recConn{Conn: pb}
			ca, cb, errA, errB = runHandshakes(t, sa, sb, ra, rb, a, b)
			if errA != nil || errB != nil {
				t.Fatalf("resumption: %v / %v", errA, errB)
			}
			for _, c := range []*Conn{ca, cb} {
				if !bytes.Equal(c.SessionID(), hv.Resumed.SessionID) || !c.Resumed() {
					t.Errorf("%v: resumed session ID %x, want %x", c.Role(), c.SessionID(), []byte(hv.Resumed.SessionID))
				}
			}
			exchange(t, ca, cb, "again")
			if got := openAll(t, aead, schedule.MasterKeyFromBytes(hv.Resumed.MK0, 0), schedule.DirAB, 0, a.bytes()); string(got) != "again" {
				t.Errorf("resumed frame = %q", got)
			}
			pa.Close()
			pb.Close()
			ca.Close()
			cb.Close()
		})
	}
}

// TestHybridNegotiation: x25519mlkem768 is used only when both hosts list
// it (it is off by default), and then like any TEP, resumption included.
func TestHybridNegotiation(t *testing.T) {
	checkLeaks(t)
	both := []kex.ID{kex.X25519, hybridTEP}
	tests := []struct {
		name   string
		a, b   []kex.ID
		want   kex.ID
		offerA []byte // A's SYN suboption bytes
	}{
		{"both", both, both, hybridTEP, []byte{0x23, 0x20}},
		{"A-only", both, nil, kex.X25519, []byte{0x23, 0x20}},
		{"B-only", nil, both, kex.X25519, []byte{0x22, 0x21, 0x24, 0x23}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfgA, cfgB := &Config{TEPs: tc.a}, &Config{TEPs: tc.b}
			sa := cfgA.NewSession(host(cfgB), Policy{})
			var offer []byte
			for _, s := range sa.Offer() {
				offer = append(offer, s.Byte())
			}
			if !bytes.Equal(offer, tc.offerA) {
				t.Fatalf("A offers % x, want % x", offer, tc.offerA)
			}
			sa.Abandon()
			ca, cb := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
			if ca.TEP() != tc.want || cb.TEP() != tc.want || ca.SessionID()[0] != byte(tc.want) {
				t.Fatalf("TEP %v/%v, session ID %x; want %v", ca.TEP(), cb.TEP(), ca.SessionID(), tc.want)
			}
			exchange(t, ca, cb, "ping")
			exchange(t, cb, ca, "pong")
		})
	}
	t.Run("resumed", func(t *testing.T) {
		cfgA, cfgB := resumeConfigs()
		cfgA.TEPs, cfgB.TEPs = both, both
		connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
		ca, cb := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
		if !ca.Resumed() || !cb.Resumed() || ca.TEP() != hybridTEP || ca.SessionID()[0] != 0xa0 {
			t.Fatalf("resumed %v/%v TEP %v session ID %x", ca.Resumed(), cb.Resumed(), ca.TEP(), ca.SessionID())
		}
		exchange(t, ca, cb, "ping")
	})
	t.Run("default-config-refuses", func(t *testing.T) {
		// A host that did not enable the TEP never runs it, even if ENO
		// somehow reported it.
		a, b := pipeStreams(t)
		ch := startB(t, &Config{}, hybridTEP, b)
		_ = a
		wantHandshakeError(t, <-ch, "unsupported-tep")
	})
}

// TestHybridOfferBudget: listing every TEP, the hybrid included, still
// leaves a resumption offer its full 8-byte nonce within the SYN's option
// space (the resumption suboption of TEP 0x20 is 0xa0 + 9 + 8 bytes), and
// the option parses back.
func TestHybridOfferBudget(t *testing.T) {
	checkLeaks(t)
	all := append(kex.IDs(), hybridTEP) // hybrid most preferred
	cfgA, cfgB := resumeConfigs()
	cfgA.TEPs, cfgB.TEPs = all, all
	connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	s := cfgA.NewSession(host(cfgB), Policy{})
	defer s.Abandon()
	subs := s.Offer()
	last := subs[len(subs)-1]
	if last.Byte() != 0xa0 || len(last.Data) != ResumeHalfLen+DefaultNonceLen {
		t.Fatalf("resumption suboption %+v", last)
	}
	opt, err := eno.AppendSYNForm(nil, 0, false, subs)
	if err != nil || len(opt)-2 > DefaultOfferSpace {
		t.Fatalf("option % x (%v) exceeds %d bytes", opt, err, DefaultOfferSpace)
	}
	parsed, err := eno.ParseSYNForm(opt)
	if err != nil || len(parsed.Subs) != len(subs) || parsed.Subs[len(subs)-1].TEP != 0x20 || !parsed.Subs[len(subs)-1].V {
		t.Fatalf("parsed %+v, %v", parsed, err)
	}
	// Without resumption all five TEPs fit.
	s2 := (&Config{TEPs: all}).NewSession("x", Policy{})
	defer s2.Abandon()
	if n := len(s2.Offer()); n != 5 {
		t.Fatalf("fresh offer lists %d TEPs", n)
	}
}

// TestHybridMalformed: malformed hybrid key material aborts the handshake
// like any malformed Init message, with a reason naming it (RFC 8548 §3.3).
func TestHybridMalformed(t *testing.T) {
	checkLeaks(t)
	pv := kat.LoadPQ(t)
	cfg := &Config{TEPs: []kex.ID{hybridTEP}}
	t.Run("B/ek-modulus", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, cfg, hybridTEP, b)
		raw, _ := (&Init1{Ciphers: []schedule.AEADID{1}, Pub: pv.BadPublicKeys[0]}).Marshal()
		go a.Write(raw)
		wantHandshakeError(t, <-ch, "bad-public-key")
	})
	t.Run("B/short-key", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, cfg, hybridTEP, b)
		raw, _ := (&Init1{Ciphers: []schedule.AEADID{1}, Pub: pv.Kex[0].PubA[:1215]}).Marshal()
		go a.Write(raw)
		wantHandshakeError(t, <-ch, "bad-message") // below the minimum message_len
	})
	t.Run("B/low-order-x25519", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, cfg, hybridTEP, b)
		pub := append(bytes.Clone(pv.Kex[0].PubA[:1184]), make([]byte, 32)...)
		raw, _ := (&Init1{Ciphers: []schedule.AEADID{1}, Pub: pub}).Marshal()
		go a.Write(raw)
		wantHandshakeError(t, <-ch, "zero-secret")
	})
	t.Run("A/low-order-x25519", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startA(t, cfg, hybridTEP, a)
		if _, err := readMessage(b, "init1", Init1Magic, 0); err != nil {
			t.Fatal(err)
		}
		ct := append(bytes.Clone(pv.Kex[0].CtB[:1088]), make([]byte, 32)...)
		raw, _ := (&Init2{Cipher: schedule.AES128GCM, Pub: ct}).Marshal()
		go b.Write(raw)
		wantHandshakeError(t, <-ch, "zero-secret")
	})
	t.Run("A/short-ciphertext", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startA(t, cfg, hybridTEP, a)
		if _, err := readMessage(b, "init1", Init1Magic, 0); err != nil {
			t.Fatal(err)
		}
		raw, _ := (&Init2{Cipher: schedule.AES128GCM, Pub: pv.Kex[0].CtB[:1119]}).Marshal()
		go b.Write(raw)
		wantHandshakeError(t, <-ch, "bad-message")
	})
	t.Run("Init2.Unmarshal/bad-ciphertext", func(t *testing.T) {
		// The reason Unmarshal gives a KEM ciphertext it cannot use.
		raw, _ := (&Init2{Cipher: 1, Pub: make([]byte, 10)}).Marshal()
		var m Init2
		err := m.Unmarshal(raw, mustGroup(t, hybridTEP))
		if me, ok := err.(*MessageError); !ok || me.Reason != "bad-ciphertext" {
			t.Fatalf("err = %v", err)
		}
		if he := msgFailure(err); he.Reason != "bad-ciphertext" {
			t.Fatalf("handshake reason %q", he.Reason)
		}
	})
}

// TestHybridForgedCiphertext: a bit flipped in B's ML-KEM ciphertext on
// the way to A gives A another ES (implicit rejection, no error at the
// handshake), so A cannot authenticate B's first frame: the connection
// aborts with ErrAuth, never delivering data.
func TestHybridForgedCiphertext(t *testing.T) {
	checkLeaks(t)
	cfg := &Config{TEPs: []kex.ID{hybridTEP}}
	a, b := pipeStreams(t)
	ch := startA(t, cfg, hybridTEP, a)
	init1, err := readMessage(b, "init1", Init1Magic, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Be host B by hand, with the real handshake code on a second pipe.
	ib, bb := pipeStreams(t)
	chB := startB(t, cfg, hybridTEP, bb)
	go ib.Write(init1)
	init2, err := readMessage(ib, "init2", Init2Magic, 0)
	if err != nil {
		t.Fatal(err)
	}
	rB := <-chB
	if rB.err != nil {
		t.Fatal(rB.err)
	}
	defer rB.c.Close()
	forged := bytes.Clone(init2)
	forged[initHeaderLen+cipherIDLen+NonceLen+5] ^= 1
	go b.Write(forged)
	rA := <-ch
	if rA.err != nil {
		t.Fatalf("A's handshake failed: %v", rA.err)
	}
	defer rA.c.Close()
	// B's first frame, relayed to A.
	go func() { _, _ = rB.c.Write([]byte("secret")) }()
	go func() { _, _ = io.Copy(b, ib) }()
	buf := make([]byte, 16)
	n, err := rA.c.Read(buf)
	wantErrIs(t, err, ErrAuth)
	if n != 0 {
		t.Fatalf("A delivered %q", buf[:n])
	}
}

// TestHybridWireSizes: bytes on the wire of a fresh handshake (Init1 with
// three AEADs, Init2): 1263 + 1162 for x25519mlkem768 against 79 + 74 for
// X25519, all below MaxMessageLen, even with 255 AEADs.
func TestHybridWireSizes(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		tep          kex.ID
		init1, init2 int
	}{{kex.X25519, 79, 74}, {hybridTEP, 1263, 1162}} {
		cfg := &Config{TEPs: []kex.ID{tc.tep}}
		sa, sb := cfg.NewSession("b", Policy{}), cfg.NewSession("a", Policy{})
		ra, rb, err := negotiate(t, sa, sb)
		if err != nil {
			t.Fatal(err)
		}
		pa, pb := pipeStreams(t)
		a, b := &recConn{Conn: pa}, &recConn{Conn: pb}
		ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, b)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if len(a.bytes()) != tc.init1 || len(b.bytes()) != tc.init2 || a.writes != 1 || b.writes != 1 {
			t.Errorf("%v: init1 %d bytes in %d writes, init2 %d in %d; want %d, %d", tc.tep,
				len(a.bytes()), a.writes, len(b.bytes()), b.writes, tc.init1, tc.init2)
		}
		pa.Close()
		pb.Close()
		ca.Close()
		cb.Close()
	}
	g := mustGroup(t, hybridTEP)
	if n := minInit1Len(g) - cipherIDLen + 255*cipherIDLen; n > MaxMessageLen || minInit2Len(g) > MaxMessageLen {
		t.Fatalf("largest Init1 %d bytes, Init2 %d, above %d", n, minInit2Len(g), MaxMessageLen)
	}
}

// fuzzHybridMessage: parsing never panics, and a parsed message re-encodes
// to its input.
func fuzzHybridMessage(t *testing.T, b []byte, init2 bool) {
	g, _ := kex.Lookup(hybridTEP)
	if init2 {
		var m Init2
		if err := m.Unmarshal(b, g); err != nil {
			return
		}
		enc, err := (&Init2{Cipher: m.Cipher, NB: m.NB, Pub: m.Pub, Ignored: m.Ignored}).Marshal()
		if err != nil || !bytes.Equal(enc, b) || len(m.Pub) != g.ReplyLen() || m.PublicKey() == nil {
			t.Fatal("init2 round trip differs")
		}
		return
	}
	var m Init1
	if err := m.Unmarshal(b, g); err != nil {
		return
	}
	enc, err := (&Init1{Ciphers: m.Ciphers, NA: m.NA, Pub: m.Pub, Ignored: m.Ignored}).Marshal()
	if err != nil || !bytes.Equal(enc, b) || len(m.Pub) != g.PublicLen() || m.PublicKey() == nil {
		t.Fatal("init1 round trip differs")
	}
}

// FuzzInit1X25519MLKEM768 and FuzzInit2X25519MLKEM768 fuzz the Init
// encodings carrying an X-Wing encapsulation key and ciphertext; their
// seeds (the vectors' messages, truncated and extended) run in the normal
// test suite.
func FuzzInit1X25519MLKEM768(f *testing.F) {
	pv := kat.LoadPQ(f)
	for _, hv := range pv.Handshakes {
		f.Add([]byte(hv.Init1))
		f.Add(append(bytes.Clone(hv.Init1), 7))
		f.Add([]byte(hv.Init1[:len(hv.Init1)-1]))
	}
	bad, _ := (&Init1{Ciphers: []schedule.AEADID{1}, Pub: pv.BadPublicKeys[0]}).Marshal()
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) { fuzzHybridMessage(t, b, false) })
}

func FuzzInit2X25519MLKEM768(f *testing.F) {
	for _, hv := range kat.LoadPQ(f).Handshakes {
		f.Add([]byte(hv.Init2))
		f.Add(append(bytes.Clone(hv.Init2), 7, 8))
		f.Add([]byte(hv.Init2[:len(hv.Init2)-1]))
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzHybridMessage(t, b, true) })
}

// BenchmarkHandshakeWire reports the bytes a fresh handshake puts on the
// wire after the SYNs (Init1 + Init2) next to the handshake rate, both
// hosts' CPU in one process.
func BenchmarkHandshakeWire(b *testing.B) {
	for _, tep := range []kex.ID{kex.X25519, hybridTEP} {
		b.Run(tep.String(), func(b *testing.B) {
			cfg := &Config{TEPs: []kex.ID{tep}}
			var wire int
			b.ReportAllocs()
			cpu := cpumeter.Start()
			for b.Loop() {
				sa, sb := cfg.NewSession("b", Policy{}), cfg.NewSession("a", Policy{})
				ra, rb, err := negotiate(b, sa, sb)
				if err != nil {
					b.Fatal(err)
				}
				pa, pb := net.Pipe()
				a, bb := &recConn{Conn: pa}, &recConn{Conn: pb}
				ca, cb, errA, errB := runHandshakes(b, sa, sb, ra, rb, a, bb)
				if errA != nil || errB != nil {
					b.Fatal(errA, errB)
				}
				wire = len(a.bytes()) + len(bb.bytes())
				pa.Close()
				pb.Close()
				ca.Close()
				cb.Close()
			}
			cpu.Report(b)
			b.ReportMetric(float64(wire), "init-bytes/handshake")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}
