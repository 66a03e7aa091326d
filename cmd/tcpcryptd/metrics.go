package main

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/link"
)

// metricSources is what a scrape reads; set once the stack exists.
type metricSources struct {
	counters *stack.Counters
	table    connTable
	flows    func() int
	halfOpen func() int // inbound flows not yet complete nor accepted
	link     func() link.Stats
	tcp      func() stack.TCPRecoveryStats
}

// collector exposes the daemon's counters as Prometheus metrics. It reads
// them at scrape time (the stack and the link count per-packet events in
// atomics; nothing is counted twice). It implements prometheus.Collector.
type collector struct {
	obs   *connObserver
	src   atomic.Pointer[metricSources]
	ready *atomic.Bool

	info, up, active, conns, aborted, refusals, handshakes, handshakeErrors,
	authFailures, bytes, fallbacks, enabled, shimSegments, flows, halfOpen, flowEvents, loops, noSACK,
	rekeyFloods,
	handshakeLimits,
	relayRefusals, peerTimeouts, backendLoops,
	linkPackets, linkBytes, linkGSO, linkDrops, linkErrors *prometheus.Desc
	resumeChains, resumeDrops *prometheus.Desc
	tcpRecovery               *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(obs *connObserver, ready *atomic.Bool) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tcpcryptd_"+name, help, labels, nil)
	}
	return &collector{
		obs:   obs,
		ready: ready,
		info:  d("build_info", "Version of the running tcpcryptd (always 1).", "version"),
		up:    d("ready", "1 once the daemon has set up the host and serves, 0 while starting or stopping."),
		active: d("connections_active",
			"Connections being relayed now.", "direction"),
		conns: d("connections_total",
			"Connections the forwarder or a service handled, counted when they end, by outcome: "+
				"encrypted, plain (reason: ENO fallback reason), refused (policy required encryption), "+
				"failed (reason: dial, handshake, backend).", "direction", "outcome", "reason"),
		aborted: d("connections_aborted_total",
			"Relays that ended with an error (also counted in connections_total), by cause: auth, truncated, reset, error.",
			"direction", "cause"),
		refusals: d("eno_required_refusals_total",
			"Connections reset because policy required encryption and ENO fell back (both directions; "+
				"inbound ones never reach the connection table)."),
		handshakes: d("handshakes_total",
			"tcpcrypt handshakes completed, by kind: fresh key exchange or resumed session (RFC 8548 §3.5).", "kind"),
		handshakeErrors: d("handshake_errors_total", "tcpcrypt handshakes that failed after ENO enabled encryption."),
		authFailures:    d("auth_failures_total", "Connections aborted because a frame failed authentication (RFC 8548 §3.6)."),
		bytes: d("relayed_bytes_total",
			"Plaintext bytes relayed, towards the remote peer (to_peer) and from it (from_peer).", "direction"),
		fallbacks: d("eno_fallbacks_total", "Connections on which TCP-ENO fell back to plain TCP, by reason.", "reason"),
		enabled:   d("eno_enabled_total", "Connections on which TCP-ENO enabled encryption."),
		shimSegments: d("shim_segments_total",
			"ENO shim events on segments: rewritten (ENO option added), no_room (dropped: no room for ENO), rewrite_error, "+
				"split (cut in two to fit ENO in the MTU), gso_mss_lowered, unregistered_syn, "+
				"inspected, bad_checksum, out_of_window, syn_data_dropped, orphan_synack_dropped (a SYN-ACK of an ENO "+
				"listener whose flow was evicted or expired, dropped rather than sent without ENO).", "event"),
		flows: d("shim_flows", "Connections with ENO state in the shim now."),
		halfOpen: d("shim_half_open_flows",
			"Inbound connections with ENO state whose handshake has not completed, not yet accepted, now "+
				"(what a SYN flood holds; at most limits.eno_flows minus limits.eno_flows_outbound_reserve)."),
		flowEvents: d("shim_flow_events_total",
			"ENO flow table events: created, removed, expired, table_full, replaced, no_flow_at_accept "+
				"(accepted without ENO state: reset unless the policy is off), syn_dropped (inbound SYN dropped, no room "+
				"for its ENO state), evicted (oldest inbound flow not yet accepted evicted for a new SYN), source_evicted "+
				"(the same, the SYN's source at limits.half_open_per_source), reset (half-open inbound flow freed by a RST), "+
				"died (half-open inbound connection given up by the stack).", "event"),
		loops: d("forward_loops_total",
			"SYNs from the stack's own egress address refused by the forwarder: host routing sent an outer SYN "+
				"back into the device (no route to its destination outside it)."),
		noSACK: d("no_sack_connections_total",
			"Connection attempts (SYNs sent, or received by a service) this daemon left without SACK "+
				"because the peer was measured nearer than tcp.sack_min_rtt."),
		rekeyFloods: d("rekey_floods_total",
			"Relays reset because the tcpcrypt peer ran more key generations ahead of our rekey answers "+
				"than RFC 8548 §3.8 lets an honest peer (a rekey flood; also counted in connections_aborted_total)."),
		handshakeLimits: d("handshake_limit_events_total",
			"Inbound connections reset before their key exchange by a handshake limit ([limits]), by event: "+
				"evicted (all of a service's handshake slots taken; the oldest one waiting for Init1 made room), "+
				"init1_timeout (no Init1 within limits.init1_timeout), source_busy (too many connections of one source "+
				"waiting for its limits.handshakes_per_source slots), cpu_budget (limits.handshake_budget_per_source spent).", "event"),
		relayRefusals: d("relay_refusals_total",
			"New connections reset because relays were at a limit: limit=total (limits.relays_outbound/inbound) "+
				"or per_source (limits.relays_per_source).", "limit"),
		peerTimeouts: d("peer_timeouts_total",
			"Relays reset on both legs because a peer stopped answering (TCP keepalive or retransmission timeout)."),
		backendLoops: d("backend_loops_total",
			"Service backend dials refused because the address is routed into the device (the dial would loop back)."),
		linkPackets: d("link_packets_total", "Packets through the TUN device (a GSO super-packet counts once).", "direction"),
		linkBytes:   d("link_bytes_total", "IP bytes through the TUN device.", "direction"),
		linkGSO:     d("link_gso_packets_total", "GSO/TSO super-packets through the TUN device unsplit.", "direction"),
		linkDrops:   d("link_drops_total", "Packets the TUN link endpoint dropped, by reason.", "direction", "reason"),
		linkErrors:  d("link_errors_total", "read(2)/write(2) failures on the TUN device.", "direction"),
		resumeChains: d("resumption_cache_chains",
			"Resumption chains (RFC 8548 §3.5) held in the cache, as of the last sweep."),
		resumeDrops: d("resumption_cache_drops_total",
			"Resumption chains erased from the cache before use, by reason: expired (end of crypto.resumption_lifetime), "+
				"evicted_own (replaced by a newer chain of the same client or prefix: limits.resumption_prefix_share), "+
				"evicted_other (cache full: dropped from the prefix holding the most chains), as of the last sweep.", "reason"),
		tcpRecovery: d("tcp_recovery_events_total",
			"The stack's TCP loss recovery (every connection, both legs), by event: segments_sent, retransmits, "+
				"fast_retransmit, timeouts (RTOs fired), fast_recovery (by duplicate ACKs), sack_recovery, "+
				"tlp_recovery (tail loss probes), spurious_recovery, spurious_rto_recovery.", "event"),
	}
}

