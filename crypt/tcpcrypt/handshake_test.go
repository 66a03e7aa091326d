package tcpcrypt

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/frame"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// TestHandshakeVectors: from the same fixed inputs (private keys and
// nonces injected through Config.Rand), our Init1, Init2, session IDs and
// first frames equal those of the independent implementation in
// crypt/testdata/vectors.json (TC-8, TC-13; frame offsets after Init, TC-10).
func TestHandshakeVectors(t *testing.T) {
	v := loadVectors(t)
	for _, hv := range v.Handshakes {
		t.Run(hv.Name, func(t *testing.T) {
			checkLeaks(t)
			tep := kex.ID(hv.TEP)
			cfgA := &Config{TEPs: []kex.ID{tep}, AEADs: aeadIDs(hv.AEADsOffered),
				Rand: bytes.NewReader(append([]byte(hv.PrivA), []byte(hv.NA)...))}
			// B's preference: the vector's choice first.
			cfgB := &Config{TEPs: []kex.ID{tep}, AEADs: []schedule.AEADID{schedule.AEADID(hv.AEAD), schedule.AES128GCM, schedule.AES256GCM, schedule.ChaCha20Poly1305},
				Rand: bytes.NewReader(append([]byte(hv.PrivB), []byte(hv.NB)...))}
			sa, sb := cfgA.NewSession("b", Policy{}), cfgB.NewSession("a", Policy{})
			ra, rb := freshResults(tep, []byte(hv.Transcript))
			pa, pb := net.Pipe()
			a, b := &recConn{Conn: pa}, &recConn{Conn: pb}
			ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, b)
			if errA != nil || errB != nil {
				t.Fatalf("handshake: %v / %v", errA, errB)
			}
			defer func() { pa.Close(); pb.Close(); ca.Close(); cb.Close() }()
			if got := hex.EncodeToString(a.bytes()); got != hex.EncodeToString(hv.Init1) {
				t.Errorf("init1 = %s\nwant    %s", got, hv.Init1)
			}
			if got := hex.EncodeToString(b.bytes()); got != hex.EncodeToString(hv.Init2) {
				t.Errorf("init2 = %s\nwant    %s", got, hv.Init2)
			}
			for _, c := range []*Conn{ca, cb} {
				if got := hex.EncodeToString(c.SessionID()); got != hex.EncodeToString(hv.SessionID) {
					t.Errorf("%v: session ID = %s, want %x", c.Role(), got, hv.SessionID)
				}
				if c.AEAD() != schedule.AEADID(hv.AEAD) || c.TEP() != tep || c.Resumed() {
					t.Errorf("%v: aead %v tep %v resumed %v", c.Role(), c.AEAD(), c.TEP(), c.Resumed())
				}
			}
			if hv.Name != "x25519-aes128gcm" {
				return
			}
			// Frames 0 (A, "hello" at offset 77) and 3 (B, "world!" at 74).
			exchange(t, ca, cb, "hello")
			if got, want := hex.EncodeToString(a.bytes()[len(hv.Init1):]), hex.EncodeToString(v.Frames[0].Wire); got != want {
				t.Errorf("A's first frame = %s, want %s", got, want)
			}
			exchange(t, cb, ca, "world!")
			if got, want := hex.EncodeToString(b.bytes()[len(hv.Init2):]), hex.EncodeToString(v.Frames[3].Wire); got != want {
				t.Errorf("B's first frame = %s, want %s", got, want)
			}
			// Frames 4..6 (urgent data, an empty rekey frame under k_ab[1],
			// an empty FINp frame) written raw on A's side: B delivers the
			// urgent data inline, answers the rekey at once (TC-35) and
			// reports EOF only at FINp (TC-32).
			go io.Copy(io.Discard, pa) // A's side drains B's answer
			var raw []byte
			for _, i := range []int{4, 5, 6} {
				raw = append(raw, []byte(v.Frames[i].Wire)...)
			}
			go pa.Write(raw)
			got, err := io.ReadAll(cb)
			if err != nil || string(got) != "urgent data" {
				t.Fatalf("B read %q, %v", got, err)
			}
			// B's answer: one empty frame, rekey = 1, under k_ba[1], right
			// after frame 3 (offset 74+26 = 100).
			aead, _ := schedule.LookupAEAD(schedule.AEADID(hv.AEAD))
			mk := schedule.MasterKeyFromBytes([]byte(hv.MK0), 0)
			op, err := frame.NewOpener(aead, mk, schedule.DirBA, 100)
			if err != nil {
				t.Fatal(err)
			}
			ans := b.bytes()[100:]
			if len(ans) != 20 {
				t.Fatalf("B sent %d bytes after its first frame, want one 20-byte rekey frame", len(ans))
			}
			data, flags, _, rekeyed, err := op.Open(nil, ans)
			if err != nil || !rekeyed || len(data) != 0 || flags != 0 || op.Generation() != 1 {
				t.Fatalf("B's answer: data %q flags %x rekeyed %v err %v", data, flags, rekeyed, err)
			}
		})
	}
}

