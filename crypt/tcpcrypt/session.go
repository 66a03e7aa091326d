package tcpcrypt

import (
	"crypto/subtle"
	"io"
	"slices"
	"sync"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// minShrunkNonceLen is the shortest resumption nonce we shrink to for lack
// of option space.
//
// Decision (docs/decisions.md, "SYN option budget"): to fit the option space we
// first drop our other fresh TEP offers (least preferred first: B supported
// the resumed TEP before, and a resumption offer implies a fresh offer of
// the same TEP, §3.2), then shorten the nonce, but never below 4 bytes (or
// the configured length if shorter): with the peer's nonce the session
// nonce stays at least 4+7 random bytes. Below that we offer no resumption.
const minShrunkNonceLen = 4

// Session is one connection's tcpcrypt state from the SYN to the end of the
// handshake. It implements eno.TEPPolicy. Its methods are safe for
// concurrent use.
type Session struct {
	cfg    *Config
	peer   string
	policy Policy

	mu sync.Mutex // guards the fields below

	offered bool
	offer   []eno.Suboption
	active  *attempt // resumption we offered (Offer)

	answered bool
	answer   []eno.Suboption
	passive  *attempt // resumption we agreed to (Answer)

	done bool // Handshake ran or Abandon was called
}

var _ eno.TEPPolicy = (*Session)(nil)

// attempt is one resumption suboption we sent, with the reserved secret.
type attempt struct {
	tep      kex.ID
	res      *reservation
	ourHalf  [ResumeHalfLen]byte
	peerHalf [ResumeHalfLen]byte // the half the peer must send
	ourNonce []byte
}

// NewSession returns the tcpcrypt state of a new connection with peer,
// which names the remote host for the resumption cache (e.g. its IP
// address; never include the port: secrets are per host pair).
func (c *Config) NewSession(peer string, p Policy) *Session {
	c.state() // create the shared state before sessions race for it
	return &Session{cfg: c, peer: peer, policy: p}
}

// Offer returns the suboptions of the active opener's SYN (RFC 8548 §3.2):
// our TEPs with v = 0 in increasing preference and, when resumption is on
// and the cache holds a secret for this peer, one resumption suboption
// (v = 1, our half of resume[i], our nonce) put last so it needs no length
// byte (TC-3, TC-14, TC-15, TC-22). The lowest unused i is taken and counts
// as used from now on (TC-24). Repeated calls return the same suboptions.
func (s *Session) Offer() []eno.Suboption {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offered {
		return cloneSubs(s.offer)
	}
	s.offered = true
	teps := s.cfg.teps()
	space := orDefault(s.cfg.OfferSpace, DefaultOfferSpace)
	var resume *eno.Suboption
	if !s.done && s.cfg.resuming(s.policy) {
		resume, teps = s.offerResumption(teps, space)
	}
	avail := space
	if resume != nil {
		avail -= 1 + len(resume.Data)
	}
	if len(teps) > avail {
		teps = teps[len(teps)-max(avail, 0):] // keep the most preferred
	}
	subs := make([]eno.Suboption, 0, len(teps)+1)
	for _, id := range teps {
		subs = append(subs, eno.Suboption{TEP: byte(id)})
	}
	if resume != nil {
		subs = append(subs, *resume)
	}
	s.offer = subs
	return cloneSubs(subs)
}

// offerResumption reserves a secret for the most preferred TEP that has
// one and builds its suboption; it returns the other TEPs. s.mu is held.
func (s *Session) offerResumption(teps []kex.ID, space int) (*eno.Suboption, []kex.ID) {
	nonceLen := s.cfg.nonceLen()
	if fit := space - 1 - ResumeHalfLen; fit < nonceLen {
		if fit < min(nonceLen, minShrunkNonceLen) {
			return nil, teps
		}
		nonceLen = fit
	}
	for i := len(teps) - 1; i >= 0; i-- {
		res := s.cfg.Cache.takeForOffer(s.peer, teps[i], s.cfg.aeads(s.policy))
		if res == nil {
			continue
		}
		nonce := make([]byte, nonceLen)
		if _, err := io.ReadFull(s.cfg.state().rand, nonce); err != nil {
			// No randomness, no nonce: never resume without one (TC-14,
			// TC-48). The index still counts as used.
			s.cfg.Cache.release(res, false)
			return nil, teps
		}
		ours, peer := resumeHalves(res.ss, res.origRole)
		s.active = &attempt{tep: teps[i], res: res, ourHalf: ours, peerHalf: peer, ourNonce: nonce}
		data := append(ours[:], nonce...)
		// Decision (docs/decisions.md): the resumed TEP is not listed
		// again with v = 0; RFC 8547 defines no such repetition, and the
		// resumption suboption already offers a fresh exchange (§3.2).
		return &eno.Suboption{TEP: byte(teps[i]), V: true, Data: data},
			slices.Delete(slices.Clone(teps), i, i+1)
	}
	return nil, teps
}

// Answer implements eno.TEPPolicy for host B: it returns the single
// suboption of our SYN-ACK. If A offered resumption for a TEP and the cache
// holds the matching secret (and policy allows), we agree with the other
// half and our nonce, reserving the secret (TC-16, TC-25); a resumption
// match takes precedence over TEP preference, as §3.5 says we SHOULD
// agree. Otherwise we answer the most preferred TEP A offered with v = 0
// (a v = 1 suboption with fewer than 9 data bytes counts as a fresh offer,
// TC-17). nil means no common TEP: ENO falls back (TC-1).
func (s *Session) Answer(a eno.SYNOption) []eno.Suboption {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answered {
		return cloneSubs(s.answer)
	}
	s.answered = true
	if s.done {
		return nil
	}
	ours := s.cfg.teps()
	offered := make(map[kex.ID]bool)
	halves := make(map[kex.ID][]byte) // A's resumption data per TEP
	for _, sub := range a.Subs {
		id := kex.ID(sub.TEP &^ vBit)
		if !slices.Contains(ours, id) {
			continue
		}
		offered[id] = true
		// Decision: data longer than 9+8 bytes is not a valid resumption
		// suboption (the nonce is at most 8 bytes, §3.5); like a short one
		// it still offers the TEP for a fresh exchange.
		if sub.V && len(sub.Data) >= ResumeHalfLen && len(sub.Data) <= ResumeHalfLen+MaxResumeNonceLen {
			if _, dup := halves[id]; !dup {
				halves[id] = sub.Data
			}
		}
	}
	if s.cfg.resuming(s.policy) {
		space := orDefault(s.cfg.AnswerSpace, DefaultAnswerSpace)
		nonceLen := min(s.cfg.nonceLen(), space-1-ResumeHalfLen)
		if nonceLen >= min(s.cfg.nonceLen(), minShrunkNonceLen) {
			for i := len(ours) - 1; i >= 0; i-- {
				data, ok := halves[ours[i]]
				if !ok {
					continue
				}
				if sub, ok := s.agree(ours[i], data, nonceLen); ok {
					s.answer = []eno.Suboption{sub}
					return cloneSubs(s.answer)
				}
			}
		}
	}
	for i := len(ours) - 1; i >= 0; i-- {
		if offered[ours[i]] {
			s.answer = []eno.Suboption{{TEP: byte(ours[i])}}
			return cloneSubs(s.answer)
		}
	}
	return nil
}

// agree reserves the secret A's resumption data names, if cached, and
// builds our resumption suboption. s.mu is held.
func (s *Session) agree(tep kex.ID, data []byte, nonceLen int) (eno.Suboption, bool) {
	res := s.cfg.Cache.takeForAnswer(s.peer, tep, data[:ResumeHalfLen], s.cfg.aeads(s.policy))
	if res == nil {
		return eno.Suboption{}, false
	}
	nonce := make([]byte, nonceLen)
	if _, err := io.ReadFull(s.cfg.state().rand, nonce); err != nil {
		s.cfg.Cache.release(res, false)
		return eno.Suboption{}, false
	}
	ours, peer := resumeHalves(res.ss, res.origRole)
	s.passive = &attempt{tep: tep, res: res, ourHalf: ours, peerHalf: peer, ourNonce: nonce}
	return eno.Suboption{TEP: byte(tep), V: true, Data: append(ours[:], nonce...)}, true
}

// Valid implements eno.TEPPolicy (RFC 8547 §4.5 rule 2 for tcpcrypt): a
// TEP is valid if we implement it and every resumption suboption B sent
// for it is the one that matches ours. On host A, a v = 1 answer must
// carry the other half of the identifier we offered (RFC 8548 §3.5, TC-18);
// an unsolicited v = 1 answer (we offered no resumption for that TEP) is
// invalid.
//
// Decision (docs/decisions.md): RFC 8548 does not say how A treats a v = 1
// suboption from B when A offered no resumption for that TEP; there is no
// secret to resume with, so the suboption is invalid, like a mismatching
// one. A v = 1 suboption from B with fewer than 9 data bytes is likewise
// invalid at A (the "treat as v = 0" rule of §3.5 binds passive openers
// only), which also settles what a session ID's first byte says: it never starts
// with a v = 1 byte unless the session was resumed.
func (s *Session) Valid(tep byte, a, b []eno.Suboption) bool {
	id := kex.ID(tep &^ vBit)
	if !slices.Contains(s.cfg.teps(), id) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range b {
		if !sub.V {
			continue
		}
		switch {
		case s.answered:
			// We are B: the only v = 1 suboption we send is our agreement.
			if p := s.passive; p == nil || p.tep != id || !slices.Equal(sub.Data, p.data()) {
				return false
			}
		case s.active != nil && s.active.tep == id && slices.Equal(sub.Data, s.active.data()):
			// Simultaneous open in which we ended up B without answering:
			// B's suboption is our own offer. Valid iff A's offer names the
			// same secret, exactly when A finds ours valid (TC-21).
			if !s.active.matchesAny(a) {
				return false
			}
		default:
			// We are A: B's half must be the other half of ours (TC-18).
			if s.active == nil || s.active.tep != id || !s.active.matches(sub) {
				return false
			}
		}
	}
	return true
}

// zero erases an attempt that will not be used: the identifier halves
// (the expected one was never seen on the wire if the peer did not answer)
// and the nonce.
func (a *attempt) zero() {
	clear(a.ourHalf[:])
	clear(a.peerHalf[:])
	clear(a.ourNonce)
}

// data is the suboption data we sent: our half, then our nonce.
func (a *attempt) data() []byte { return append(a.ourHalf[:], a.ourNonce...) }

// matches reports whether sub is a resumption suboption carrying the
// peer's half of our identifier (compared in constant time).
func (a *attempt) matches(sub eno.Suboption) bool {
	return sub.V && len(sub.Data) >= ResumeHalfLen && len(sub.Data) <= ResumeHalfLen+MaxResumeNonceLen &&
		subtle.ConstantTimeCompare(sub.Data[:ResumeHalfLen], a.peerHalf[:]) == 1
}

// matchesAny returns whether any of subs matches (see matches).
func (a *attempt) matchesAny(subs []eno.Suboption) bool {
	return a.matching(subs) != nil
}

// matching returns the first of subs that matches, or nil.
func (a *attempt) matching(subs []eno.Suboption) *eno.Suboption {
	for i := range subs {
		if a.matches(subs[i]) {
			return &subs[i]
		}
	}
	return nil
}

// Abandon releases what the session took from the cache when the
// connection will not run tcpcrypt (ENO fell back, the connection failed,
// or the caller gives up before Handshake): the secret is zeroed. Its chain
// moved past it when it was taken, whether we offered it (TC-24) or agreed
// to it as B (see Cache.takeForAnswer). Abandon after Handshake does
// nothing.
func (s *Session) Abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.releaseLocked(nil)
}

// releaseLocked ends every reservation but keep's.
func (s *Session) releaseLocked(keep *attempt) {
	if a := s.active; a != nil && a != keep {
		s.cfg.Cache.release(a.res, false)
		a.zero()
	}
	if p := s.passive; p != nil && p != keep {
		s.cfg.Cache.release(p.res, false)
		p.zero()
	}
	s.active, s.passive = nil, nil
}

func cloneSubs(subs []eno.Suboption) []eno.Suboption {
	if subs == nil {
		return nil
	}
	out := make([]eno.Suboption, len(subs))
	for i, sub := range subs {
		out[i] = sub
		if sub.Data != nil {
			out[i].Data = slices.Clone(sub.Data)
		}
	}
	return out
}