// setSources makes the stack's counters visible to scrapes.
func (c *collector) setSources(s *metricSources) { c.src.Store(s) }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.up, c.active, c.conns, c.aborted, c.refusals, c.handshakes,
		c.handshakeErrors, c.authFailures, c.bytes, c.fallbacks, c.enabled, c.shimSegments, c.flows, c.halfOpen, c.flowEvents,
		c.loops, c.noSACK, c.linkPackets, c.linkBytes, c.linkGSO, c.linkDrops, c.linkErrors,
		c.resumeChains, c.resumeDrops,
		c.rekeyFloods,
		c.handshakeLimits,
		c.relayRefusals, c.peerTimeouts, c.backendLoops,
		c.tcpRecovery,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.info, 1, version)
	ready := 0.0
	if c.ready.Load() {
		ready = 1
	}
	gauge(c.up, ready)

	outcomes, aborts := c.obs.snapshot()
	for k, v := range outcomes {
		counter(c.conns, v, k.direction, k.outcome, k.reason)
	}
	for k, v := range aborts {
		counter(c.aborted, v, k.direction, k.cause)
	}
	counter(c.authFailures, c.obs.authFailures.Load())

	toPeer, fromPeer := c.obs.bytesToPeerEnded.Load(), c.obs.bytesFromPeerEnded.Load()
	src := c.src.Load()
	if src == nil {
		counter(c.bytes, toPeer, "to_peer")
		counter(c.bytes, fromPeer, "from_peer")
		return
	}
	// Live connections add what they relayed so far; a connection that
	// leaves the table moves its bytes to the observer's totals.
	active := map[string]float64{stack.Outbound.String(): 0, stack.Inbound.String(): 0}
	for _, ci := range src.table.List() {
		active[ci.Direction.String()]++
		toPeer += ci.BytesInnerToOuter
		fromPeer += ci.BytesOuterToInner
	}
	for dir, n := range active {
		gauge(c.active, n, dir)
	}
	counter(c.bytes, toPeer, "to_peer")
	counter(c.bytes, fromPeer, "from_peer")

	sc := src.counters
	counter(c.refusals, sc.RequiredRefusals.Load())
	resumed := sc.Resumed.Load()
	counter(c.handshakes, sc.Handshakes.Load()-min(resumed, sc.Handshakes.Load()), "fresh")
	counter(c.handshakes, resumed, "resumed")
	counter(c.handshakeErrors, sc.HandshakeErrors.Load())
	counter(c.enabled, sc.Enabled.Load())
	counter(c.loops, sc.ForwardLoops.Load())
	counter(c.noSACK, sc.NoSACK.Load())
	gauge(c.resumeChains, float64(sc.ResumeChains.Load()))
	counter(c.resumeDrops, sc.ResumeExpired.Load(), "expired")
	counter(c.resumeDrops, sc.ResumeEvictedOwn.Load(), "evicted_own")
	counter(c.resumeDrops, sc.ResumeEvictedOther.Load(), "evicted_other")
	counter(c.rekeyFloods, sc.RekeyFloods.Load())
	counter(c.handshakeLimits, sc.HandshakesEvicted.Load(), "evicted")
	counter(c.handshakeLimits, sc.Init1Timeouts.Load(), "init1_timeout")
	counter(c.handshakeLimits, sc.HandshakeSourceBusy.Load(), "source_busy")
	counter(c.handshakeLimits, sc.HandshakeCPULimited.Load(), "cpu_budget")
	counter(c.relayRefusals, sc.RelayLimitTotal.Load(), "total")
	counter(c.relayRefusals, sc.RelayLimitSource.Load(), "per_source")
	counter(c.peerTimeouts, sc.PeerTimeouts.Load())
	counter(c.backendLoops, sc.BackendLoops.Load())
	for r := eno.ReasonNone + 1; r <= eno.ReasonConfig; r++ {
		counter(c.fallbacks, sc.Fallback(r), r.String())
	}
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"rewritten", sc.Rewrites.Load()}, {"no_room", sc.NoRoom.Load()}, {"rewrite_error", sc.RewriteErrors.Load()},
		{"split", sc.Split.Load()}, {"gso_mss_lowered", sc.GSOMSSLowered.Load()},
		{"unregistered_syn", sc.Unregistered.Load()}, {"inspected", sc.Inspected.Load()},
		{"bad_checksum", sc.BadChecksum.Load()}, {"out_of_window", sc.OutOfWindow.Load()},
		{"syn_data_dropped", sc.SYNDataDropped.Load()}, {"orphan_synack_dropped", sc.OrphanSYNACKs.Load()},
	} {
		counter(c.shimSegments, e.v, e.name)
	}
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"created", sc.FlowsCreated.Load()}, {"removed", sc.FlowsRemoved.Load()}, {"expired", sc.FlowsExpired.Load()},
		{"table_full", sc.FlowTableFull.Load()}, {"replaced", sc.FlowsReplaced.Load()},
		{"no_flow_at_accept", sc.NoFlowAtAccept.Load()}, {"syn_dropped", sc.SYNsDropped.Load()},
		{"evicted", sc.FlowsEvicted.Load()}, {"source_evicted", sc.FlowsSourceEvicted.Load()},
		{"reset", sc.FlowsReset.Load()}, {"died", sc.FlowsDied.Load()},
	} {
		counter(c.flowEvents, e.v, e.name)
	}
	if src.flows != nil {
		gauge(c.flows, float64(src.flows()))
	}
	if src.halfOpen != nil {
		gauge(c.halfOpen, float64(src.halfOpen()))
	}
	if src.link != nil {
		ls := src.link()
		counter(c.linkPackets, ls.RXPackets, "rx")
		counter(c.linkPackets, ls.TXPackets, "tx")
		counter(c.linkBytes, ls.RXBytes, "rx")
		counter(c.linkBytes, ls.TXBytes, "tx")
		counter(c.linkGSO, ls.RXGSOPackets, "rx")
		counter(c.linkGSO, ls.TXGSOPackets, "tx")
		for _, e := range []struct {
			dir, reason string
			v           uint64
		}{
			{"rx", "short", ls.RXDropShort}, {"rx", "malformed", ls.RXDropMalformed},
			{"rx", "unknown_proto", ls.RXDropUnknownProto}, {"rx", "bad_virtio", ls.RXDropBadVirtio},
			{"rx", "unsupported_gso", ls.RXDropUnsupportedGSO}, {"rx", "checksum", ls.RXDropChecksum},
			{"tx", "no_csum", ls.TXDropNoCsum}, {"tx", "bad_gso", ls.TXDropBadGSO}, {"tx", "header", ls.TXDropHeader},
		} {
			counter(c.linkDrops, e.v, e.dir, e.reason)
		}
		counter(c.linkErrors, ls.RXReadErrors, "rx")
		counter(c.linkErrors, ls.TXErrors, "tx")
	}
	if src.tcp != nil {
		ts := src.tcp()
		for _, e := range []struct {
			name string
			v    uint64
		}{
			{"segments_sent", ts.SegmentsSent}, {"retransmits", ts.Retransmits}, {"fast_retransmit", ts.FastRetransmit},
			{"timeouts", ts.Timeouts}, {"fast_recovery", ts.FastRecovery}, {"sack_recovery", ts.SACKRecovery},
			{"tlp_recovery", ts.TLPRecovery}, {"spurious_recovery", ts.SpuriousRecovery},
			{"spurious_rto_recovery", ts.SpuriousRTORecovery},
		} {
			counter(c.tcpRecovery, e.v, e.name)
		}
	}
}

// newMetrics returns a registry with our collector and the Go runtime and
// process collectors, and its HTTP handler. No global registry is used.
func newMetrics(c *collector) (*prometheus.Registry, http.Handler) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// metricsOnly serves h at /metrics and nothing else: the TCP metrics
// listener must not expose the control API.
func metricsOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
