package eno

import "fmt"

// decide runs once, when the peer's first SYN-form option has been
// received (in a SYN-only or a SYN-ACK): it checks the global suboptions,
// builds a passive opener's answer, and picks the TEP (RFC 8547 §4.3, §4.5,
// §4.6 rules 2 and 3). On success it leaves state StateNegotiating with
// decided set; encryption is enabled later, by the ACK rule (maybeEnable).
func (n *Negotiator) decide() {
	peer := n.peer
	// §4.3, §4.6 rule 3: the two hosts must have sent different b bits.
	// Also defeats middleboxes that echo our SYN option back (§8.1).
	if peer.B() == n.localB {
		n.disable(ReasonSameRole, fmt.Sprintf("both hosts sent b=%d", b2i(n.localB)))
		return
	}
	// §4.2, §4.6 rule 3: mandatory application-aware mode needs a = 1.
	if n.cfg.MandatoryAppAware && !peer.A() {
		n.disable(ReasonAppAware, "peer sent a=0 in mandatory application-aware mode")
		return
	}
	if !n.active {
		if !n.answer() {
			return
		}
	}
	if peer.Vacuous() || len(n.ownSubs) == 0 {
		// §4.6: a vacuous SYN on either side leaves no valid TEP.
		who := "peer's"
		if !peer.Vacuous() {
			who = "our"
		}
		n.disable(ReasonVacuous, who+" SYN-form option is vacuous")
		return
	}
	n.selectTEP()
}

// answer builds a passive opener's SYN-ACK option: an explicit global
// suboption with b = 1 (§4.2, even when vacuous, §4.6), then the TEP
// policy's answer, normally one valid TEP (§4.5 SHOULD). An empty answer
// gives the vacuous option 45 03 01, which a passive opener may send only
// because the SYN carried ENO (§4.6); the connection then falls back. It
// reports whether negotiation goes on.
func (n *Negotiator) answer() bool {
	var subs []Suboption
	var reason Reason
	var detail string
	if n.peer.Vacuous() {
		reason, detail = ReasonVacuous, "peer's SYN-form option is vacuous"
	} else {
		subs = n.cfg.Policy.Answer(n.peer)
		if len(subs) == 0 {
			reason, detail = ReasonNoCommonTEP, "TEP policy has no answer"
		}
	}
	g := n.cfg.global(true)
	opt, err := AppendSYNForm(nil, g, true, subs)
	if err != nil {
		opt, _ = AppendSYNForm(nil, g, true, nil) // always encodes: 3 bytes
		reason, detail = ReasonTEPRejected, fmt.Sprintf("unencodable answer: %v", err)
	}
	n.setOwn(opt)
	if reason != ReasonNone {
		n.disable(reason, detail)
		n.sendSYNOpt = true // keep answering with the vacuous option (§4.6)
		return false
	}
	return true
}

// selectTEP applies §4.5: the negotiated TEP is the last valid TEP
// identifier in B's SYN-form option. A TEP is valid if both hosts sent a
// suboption for it (rule 1) and the TEP policy accepts the suboptions
// (rules 2 and 3: data valid, repetition well-defined). The v bits do not
// take part in the choice.
func (n *Negotiator) selectTEP() {
	aSubs, bSubs := n.peer.Subs, n.ownSubs
	aRaw, bRaw := n.peerRaw, n.own
	if !n.localB {
		aSubs, bSubs = bSubs, aSubs
		aRaw, bRaw = bRaw, aRaw
	}
	common := false
	for i := len(bSubs) - 1; i >= 0; i-- {
		tep := bSubs[i].TEP
		if containsTEP(bSubs[i+1:], tep) {
			continue // a later occurrence was already judged
		}
		as := filterTEP(aSubs, tep)
		if len(as) == 0 {
			continue
		}
		common = true
		bs := filterTEP(bSubs, tep)
		if !n.cfg.Policy.Valid(tep, as, bs) {
			continue
		}
		n.decided = true
		n.res = Result{
			TEP:          tep,
			TEPByte:      bSubs[i].Byte(), // the last (deciding) suboption B sent for it
			Role:         n.Role(),
			Transcript:   append(cloneBytes(aRaw), bRaw...),
			ASubs:        as,
			BSubs:        bs,
			PeerAppAware: n.peer.A(),
		}
		return
	}
	if !common {
		n.disable(ReasonNoCommonTEP, "no TEP listed by both hosts")
		return
	}
	n.disable(ReasonTEPRejected, "TEP policy found no common TEP valid")
}

func containsTEP(subs []Suboption, tep byte) bool {
	for _, s := range subs {
		if s.TEP == tep {
			return true
		}
	}
	return false
}

// filterTEP returns the suboptions for tep, in order, in a new slice whose
// data still aliases the Negotiator's private option copies.
func filterTEP(subs []Suboption, tep byte) []Suboption {
	var out []Suboption
	for _, s := range subs {
		if s.TEP == tep {
			out = append(out, s)
		}
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