// exchange writes msg on w and reads it back on r.
func exchange(t testing.TB, w, r *Conn, msg string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write([]byte(msg))
		errc <- err
	}()
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf, err, msg)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestHandshakeAllTEPsAndAEADs runs fresh handshakes through real ENO
// negotiation for every TEP and AEAD, over net.Pipe (TC-1..4 path: ENO
// enables tcpcrypt, Init messages, frames).
func TestHandshakeAllTEPsAndAEADs(t *testing.T) {
	checkLeaks(t)
	for _, tep := range kex.IDs() {
		for _, aead := range []schedule.AEADID{schedule.AES128GCM, schedule.AES256GCM, schedule.ChaCha20Poly1305} {
			t.Run(fmt.Sprintf("%v/%v", tep, aead), func(t *testing.T) {
				cfg := &Config{TEPs: []kex.ID{tep}, AEADs: []schedule.AEADID{aead}}
				ca, cb := connPair(t, cfg, cfg, Policy{}, Policy{}, pipeStreams)
				if !bytes.Equal(ca.SessionID(), cb.SessionID()) || ca.SessionID()[0] != byte(tep) {
					t.Fatalf("session IDs %x / %x", ca.SessionID(), cb.SessionID())
				}
				if ca.AEAD() != aead || cb.AEAD() != aead || ca.Role() != eno.RoleA || cb.Role() != eno.RoleB {
					t.Fatalf("aead %v/%v roles %v/%v", ca.AEAD(), cb.AEAD(), ca.Role(), cb.Role())
				}
				exchange(t, ca, cb, "ping")
				exchange(t, cb, ca, "pong")
			})
		}
	}
}

// TestTC1_NoCommonTEP: no TEP in common => B answers nothing and ENO falls
// back (TC-1).
func TestTC1_NoCommonTEP(t *testing.T) {
	sa := (&Config{TEPs: []kex.ID{kex.P256}}).NewSession("b", Policy{})
	sb := (&Config{TEPs: []kex.ID{kex.X25519}}).NewSession("a", Policy{})
	_, _, err := negotiate(t, sa, sb)
	var fe *eno.FallbackError
	if !errors.As(err, &fe) {
		t.Fatalf("negotiation error = %v, want fallback", err)
	}
	if got := sb.Answer(eno.SYNOption{Subs: sa.Offer()}); got != nil {
		t.Fatalf("Answer = %v, want nil", got)
	}
}

