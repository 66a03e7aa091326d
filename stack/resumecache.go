package stack

// Limit events of the resumption cache (names are constants: limitLog).
const (
	eventResumeEvictOther = "resumption cache full: evicted chains of the largest prefix share"
	eventResumeEvictOwn   = "resumption cache: a prefix over its share replaced its own oldest chains"
)

// sweepResumption runs on the shim's sweeper (every Options.SweepInterval)
// when tcpcrypt resumption has a cache. It erases the secrets of expired
// chains even if no connection uses the cache (every use of the cache
// erases them too, but an idle daemon would keep them), copies the cache's
// counters into the stack's, and logs evictions once per interval.
//
// Decision (issue 13): the sweep rides on the shim's existing ticker rather
// than a goroutine of the cache's own, so it stops with the stack and a
// Cache needs no Close. A Cache shared by several stacks is swept by each;
// Sweep is cheap (one step per chain erased) and the counters are copied,
// not added, so none is counted twice.
func (s *Stack) sweepResumption() {
	c := s.tcpcrypt().Cache
	c.Sweep()
	st := c.Stats()
	sc := &s.counters
	sc.ResumeChains.Store(uint64(st.Chains))
	sc.ResumeExpired.Store(st.Expired)
	if old := sc.ResumeEvictedOther.Swap(st.EvictedOther); st.EvictedOther > old {
		s.limits.hit(eventResumeEvictOther, "evicted", st.EvictedOther-old, "chains", st.Chains)
	}
	if old := sc.ResumeEvictedOwn.Swap(st.EvictedOwn); st.EvictedOwn > old {
		s.limits.hit(eventResumeEvictOwn, "evicted", st.EvictedOwn-old, "chains", st.Chains)
	}
}
