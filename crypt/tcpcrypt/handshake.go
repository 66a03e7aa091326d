package tcpcrypt

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"time"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/crypt/schedule"
)

// keys is what a handshake hands to the connection.
type keys struct {
	aead      *schedule.AEAD
	mk0       *schedule.MasterKey
	send      schedule.Direction // our traffic key: k_ab or k_ba
	sendOff   uint64             // stream offset of our first frame
	recvOff   uint64             // stream offset of the peer's first frame
	sessionID []byte
	resumed   bool
	chainID   uint64 // cache chain used or created; 0 if none
}

// Handshake starts tcpcrypt on stream, a TCP byte stream on which ENO has
// just been enabled with result r, and returns the encrypted connection.
//
// Fresh key exchange (RFC 8548 §3.3): host A writes Init1 and reads Init2;
// host B reads Init1 and writes Init2. B returns as soon as Init2 is
// written and A as soon as Init2 has been read, which is when each may
// first send frames (TC-10). Each Init message is written with a single
// Write call: the stack then sets PSH on the segment carrying its last
// byte, as TCP implementations do at the end of a write (TC-5; gVisor
// does so for every segment that empties the send buffer).
//
// Resumption (§3.5): no messages; keys come from the reserved secret and
// the nonces of both SYNs, in our original key direction (TC-19, TC-20,
// TC-26).
//
// ctx bounds the handshake: its deadline becomes the stream's deadline and
// cancelling it interrupts blocked I/O. Handshake clears the stream's
// deadlines when it returns. On failure the stream has been aborted (a RST
// where the stream supports SetLinger) and the error is a *HandshakeError,
// as §3.3 requires for key-validation failures and a bad sym_cipher
// (TC-7, TC-11). A Session runs at most one Handshake.
func (s *Session) Handshake(ctx context.Context, stream net.Conn, r eno.Result) (*Conn, error) {
	k, err := s.handshake(ctx, stream, r)
	if err != nil {
		abortStream(stream)
		var he *HandshakeError
		if !errors.As(err, &he) {
			err = &HandshakeError{Reason: "internal", Err: err}
		}
		return nil, err
	}
	c, err := newConn(stream, s.cfg, s.policy, k, r)
	k.mk0.Zero()
	if err != nil {
		abortStream(stream)
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	return c, nil
}

func (s *Session) handshake(ctx context.Context, stream net.Conn, r eno.Result) (*keys, error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil, handshakeErr("internal", "session already finished")
	}
	s.done = true
	use, peerNonce, err := s.pickAttempt(r)
	s.releaseLocked(use)
	s.mu.Unlock()
	if err != nil {
		if use != nil {
			s.cfg.Cache.release(use.res, false)
		}
		return nil, err
	}
	if use != nil {
		return s.resume(r, use, peerNonce)
	}

	id := kex.ID(r.TEP &^ vBit)
	g, ok := kex.Lookup(id)
	if !ok || !slices.Contains(s.cfg.teps(), id) {
		return nil, handshakeErr("unsupported-tep", "TEP 0x%02x", r.TEP)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := stream.SetDeadline(dl); err != nil {
			return nil, &HandshakeError{Reason: "io", Err: err}
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = stream.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		_ = stream.SetDeadline(time.Time{})
	}()
	var k *keys
	switch r.Role {
	case eno.RoleA:
		k, err = s.freshA(stream, g, r)
	case eno.RoleB:
		k, err = s.freshB(stream, g, r)
	default:
		err = handshakeErr("internal", "unknown role %d", r.Role)
	}
	if err != nil {
		cerr := ctx.Err()
		if _, ok := ctx.Deadline(); ok && cerr == nil && isTimeout(err) {
			// The stream's deadline (ctx's) fired just before ctx's timer.
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			return nil, &HandshakeError{Reason: "canceled", Err: errors.Join(cerr, err)}
		}
	}
	return k, err
}

// pickAttempt finds the resumption attempt r was negotiated with, if any,
// and the peer's nonce. s.mu is held.
func (s *Session) pickAttempt(r eno.Result) (*attempt, []byte, error) {
	if r.TEPByte&vBit == 0 {
		return nil, nil, nil // fresh (TC-4: v bits do not pick the TEP, B's answer decides the path)
	}
	id := kex.ID(r.TEP &^ vBit)
	a, peerSubs := s.active, r.BSubs
	if r.Role == eno.RoleB {
		peerSubs = r.ASubs
		if s.passive != nil {
			a = s.passive
		} // else a simultaneous open: our own offer was B's suboption (TC-21)
	}
	if a == nil || a.tep != id {
		return nil, nil, handshakeErr("no-resumption-secret", "resumption negotiated for TEP 0x%02x, none pending", byte(id))
	}
	if sub := a.matching(peerSubs); sub != nil {
		return a, slices.Clone(sub.Data[ResumeHalfLen:]), nil
	}
	return a, nil, handshakeErr("no-resumption-secret", "peer's resumption suboption does not match")
}

// resume derives the keys of a resumed session (RFC 8548 §3.5).
func (s *Session) resume(r eno.Result, a *attempt, peerNonce []byte) (*keys, error) {
	res := a.res
	aead, ok := schedule.LookupAEAD(res.aead)
	if !ok {
		s.cfg.Cache.release(res, false)
		return nil, handshakeErr("internal", "cached AEAD 0x%04x unknown", uint16(res.aead))
	}
	// sn[i] = nonce_a | nonce_b, named by the ORIGINAL roles: nonce_a
	// travels with resume[i]{0..8}, the half the original A sends (§3.5
	// Figures 2 and 3, TC-19).
	var sn []byte
	send := schedule.DirAB
	if res.origRole == eno.RoleA {
		sn = append(slices.Clone(a.ourNonce), peerNonce...)
	} else {
		sn = append(slices.Clone(peerNonce), a.ourNonce...)
		send = schedule.DirBA // TC-26: keys keep the original direction
	}
	var ssBytes []byte
	if s.cfg.KeyLog != nil {
		ssBytes = res.ss.Bytes()
	}
	// TC-20: the session ID starts with B's byte, v = 1.
	// TC-23: the chain already holds ss[i+1] (Cache.takeAheadLocked); ss[i] is
	// erased once mk[0] is computed.
	sessionID, mk0 := res.ss.SessionID(r.TEPByte, sn), res.ss.MasterKey(sn)
	s.cfg.Cache.release(res, !s.cfg.caching(s.policy))
	if ssBytes != nil {
		s.cfg.writeKeyLog(keyLogSS, sessionID, ssBytes)
		clear(ssBytes)
	}
	return &keys{aead: aead, mk0: mk0, send: send, sessionID: sessionID, resumed: true, chainID: res.chainID}, nil
}

// freshA is host A's side of the fresh key exchange (RFC 8548 §3.3).
func (s *Session) freshA(stream io.ReadWriter, g kex.Group, r eno.Result) (*keys, error) {
	aeads := s.cfg.aeads(s.policy)
	if len(aeads) == 0 {
		return nil, handshakeErr("no-common-aead", "no AEAD configured")
	}
	priv, err := s.cfg.pool(g).Get()
	if err != nil {
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	// Until Decapsulate runs (it releases the key itself), a failure
	// gives the key back, so that it is still erased (kex.PrivateKey).
	decapsulated := false
	defer func() {
		if !decapsulated {
			priv.Release()
		}
	}()
	m1 := Init1{Ciphers: aeads, Pub: priv.AppendPublic(nil)}
	if _, err := io.ReadFull(s.cfg.state().rand, m1.NA[:]); err != nil {
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	init1, err := m1.Marshal()
	if err != nil {
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	if _, err := stream.Write(init1); err != nil { // one Write: PSH on its last byte (TC-5)
		return nil, &HandshakeError{Reason: "io", Err: err}
	}
	init2, err := readMessage(stream, "init2", Init2Magic, minInit2Len(g))
	if err != nil {
		return nil, msgFailure(err)
	}
	var m2 Init2
	if err := m2.Unmarshal(init2, g); err != nil {
		return nil, msgFailure(err)
	}
	// TC-11: B must pick from our list.
	if !slices.Contains(aeads, m2.Cipher) {
		return nil, handshakeErr("cipher-not-offered", "Init2 chose %v, not in our list", m2.Cipher)
	}
	aead, _ := schedule.LookupAEAD(m2.Cipher)
	decapsulated = true
	es, err := priv.Decapsulate(m2.PublicKey())
	if err != nil {
		return nil, ecdhFailure(err)
	}
	ss0 := schedule.Fresh(m1.NA[:], r.Transcript, init1, init2, es)
	k := s.finishFresh(r, ss0, es, aead)
	k.sendOff, k.recvOff = uint64(len(init1)), uint64(len(init2))
	return k, nil
}

// freshB is host B's side of the fresh key exchange (RFC 8548 §3.3).
func (s *Session) freshB(stream io.ReadWriter, g kex.Group, r eno.Result) (*keys, error) {
	init1, err := readMessage(stream, "init1", Init1Magic, minInit1Len(g))
	if err != nil {
		return nil, msgFailure(err)
	}
	var m1 Init1
	if err := m1.Unmarshal(init1, g); err != nil {
		return nil, msgFailure(err)
	}
	// B picks the first of its preferences that A listed (TC-9).
	// Decision (docs/decisions.md, "Malformed Init messages"): no common AEAD aborts the connection.
	var aead *schedule.AEAD
	for _, id := range s.cfg.aeads(s.policy) {
		if slices.Contains(m1.Ciphers, id) {
			aead, _ = schedule.LookupAEAD(id)
			break
		}
	}
	if aead == nil {
		return nil, handshakeErr("no-common-aead", "Init1 offers %v", m1.Ciphers)
	}
	// ES first: a bad Pub_A aborts before we send anything (TC-7). Pub_B
	// is our ephemeral public key, or for a KEM TEP the ciphertext made
	// for Pub_A (kex.Pool.Encapsulate).
	es, pubB, err := s.cfg.pool(g).Encapsulate(m1.PublicKey())
	if err != nil {
		return nil, ecdhFailure(err)
	}
	m2 := Init2{Cipher: aead.ID, Pub: pubB}
	if _, err := io.ReadFull(s.cfg.state().rand, m2.NB[:]); err != nil {
		clear(es)
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	init2, err := m2.Marshal()
	if err != nil {
		clear(es)
		return nil, &HandshakeError{Reason: "internal", Err: err}
	}
	if _, err := stream.Write(init2); err != nil { // one Write: PSH on its last byte (TC-5)
		clear(es)
		return nil, &HandshakeError{Reason: "io", Err: err}
	}
	ss0 := schedule.Fresh(m1.NA[:], r.Transcript, init1, init2, es)
	k := s.finishFresh(r, ss0, es, aead)
	k.sendOff, k.recvOff = uint64(len(init2)), uint64(len(init1))
	return k, nil
}

// finishFresh derives the session ID and mk[0] from ss[0], caches ss[1]
// (unless policy forbids) and erases ss[0] and ES (TC-23).
func (s *Session) finishFresh(r eno.Result, ss0 *schedule.SessionSecret, es []byte, aead *schedule.AEAD) *keys {
	var ssBytes []byte
	if s.cfg.KeyLog != nil {
		ssBytes = ss0.Bytes()
	}
	sessionID, mk0, next := ss0.Use(r.TEPByte, nil)
	send := schedule.DirAB
	if r.Role == eno.RoleB {
		send = schedule.DirBA
	}
	k := &keys{aead: aead, mk0: mk0, send: send, sessionID: sessionID}
	if s.cfg.caching(s.policy) {
		k.chainID = s.cfg.Cache.add(s.peer, kex.ID(r.TEP&^vBit), r.Role, aead.ID, next)
	} else {
		next.Zero()
	}
	if ssBytes != nil {
		s.cfg.writeKeyLog(keyLogES, sessionID, es)
		s.cfg.writeKeyLog(keyLogSS, sessionID, ssBytes)
		clear(ssBytes)
	}
	clear(es)
	return k
}

// msgFailure classifies an error reading or parsing an Init message.
func msgFailure(err error) *HandshakeError {
	var me *MessageError
	if errors.As(err, &me) {
		switch me.Reason {
		case "bad-public-key", "bad-ciphertext":
			return &HandshakeError{Reason: me.Reason, Err: err} // TC-7
		}
		return &HandshakeError{Reason: "bad-message", Err: err}
	}
	return &HandshakeError{Reason: "io", Err: err}
}

func ecdhFailure(err error) *HandshakeError {
	switch {
	case errors.Is(err, kex.ErrZeroSecret):
		return &HandshakeError{Reason: "zero-secret", Err: err} // TC-7, TC-43
	case errors.Is(err, kex.ErrRandomness):
		return &HandshakeError{Reason: "internal", Err: err} // TC-48
	}
	return &HandshakeError{Reason: "bad-public-key", Err: err}
}

// abortStream aborts the TCP connection: RST where the stream can be told
// to (SetLinger(0) before Close, as *net.TCPConn supports), otherwise a
// plain close (RFC 8548 §3.3 "abort the connection" = RFC 793 ABORT).
func abortStream(stream net.Conn) {
	if l, ok := stream.(interface{ SetLinger(sec int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = stream.Close()
}
