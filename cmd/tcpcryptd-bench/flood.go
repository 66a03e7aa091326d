package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// The flood figure's attacker: a namespace of its own on a third link of
// the router, which sends to the server daemon's service
//
//   - SYNs carrying an ENO option from random addresses of spoofNet, which
//     the router routes back to the attacker, whose kernel drops the
//     SYN-ACKs (forwarding off, no such local address): no answer, no RST,
//     as from addresses that do not exist;
//
//   - stalled handshakes: SYNs with ENO from random addresses of stallNet
//     (routed to the attacker the same way), whose SYN-ACKs the attacker
//     reads from the link (AF_PACKET) and acknowledges with the ENO option,
//     which completes the TCP handshake and the ENO negotiation (RFC 8547
//     §4.3), and then it never sends tcpcrypt's Init1: the server holds a
//     handshake waiting for it until its deadline.
//
//     laptop -- router -- server
//     |
//     attacker 10.77.4.2 (spoofNet and stallNet routed to it)
//
// Everything is IPv4 and stays inside the bench's namespaces.
var (
	attackerIPv4  = netip.MustParseAddr("10.77.4.2")
	routerAtkIPv4 = netip.MustParseAddr("10.77.4.1")
	attackerNet   = netip.MustParsePrefix("10.77.4.0/24")
	spoofNet      = netip.MustParsePrefix("10.200.0.0/16")
	stallNet      = netip.MustParsePrefix("10.201.0.0/16")
	macAttacker   = net.HardwareAddr{0x02, 0x77, 0, 0, 4, 2}
	macRouterAtk  = net.HardwareAddr{0x02, 0x77, 0, 0, 4, 1}
)

const routerAtkIface = "rtr-atk"

// floodMaxDuration bounds a flood that its caller fails to stop.
const floodMaxDuration = 10 * time.Minute

// attacker is the attacking namespace and its sockets.
type attacker struct {
	ns      *topo.NS
	rawFD   int // SOCK_RAW, IPPROTO_RAW: whole IPv4 packets, any source
	linkFD  int // AF_PACKET on the attacker's link: the SYN-ACKs to stallNet
	closeMu sync.Mutex
}