// TestTC9_AEADPreference: A offers its list in order; B picks the first of
// its own preferences that A listed; Policy.AEADs overrides per connection
// (TC-9).
func TestTC9_AEADPreference(t *testing.T) {
	checkLeaks(t)
	cfgA := &Config{AEADs: []schedule.AEADID{schedule.ChaCha20Poly1305, schedule.AES128GCM}}
	cfgB := &Config{AEADs: []schedule.AEADID{schedule.AES256GCM, schedule.AES128GCM, schedule.ChaCha20Poly1305}}
	ca, _ := connPair(t, cfgA, cfgB, Policy{}, Policy{}, pipeStreams)
	if ca.AEAD() != schedule.AES128GCM {
		t.Errorf("AEAD = %v, want B's first common choice aes128gcm", ca.AEAD())
	}
	ca, _ = connPair(t, cfgA, cfgB, Policy{AEADs: []schedule.AEADID{schedule.AES256GCM}}, Policy{}, pipeStreams)
	if ca.AEAD() != schedule.AES256GCM {
		t.Errorf("AEAD = %v, want per-connection aes256gcm", ca.AEAD())
	}
	ca, _ = connPair(t, cfgA, cfgB, Policy{}, Policy{AEADs: []schedule.AEADID{schedule.ChaCha20Poly1305}}, pipeStreams)
	if ca.AEAD() != schedule.ChaCha20Poly1305 {
		t.Errorf("AEAD = %v, want B's per-connection chacha20poly1305", ca.AEAD())
	}
}

// manualPeer runs one side of a handshake by hand over the other end of a
// pipe, so tests can send what our implementation never would.
type manualPeer struct {
	t    testing.TB
	g    kex.Group
	priv *kex.PrivateKey
	conn net.Conn
}

func newManualPeer(t testing.TB, id kex.ID, conn net.Conn) *manualPeer {
	g := mustGroup(t, id)
	priv, err := g.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &manualPeer{t: t, g: g, priv: priv, conn: conn}
}

// startB runs our host A against a manual B: it returns A's result channel.
func startA(t testing.TB, cfg *Config, tep kex.ID, conn net.Conn) chan hsResult {
	ra, _ := freshResults(tep, unhex(t, "450323450401"+hex.EncodeToString([]byte{byte(tep)})))
	s := cfg.NewSession("b", Policy{})
	ch := make(chan hsResult, 1)
	go func() {
		c, err := s.Handshake(context.Background(), conn, ra)
		ch <- hsResult{c, err}
	}()
	return ch
}

func startB(t testing.TB, cfg *Config, tep kex.ID, conn net.Conn) chan hsResult {
	_, rb := freshResults(tep, unhex(t, "450323450401"+hex.EncodeToString([]byte{byte(tep)})))
	s := cfg.NewSession("a", Policy{})
	ch := make(chan hsResult, 1)
	go func() {
		c, err := s.Handshake(context.Background(), conn, rb)
		ch <- hsResult{c, err}
	}()
	return ch
}

type hsResult struct {
	c   *Conn
	err error
}

func wantHandshakeError(t testing.TB, r hsResult, reason string) {
	t.Helper()
	var he *HandshakeError
	if !errors.As(r.err, &he) || he.Reason != reason || !errors.Is(r.err, ErrHandshake) {
		t.Fatalf("handshake error = %v, want reason %q", r.err, reason)
	}
	if errors.Is(r.err, io.EOF) {
		t.Fatalf("handshake error %v is io.EOF", r.err)
	}
}

// TestTC11_CipherNotOffered: A aborts with a distinct error if Init2's
// sym_cipher was not in its list (TC-11).
func TestTC11_CipherNotOffered(t *testing.T) {
	checkLeaks(t)
	a, b := pipeStreams(t)
	ch := startA(t, &Config{AEADs: []schedule.AEADID{schedule.AES128GCM}}, kex.X25519, a)
	p := newManualPeer(t, kex.X25519, b)
	if _, err := readMessage(b, "init1", Init1Magic, 0); err != nil {
		t.Fatal(err)
	}
	m2 := Init2{Cipher: schedule.ChaCha20Poly1305, Pub: p.priv.AppendPublic(nil)}
	raw, _ := m2.Marshal()
	b.Write(raw)
	wantHandshakeError(t, <-ch, "cipher-not-offered")
	// The stream was aborted.
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Fatal("stream still open after abort")
	}
}

