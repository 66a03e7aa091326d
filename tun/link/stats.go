package link

import "sync/atomic"

// Stats is a snapshot of an Endpoint's counters. Per-packet events are counted
// here at the point they happen, never logged.
type Stats struct {
	RXPackets    uint64 // packets delivered to the stack (a super-packet counts once)
	RXBytes      uint64 // IP bytes delivered
	RXGSOPackets uint64 // TSO super-packets delivered unsplit
	RXCompleted  uint64 // partial checksums completed (non-TCP/UDP NEEDS_CSUM)
	RXUnverified uint64 // fragments without a kernel checksum promise, passed unchecked

	RXDropShort          uint64
	RXDropMalformed      uint64
	RXDropUnknownProto   uint64
	RXDropBadVirtio      uint64
	RXDropUnsupportedGSO uint64
	RXDropChecksum       uint64
	RXReadErrors         uint64 // read(2) failures other than EAGAIN/EINTR

	TXPackets    uint64 // packets written (a super-packet counts once)
	TXBytes      uint64 // IP bytes written
	TXGSOPackets uint64 // super-packets handed to the kernel for segmentation
	TXDropNoCsum uint64
	TXDropBadGSO uint64
	TXDropHeader uint64
	TXErrors     uint64 // write(2) failures; the packet is lost
}

// RXDrops is the sum of all inbound drop counters.
func (s Stats) RXDrops() uint64 {
	return s.RXDropShort + s.RXDropMalformed + s.RXDropUnknownProto + s.RXDropBadVirtio +
		s.RXDropUnsupportedGSO + s.RXDropChecksum
}

// TXDrops is the sum of all outbound drop counters (write errors excluded).
func (s Stats) TXDrops() uint64 {
	return s.TXDropNoCsum + s.TXDropBadGSO + s.TXDropHeader
}

// counters are the live atomics behind Stats.
type counters struct {
	rxPackets, rxBytes, rxGSO, rxCompleted, rxUnverified, rxReadErrors atomic.Uint64
	rxDrops                                                            [numRxVerdicts]atomic.Uint64

	txPackets, txBytes, txGSO, txErrors atomic.Uint64
	txDrops                             [numTxVerdicts]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		RXPackets:            c.rxPackets.Load(),
		RXBytes:              c.rxBytes.Load(),
		RXGSOPackets:         c.rxGSO.Load(),
		RXCompleted:          c.rxCompleted.Load(),
		RXUnverified:         c.rxUnverified.Load(),
		RXDropShort:          c.rxDrops[rxDropShort].Load(),
		RXDropMalformed:      c.rxDrops[rxDropMalformed].Load(),
		RXDropUnknownProto:   c.rxDrops[rxDropUnknownProto].Load(),
		RXDropBadVirtio:      c.rxDrops[rxDropBadVirtio].Load(),
		RXDropUnsupportedGSO: c.rxDrops[rxDropUnsupportedGSO].Load(),
		RXDropChecksum:       c.rxDrops[rxDropChecksum].Load(),
		RXReadErrors:         c.rxReadErrors.Load(),
		TXPackets:            c.txPackets.Load(),
		TXBytes:              c.txBytes.Load(),
		TXGSOPackets:         c.txGSO.Load(),
		TXDropNoCsum:         c.txDrops[txDropNoCsum].Load(),
		TXDropBadGSO:         c.txDrops[txDropBadGSO].Load(),
		TXDropHeader:         c.txDrops[txDropHeaders].Load(),
		TXErrors:             c.txErrors.Load(),
	}
}