// newAttacker adds the attacker namespace to tp and links it to the router.
func newAttacker(tp *topo.Topology) (_ *attacker, err error) {
	ns, err := topo.NewNamespace("tcpbench", "attacker")
	if err != nil {
		return nil, err
	}
	a := &attacker{ns: ns, rawFD: -1, linkFD: -1}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := topo.Link(ns, topo.HostIface, macAttacker, tp.Router, routerAtkIface, macRouterAtk); err != nil {
		return nil, err
	}
	if err := ns.AddAddrs(topo.HostIface, netip.PrefixFrom(attackerIPv4, attackerNet.Bits())); err != nil {
		return nil, err
	}
	if err := tp.Router.AddAddrs(routerAtkIface, netip.PrefixFrom(routerAtkIPv4, attackerNet.Bits())); err != nil {
		return nil, err
	}
	if err := ns.AddRoute(netip.Prefix{}, routerAtkIPv4, topo.HostIface); err != nil {
		return nil, err
	}
	for _, p := range []netip.Prefix{spoofNet, stallNet} {
		if err := tp.Router.AddRoute(p, attackerIPv4, routerAtkIface); err != nil {
			return nil, err
		}
	}
	// Not forwarding, the attacker's kernel drops packets to addresses it
	// does not have without an ICMP error, which would end the server's
	// half-open connections early.
	if err := ns.WriteSysctl("net/ipv4/ip_forward", "0"); err != nil {
		return nil, err
	}
	link, err := ns.Netlink().LinkByName(topo.HostIface)
	if err != nil {
		return nil, err
	}
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		a.rawFD = fd
		proto := htons(unix.ETH_P_IP)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		a.linkFD = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: link.Attrs().Index}); err != nil {
			return fmt.Errorf("bind packet socket: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
		}
		// Reads wake up every 100 ms to see whether the flood ended.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Close closes the sockets and removes the namespace (and with it the
// router's end of the link and the routes through it).
func (a *attacker) Close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	for _, fd := range []*int{&a.rawFD, &a.linkFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	if a.ns == nil {
		return nil
	}
	err := a.ns.Remove()
	a.ns = nil
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// floodStats are what one flood did.
type floodStats struct {
	Spoofed     int64 // spoofed SYNs sent
	StallSYNs   int64 // stalled handshakes' SYNs sent
	StallACKs   int64 // of their SYN-ACKs acknowledged (with ENO)
	StallNoENO  int64 // SYN-ACKs to stalled handshakes without an ENO option
	StallResets int64 // RSTs the server sent to stalled handshakes
	SendErrors  int64
}

func (s floodStats) String() string {
	return fmt.Sprintf("%d spoofed SYNs; stalled handshakes: %d SYNs, %d SYN-ACKs answered (%d without ENO), %d RSTs from the server; %d send errors",
		s.Spoofed, s.StallSYNs, s.StallACKs, s.StallNoENO, s.StallResets, s.SendErrors)
}

// flood runs the spoofed-SYN flood at synRate and the stalled-handshake
// flood at stallRate (per second; 0: off) against target until the
// returned stop is called (or floodMaxDuration has passed), which waits for
// the flood to end and returns its counts.
func (a *attacker) flood(ctx context.Context, target netip.AddrPort, synRate, stallRate int) (stop func() floodStats) {
	ctx, cancel := context.WithTimeout(ctx, floodMaxDuration)
	var st struct {
		spoofed, stallSYNs, stallACKs, stallNoENO, stallResets, sendErrors atomic.Int64
	}
	// The stalled handshakes waiting for a SYN-ACK: source address and
	// port -> our initial sequence number; entries older than a minute go.
	type key struct {
		addr [4]byte
		port uint16
	}
	type pending struct {
		isn  uint32
		sent time.Time
	}
	var mu sync.Mutex
	waiting := map[key]pending{}
	send := func(pkt []byte) {
		if err := unix.Sendto(a.rawFD, pkt, 0, &unix.SockaddrInet4{Addr: target.Addr().As4()}); err != nil {
			st.sendErrors.Add(1)
		}
	}
	dst := target.Addr().As4()
	var wg sync.WaitGroup
	if synRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64)
			paced(ctx, synRate, func() {
				src := randomAddr(spoofNet)
				buf = appendSYN(buf[:0], src, dst, uint16(1024+rand.IntN(64512)), target.Port(), rand.Uint32())
				send(buf)
				st.spoofed.Add(1)
			})
		}()
	}
	if stallRate > 0 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64)
			paced(ctx, stallRate, func() {
				k := key{randomAddr(stallNet), uint16(1024 + rand.IntN(64512))}
				isn := rand.Uint32()
				now := time.Now()
				mu.Lock()
				if len(waiting) > 4*stallRate*60 {
					for k, p := range waiting {
						if now.Sub(p.sent) > time.Minute {
							delete(waiting, k)
						}
					}
				}
				waiting[k] = pending{isn, now}
				mu.Unlock()
				buf = appendSYN(buf[:0], k.addr, dst, k.port, target.Port(), isn)
				send(buf)
				st.stallSYNs.Add(1)
			})
		}()
		go func() {
			defer wg.Done()
			in := make([]byte, 2048)
			out := make([]byte, 0, 64)
			for ctx.Err() == nil {
				n, _, err := unix.Recvfrom(a.linkFD, in, 0)
				if err != nil {
					if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
						continue
					}
					return
				}
				seg, ok := parseTCP4(in[:n])
				if !ok || seg.src != dst || seg.sport != target.Port() || !stallNet.Contains(netip.AddrFrom4(seg.dst)) {
					continue
				}
				mu.Lock()
				p, known := waiting[key{seg.dst, seg.dport}]
				mu.Unlock()
				switch {
				case !known:
				case seg.flags&tcpRST != 0:
					st.stallResets.Add(1)
				case seg.flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK && seg.ack == p.isn+1:
					if !seg.eno {
						st.stallNoENO.Add(1)
					}
					// Answered again if the SYN-ACK is retransmitted:
					// our ACK may have been lost.
					out = appendACK(out[:0], seg.dst, dst, seg.dport, target.Port(), p.isn+1, seg.seq+1)
					send(out)
					st.stallACKs.Add(1)
				}
			}
		}()
	}
	return func() floodStats {
		cancel()
		wg.Wait()
		return floodStats{Spoofed: st.spoofed.Load(), StallSYNs: st.stallSYNs.Load(), StallACKs: st.stallACKs.Load(),
			StallNoENO: st.stallNoENO.Load(), StallResets: st.stallResets.Load(), SendErrors: st.sendErrors.Load()}
	}
}

// paced calls f rate times per second until ctx ends, in bursts every
// 5 ms; a late wake-up is made up for, but never by more than a tenth of
// a second's worth.
func paced(ctx context.Context, rate int, f func()) {
	start := time.Now()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	var done int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := int64(time.Since(start).Seconds()*float64(rate)) - done
		if most := int64(max(1, rate/10)); due > most {
			done += due - most
			due = most
		}
		for range due {
			f()
		}
		done += due
	}
}