// TestTC7_KeyValidationAborts: an invalid or low-order public key aborts
// with a distinct error, on both sides (TC-7, TC-43 via kex).
func TestTC7_KeyValidationAborts(t *testing.T) {
	checkLeaks(t)
	t.Run("A/x25519-zero", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startA(t, &Config{}, kex.X25519, a)
		readMessage(b, "init1", Init1Magic, 0)
		m2 := Init2{Cipher: schedule.AES128GCM, Pub: make([]byte, 32)} // u = 0: low order
		raw, _ := m2.Marshal()
		b.Write(raw)
		wantHandshakeError(t, <-ch, "zero-secret")
	})
	t.Run("B/p256-off-curve", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, &Config{}, kex.P256, b)
		pub := append([]byte{0, 33, 2}, bytes.Repeat([]byte{0xff}, 32)...) // x >= p
		m1 := Init1{Ciphers: []schedule.AEADID{1}, Pub: pub}
		raw, _ := m1.Marshal()
		a.Write(raw)
		wantHandshakeError(t, <-ch, "bad-public-key")
	})
	t.Run("B/bad-magic", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, &Config{}, kex.X25519, b)
		go a.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		wantHandshakeError(t, <-ch, "bad-message")
	})
	t.Run("B/no-common-aead", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startB(t, &Config{AEADs: []schedule.AEADID{schedule.AES128GCM}}, kex.X25519, b)
		p := newManualPeer(t, kex.X25519, a)
		m1 := Init1{Ciphers: []schedule.AEADID{0x7777, schedule.ChaCha20Poly1305}, Pub: p.priv.AppendPublic(nil)}
		raw, _ := m1.Marshal()
		a.Write(raw)
		wantHandshakeError(t, <-ch, "no-common-aead")
	})
	t.Run("A/eof", func(t *testing.T) {
		a, b := pipeStreams(t)
		ch := startA(t, &Config{}, kex.X25519, a)
		readMessage(b, "init1", Init1Magic, 0)
		b.Write(unhex(t, "097105e0 0000004a 0001"))
		b.Close()
		r := <-ch
		wantHandshakeError(t, r, "io")
		wantErrIs(t, r.err, io.ErrUnexpectedEOF)
	})
}

