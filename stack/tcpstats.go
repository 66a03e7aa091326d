package stack

// TCPRecoveryStats are gVisor's TCP loss-recovery counters, summed over every
// connection of the stack since it started: which recovery path fired on a
// lossy path (docs/loss-recovery.md).
type TCPRecoveryStats struct {
	SegmentsSent        uint64 // every TCP segment sent, retransmissions included
	Retransmits         uint64 // segments retransmitted, for any reason
	FastRetransmit      uint64 // retransmissions after duplicate ACKs or SACK
	Timeouts            uint64 // retransmission timeouts (RTO) that fired
	FastRecovery        uint64 // recoveries by duplicate ACKs (no SACK)
	SACKRecovery        uint64 // recoveries driven by the SACK scoreboard
	TLPRecovery         uint64 // losses repaired by a RACK tail loss probe
	SpuriousRecovery    uint64 // recoveries found spurious afterwards (DSACK)
	SpuriousRTORecovery uint64 // RTOs found spurious afterwards
}

// TCPRecoveryStats returns the stack's TCP loss-recovery counters.
func (s *Stack) TCPRecoveryStats() TCPRecoveryStats {
	t := s.gv.Stats().TCP
	return TCPRecoveryStats{
		SegmentsSent:        t.SegmentsSent.Value(),
		Retransmits:         t.Retransmits.Value(),
		FastRetransmit:      t.FastRetransmit.Value(),
		Timeouts:            t.Timeouts.Value(),
		FastRecovery:        t.FastRecovery.Value(),
		SACKRecovery:        t.SACKRecovery.Value(),
		TLPRecovery:         t.TLPRecovery.Value(),
		SpuriousRecovery:    t.SpuriousRecovery.Value(),
		SpuriousRTORecovery: t.SpuriousRTORecovery.Value(),
	}
}