// randomAddr returns a random address of an IPv4 prefix, neither its
// first nor its last.
func randomAddr(p netip.Prefix) [4]byte {
	a := p.Masked().Addr().As4()
	host := uint32(1) << (32 - p.Bits())
	v := binary.BigEndian.Uint32(a[:]) + 1 + rand.Uint32N(host-2)
	binary.BigEndian.PutUint32(a[:], v)
	return a
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// synENO is the ENO option of the attacker's SYNs: host A (b = 0, no
// global suboption) offering the one TEP every tcpcrypt implementation
// has, X25519 (RFC 8548 §7, RFC 8547 §4.1).
var synENO = func() []byte {
	o, err := eno.AppendSYNForm(nil, 0, false, []eno.Suboption{{TEP: byte(kex.X25519)}})
	if err != nil {
		panic(err)
	}
	return o
}()

// appendSYN appends an IPv4 SYN with MSS, SACK-permitted, window scale and
// ENO options.
func appendSYN(b []byte, src, dst [4]byte, sport, dport uint16, seq uint32) []byte {
	opts := []byte{2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7}
	opts = append(opts, synENO...)
	return appendTCP4(b, src, dst, sport, dport, seq, 0, tcpSYN, opts)
}

// appendACK appends the third segment of the handshake: an ACK with the
// non-SYN-form ENO option, which host A sends until it hears from B
// (RFC 8547 §4.6).
func appendACK(b []byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32) []byte {
	return appendTCP4(b, src, dst, sport, dport, seq, ack, tcpACK, eno.NonSYNForm)
}

// appendTCP4 appends an IPv4 packet holding a TCP segment without payload.
func appendTCP4(b []byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags byte, opts []byte) []byte {
	optLen := (len(opts) + 3) &^ 3
	tcpLen := 20 + optLen
	start := len(b)
	b = append(b, 0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, unix.IPPROTO_TCP, 0, 0)
	binary.BigEndian.PutUint16(b[start+2:], uint16(20+tcpLen))
	binary.BigEndian.PutUint16(b[start+4:], uint16(rand.Uint32()))
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	binary.BigEndian.PutUint16(b[start+10:], checksum(b[start:start+20], 0))
	t := len(b)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, byte(tcpLen/4)<<4, flags)
	b = binary.BigEndian.AppendUint16(b, 65535) // window
	b = append(b, 0, 0, 0, 0)                   // checksum, urgent pointer
	b = append(b, opts...)
	for range optLen - len(opts) {
		b = append(b, 0) // EOL
	}
	// The pseudo-header (RFC 793 §3.1): addresses, protocol, TCP length.
	var ph uint32
	for _, a := range [][4]byte{src, dst} {
		ph += uint32(binary.BigEndian.Uint16(a[:2])) + uint32(binary.BigEndian.Uint16(a[2:]))
	}
	ph += unix.IPPROTO_TCP + uint32(tcpLen)
	binary.BigEndian.PutUint16(b[t+16:], checksum(b[t:], ph))
	return b
}

// checksum is the Internet checksum of b, started from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// tcp4Seg is what the attacker needs of a received IPv4 TCP segment.
type tcp4Seg struct {
	src, dst     [4]byte
	sport, dport uint16
	seq, ack     uint32
	flags        byte
	eno          bool // carries an ENO option (kind 69)
}

// parseTCP4 parses an IPv4 packet holding a TCP segment; ok is false for
// anything else or anything truncated.
func parseTCP4(p []byte) (s tcp4Seg, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
		return s, false
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl+20 {
		return s, false
	}
	copy(s.src[:], p[12:16])
	copy(s.dst[:], p[16:20])
	t := p[ihl:]
	off := int(t[12]>>4) * 4
	if off < 20 || len(t) < off {
		return s, false
	}
	s.sport = binary.BigEndian.Uint16(t[0:])
	s.dport = binary.BigEndian.Uint16(t[2:])
	s.seq = binary.BigEndian.Uint32(t[4:])
	s.ack = binary.BigEndian.Uint32(t[8:])
	s.flags = t[13]
	if enos, legacy, err := eno.Options(t[20:off]); err == nil {
		s.eno = len(enos) > 0 || legacy
	}
	return s, true
}

// phaseFlood measures the flood figures: on a routed topology with the
// attacker attached, each selected setup with a flood row is started
// afresh for every run (a flood leaves half-open state behind that would
// weigh on the next run's baseline).
func (b *bench) phaseFlood(ctx context.Context) error {
	if !b.group("flood") {
		return nil
	}
	tp, be, err := b.newTopology(false)
	if err != nil {
		return err
	}
	defer tp.Close()
	defer be.stop(procStopGrace)
	atk, err := newAttacker(tp)
	if err != nil {
		return fmt.Errorf("attacker: %w", err)
	}
	defer atk.Close()
	b.logf("flood: attacker %s on the router's %s", atk.ns, routerAtkIface)
	for r := range b.o.floodRuns {
		b.eachSetup(ctx, tp, fmt.Sprintf("flood, round %d of %d", r+1, b.o.floodRuns),
			func(spec setupSpec) bool { return spec.flood != "" },
			func(spec setupSpec, s Setup, c *client) error {
				b.measureFlood(ctx, spec, s, c, atk, r)
				return nil
			})
	}
	return ctx.Err()
}