// TestHandshakeContext: the context bounds the handshake.
func TestHandshakeContext(t *testing.T) {
	checkLeaks(t)
	a, _ := pipeStreams(t)
	_, rb := freshResults(kex.X25519, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := (&Config{}).NewSession("a", Policy{}).Handshake(ctx, a, rb)
	wantHandshakeError(t, hsResult{err: err}, "canceled")
	wantErrIs(t, err, context.DeadlineExceeded)

	a, _ = pipeStreams(t)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = (&Config{}).NewSession("a", Policy{}).Handshake(ctx, a, rb)
	wantErrIs(t, err, context.Canceled)
}

// TestTC10_WhenFramesMayFlow: B may send frames right after writing Init2,
// before A has sent anything more; A returns (and may send) only once Init2
// has arrived (TC-10). TC-5: each Init message is one Write call.
func TestTC10_WhenFramesMayFlow(t *testing.T) {
	checkLeaks(t)
	v := loadVectors(t)
	hv := v.Handshakes[0]
	tep := kex.ID(hv.TEP)
	transcript := []byte(hv.Transcript)
	ra, rb := freshResults(tep, transcript)

	// Our A against a scripted B.
	pa, pb := net.Pipe()
	defer pa.Close()
	defer pb.Close()
	rec := &recConn{Conn: pa}
	cfgA := &Config{AEADs: aeadIDs(hv.AEADsOffered), Rand: bytes.NewReader(append([]byte(hv.PrivA), []byte(hv.NA)...))}
	ch := make(chan hsResult, 1)
	go func() {
		c, err := cfgA.NewSession("b", Policy{}).Handshake(context.Background(), rec, ra)
		ch <- hsResult{c, err}
	}()
	init1, err := readMessage(pb, "init1", Init1Magic, 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		t.Fatalf("A finished before Init2 arrived: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	init2 := []byte(hv.Init2)
	pb.Write(init2[:30]) // Init2 may span segments
	select {
	case r := <-ch:
		t.Fatalf("A finished on part of Init2: %v", r.err)
	case <-time.After(20 * time.Millisecond):
	}
	pb.Write(init2[30:])
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer func() { pa.Close(); r.c.Close() }()
	if rec.writes != 1 || !bytes.Equal(rec.bytes(), init1) {
		t.Errorf("A wrote Init1 in %d Write calls (want 1)", rec.writes) // TC-5
	}

	// Our B against a scripted A that sends Init1 and then only reads.
	qa, qb := net.Pipe()
	defer qa.Close()
	defer qb.Close()
	cfgB := &Config{AEADs: []schedule.AEADID{schedule.AEADID(hv.AEAD)}, Rand: bytes.NewReader(append([]byte(hv.PrivB), []byte(hv.NB)...))}
	ch = make(chan hsResult, 1)
	recB := &recConn{Conn: qb}
	go func() {
		c, err := cfgB.NewSession("a", Policy{}).Handshake(context.Background(), recB, rb)
		ch <- hsResult{c, err}
	}()
	qa.Write([]byte(hv.Init1))
	got, err := readMessage(qa, "init2", Init2Magic, 0)
	if err != nil || !bytes.Equal(got, init2) {
		t.Fatalf("init2 = %x, %v", got, err)
	}
	r = <-ch // B is done although A sent nothing after Init1
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer func() { qb.Close(); r.c.Close() }()
	if recB.writes != 1 {
		t.Errorf("B wrote Init2 in %d Write calls (want 1)", recB.writes) // TC-5
	}
	go r.c.Write([]byte("world!"))
	wire := make([]byte, 26)
	if _, err := io.ReadFull(qa, wire); err != nil || !bytes.Equal(wire, v.Frames[3].Wire) {
		t.Fatalf("B's first frame = %x, %v", wire, err)
	}
}

// TestTC12_ReceiverUsesBytesAsReceived: B accepts an Init1 with a
// non-empty ignored field and derives its keys from the bytes as received;
// our own messages are sent with an empty ignored field (TC-12).
func TestTC12_ReceiverUsesBytesAsReceived(t *testing.T) {
	checkLeaks(t)
	a, b := pipeStreams(t)
	transcript := unhex(t, "45032345040123")
	ch := startB(t, &Config{}, kex.X25519, b)
	_ = transcript
	p := newManualPeer(t, kex.X25519, a)
	m1 := Init1{Ciphers: []schedule.AEADID{schedule.AES128GCM}, Pub: p.priv.AppendPublic(nil), Ignored: []byte("trailing")}
	copy(m1.NA[:], "A's nonce")
	init1, _ := m1.Marshal()
	a.Write(init1)
	init2, err := readMessage(a, "init2", Init2Magic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(init2) != minInit2Len(p.g) {
		t.Errorf("our Init2 is %d bytes: ignored field not empty", len(init2))
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer func() { b.Close(); r.c.Close() }()
	var m2 Init2
	if err := m2.Unmarshal(init2, p.g); err != nil {
		t.Fatal(err)
	}
	es, err := p.priv.ECDH(m2.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	ss := schedule.Fresh(m1.NA[:], unhex(t, "450323450401"+"23"), init1, init2, es)
	if want := ss.SessionID(0x23, nil); !bytes.Equal(r.c.SessionID(), want) {
		t.Fatalf("session ID %x, want %x (keys not from the received bytes)", r.c.SessionID(), want)
	}
	// And B's frames open with k_ba from those bytes, at offset len(Init2).
	aead, _ := schedule.LookupAEAD(schedule.AES128GCM)
	op, _ := frame.NewOpener(aead, ss.MasterKey(nil), schedule.DirBA, uint64(len(init2)))
	go r.c.Write([]byte("ok"))
	f := make([]byte, 3+1+2+16)
	io.ReadFull(a, f)
	if data, _, _, _, err := op.Open(nil, f); err != nil || string(data) != "ok" {
		t.Fatalf("B's frame: %q, %v", data, err)
	}
}

// TestKeyLog: the key log gets TCPCRYPT_ES and TCPCRYPT_SS lines for a
// fresh session and a TCPCRYPT_SS line for a resumed one, lowercase hex,
// session ID first.
func TestKeyLog(t *testing.T) {
	checkLeaks(t)
	v := loadVectors(t)
	hv := v.Handshakes[0]
	var logA, logB bytes.Buffer
	cfgA := &Config{KeyLog: &logA, AEADs: aeadIDs(hv.AEADsOffered), Rand: bytes.NewReader(append([]byte(hv.PrivA), []byte(hv.NA)...))}
	cfgB := &Config{KeyLog: &logB, AEADs: []schedule.AEADID{schedule.AEADID(hv.AEAD)}, Rand: bytes.NewReader(append([]byte(hv.PrivB), []byte(hv.NB)...))}
	ra, rb := freshResults(kex.ID(hv.TEP), []byte(hv.Transcript))
	a, b := pipeStreams(t)
	ca, cb, errA, errB := runHandshakes(t, cfgA.NewSession("b", Policy{}), cfgB.NewSession("a", Policy{}), ra, rb, a, b)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	a.Close()
	ca.Close()
	cb.Close()
	want := fmt.Sprintf("TCPCRYPT_ES %x %x\nTCPCRYPT_SS %x %x\n", hv.SessionID, hv.ES, hv.SessionID, hv.SS0)
	if logA.String() != want || logB.String() != want {
		t.Fatalf("key logs:\n%s\n%s\nwant\n%s", logA.String(), logB.String(), want)
	}

	// Resumed: one SS line with ss[i].
	logA.Reset()
	cache := NewCache(CacheConfig{})
	cfg := &Config{KeyLog: &logA, Resumption: true, Cache: cache}
	cfgB2 := &Config{Resumption: true, Cache: NewCache(CacheConfig{})}
	connPair(t, cfg, cfgB2, Policy{}, Policy{}, pipeStreams)
	logA.Reset()
	ca, _ = connPair(t, cfg, cfgB2, Policy{}, Policy{}, pipeStreams)
	if !ca.Resumed() {
		t.Fatal("second connection not resumed")
	}
	line := logA.String()
	fields := strings.Fields(line)
	if len(fields) != 3 || fields[0] != "TCPCRYPT_SS" || fields[1] != hex.EncodeToString(ca.SessionID()) ||
		len(fields[2]) != 64 || strings.ToLower(fields[2]) != fields[2] || strings.Count(line, "\n") != 1 {
		t.Fatalf("resumed key log = %q", line)
	}
}

// pubA runs one handshake and returns Pub_A as A sent it in Init1.
func pubA(t *testing.T, cfgA *Config) []byte {
	t.Helper()
	sa, sb := cfgA.NewSession("b", Policy{}), (&Config{}).NewSession("a", Policy{})
	ra, rb, err := negotiate(t, sa, sb)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := pipeStreams(t)
	a := &recConn{Conn: pa}
	ca, cb, errA, errB := runHandshakes(t, sa, sb, ra, rb, a, pb)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	pa.Close()
	ca.Close()
	cb.Close()
	init1 := a.bytes()
	return init1[len(init1)-32:]
}

// TestTC6_TC47_EphemeralKeys: by default every connection gets a fresh key
// pair (TC-6); with EphemeralLifetime a key pair is reused only within its
// lifetime by the injected clock (TC-47, pool in crypt/kex).
func TestTC6_TC47_EphemeralKeys(t *testing.T) {
	checkLeaks(t)
	cfg := &Config{TEPs: []kex.ID{kex.X25519}}
	if bytes.Equal(pubA(t, cfg), pubA(t, cfg)) {
		t.Fatal("two connections used the same ephemeral key")
	}
	clk := newClock()
	cfg = &Config{TEPs: []kex.ID{kex.X25519}, EphemeralLifetime: time.Minute, Time: clk.Now}
	k1, k2 := pubA(t, cfg), pubA(t, cfg)
	if !bytes.Equal(k1, k2) {
		t.Fatal("key not reused within its lifetime")
	}
	clk.Advance(time.Minute)
	if bytes.Equal(k1, pubA(t, cfg)) {
		t.Fatal("key reused after its lifetime")
	}
}

// failingReader is a broken randomness source.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

// TestTC48_NoRandomnessNoSession: without randomness there are no keys,
// nonces or resumption offers; the handshake fails cleanly (TC-48).
func TestTC48_NoRandomnessNoSession(t *testing.T) {
	checkLeaks(t)
	a, _ := pipeStreams(t)
	ra, _ := freshResults(kex.X25519, nil)
	_, err := (&Config{Rand: failingReader{}}).NewSession("b", Policy{}).Handshake(t.Context(), a, ra)
	wantHandshakeError(t, hsResult{err: err}, "internal")
	// A cached secret is not offered without a nonce, and its index is
	// spent (TC-24).
	cache := NewCache(CacheConfig{})
	cache.add("b", kex.X25519, eno.RoleA, schedule.AES128GCM, schedule.SessionSecretFromBytes(make([]byte, 32), 1))
	cfg := &Config{Rand: failingReader{}, Resumption: true, Cache: cache}
	for _, sub := range cfg.NewSession("b", Policy{}).Offer() {
		if sub.V {
			t.Fatal("resumption offered without a nonce")
		}
	}
	if got := chainSecret(t, cache).Index(); got != 2 {
		t.Fatalf("chain at ss[%d], want ss[2]", got)
	}
}

// TestFailedHandshakeReleasesKey: a hostile B that answers Init1 with a
// malformed Init2 ends A's handshake before its ECDH. A's shared X448 key
// (EphemeralLifetime > 0) must still be erased once its pool retires it:
// the failed handshake gives its hold on the key back.
func TestFailedHandshakeReleasesKey(t *testing.T) {
	checkLeaks(t)
	clk := newClock()
	cfg := &Config{TEPs: []kex.ID{kex.X448}, EphemeralLifetime: time.Minute, Time: clk.Now}
	g := mustGroup(t, kex.X448)
	peer, err := g.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := cfg.pool(g).Get()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := shared.ECDH(peer.PublicKey()); err != nil { // the test's own hold
		t.Fatal(err)
	}
	a, b := pipeStreams(t)
	ch := startA(t, cfg, kex.X448, a)
	if _, err := readMessage(b, "init1", Init1Magic, 0); err != nil {
		t.Fatal(err)
	}
	b.Write([]byte{0, 0, 0, 0, 0, 0, 0, 8}) // not an Init2
	if r := <-ch; r.err == nil {
		t.Fatal("handshake with a malformed Init2 succeeded")
	}
	clk.Advance(time.Minute)
	if _, err := cfg.pool(g).Get(); err != nil { // retires the shared key
		t.Fatal(err)
	}
	if _, err := shared.ECDH(peer.PublicKey()); err == nil {
		t.Fatal("retired X448 key not erased: the failed handshake still holds it")
	}
}