// floodTarget is the service both the legitimate client and the attacker
// use: IPv4 whatever -ipv6 says (the attacker speaks IPv4 only).
var floodTarget = netip.AddrPortFrom(benchService, benchServicePort)

// measureFlood makes run r of the flood figures on s: a connection-rate
// run, then the floods, and after their warm-up a connection-rate run
// under them.
func (b *bench) measureFlood(ctx context.Context, spec setupSpec, s Setup, c *client, atk *attacker, r int) {
	d, ok := s.(*daemonSetup)
	if !ok {
		b.failure(spec.name+" flood", errors.New("not a tcpcryptd setup"))
		return
	}
	fail := func(what string, err error) {
		b.failure(fmt.Sprintf("%s flood run %d: %s", spec.name, r+1, what), err)
		for _, f := range []string{"flood-connrate", "flood-ratio", "flood-plain"} {
			b.add(f, spec.flood, math.NaN())
		}
	}
	if err := waitReachable(ctx, c, floodTarget); err != nil {
		fail("reach", err)
		return
	}
	// A connection counts if it ended as the setup's policy has it:
	// encrypted, or plain with ENO off (the reference for what the path
	// itself carries under the flood).
	want := "encrypted"
	if d.o.policy == "off" {
		want = "plain"
	}
	base, err := b.floodRate(ctx, d, c, want)
	if err != nil {
		fail("baseline", err)
		return
	}
	b.logf("  flood run %d: without the flood %s", r+1, base)
	stop := atk.flood(ctx, floodTarget, b.o.floodSYNRate, b.o.floodStall)
	select {
	case <-ctx.Done():
	case <-time.After(b.o.floodWarmup):
	}
	under, err := b.floodRate(ctx, d, c, want)
	st := stop()
	b.logf("  flood run %d: %s", r+1, st)
	if err != nil {
		fail("flooded run", err)
		return
	}
	b.logf("  flood run %d: under the flood %s", r+1, under)
	b.add("flood-connrate", spec.flood, under.rate)
	b.add("flood-ratio", spec.flood, under.rate/base.rate)
	b.add("flood-plain", spec.flood, float64(under.laptop["plain"]))
	if under.failed > 0 {
		b.setNote("flood-connrate", spec.flood, fmt.Sprintf("run %d: %d connections failed", r+1, under.failed))
	}
}

// floodRun is one connection-rate run of the flood figures.
type floodRun struct {
	rate           float64 // connections per second that ended as wanted
	all            float64 // connections per second completed, whatever their outcome
	failed         int64
	laptop, server map[string]uint64 // outcomes counted by each daemon during the run
}

func (f floodRun) String() string {
	return fmt.Sprintf("%.0f conn/s as wanted of %.0f conn/s (%d failed); laptop outcomes %s; server outcomes %s",
		f.rate, f.all, f.failed, outcomesString(f.laptop), outcomesString(f.server))
}

// floodRate makes one connection-rate run against floodTarget and counts
// the connections by the outcome the laptop daemon gave them: the rate of
// those with outcome want is the completed connections' rate times their
// share.
func (b *bench) floodRate(ctx context.Context, d *daemonSetup, c *client, want string) (floodRun, error) {
	var fr floodRun
	l0, err1 := d.outcomes("laptop")
	s0, err2 := d.outcomes("server")
	all, failed, err := c.connRate(ctx, floodTarget, b.o.rateWorkers, b.o.rateDuration)
	// The run's connections end (and are counted) just after it.
	time.Sleep(500 * time.Millisecond)
	l1, err3 := d.outcomes("laptop")
	s1, err4 := d.outcomes("server")
	if err == nil {
		err = errors.Join(err1, err2, err3, err4)
	}
	if err != nil {
		return fr, err
	}
	fr.all, fr.failed = all, failed
	fr.laptop, fr.server = outcomesSince(l1, l0), outcomesSince(s1, s0)
	var ended uint64
	for _, n := range fr.laptop {
		ended += n
	}
	if ended == 0 {
		return fr, errors.New("the laptop daemon counted no connection")
	}
	fr.rate = all * float64(fr.laptop[want]) / float64(ended)
	return fr, nil
}

// outcomesSince returns the growth of each outcome counter.
func outcomesSince(after, before map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

// outcomesString formats outcome counts in a stable order.
func outcomesString(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
