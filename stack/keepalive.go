package stack

import (
	"errors"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// setKeepalive turns TCP keepalive on for c's endpoint as configured
// (RelayOptions.Keepalive). gVisor then probes the peer once the leg has
// been idle (nothing unacknowledged) for Idle, every Interval, and after
// Count unanswered probes fails the endpoint with a timeout: reads and
// writes return it, the relay direction waiting on the leg wakes up, and
// the relay resets both legs. A leg with data unacknowledged is covered
// by the retransmission timeout instead.
//
// The application's own keepalives do not help here: the forwarder's
// inner leg (ours) answers them, so they never reach the peer.
func (s *Stack) setKeepalive(c *Conn) {
	k := s.opts.Relays.Keepalive
	if k.Off || c == nil || c.stream == nil {
		return
	}
	ep := c.stream.ep
	idle := tcpip.KeepaliveIdleOption(k.Idle)
	interval := tcpip.KeepaliveIntervalOption(k.Interval)
	// The options only fail on an endpoint already closed, whose relay
	// ends anyway.
	_ = ep.SetSockOpt(&idle)
	_ = ep.SetSockOpt(&interval)
	_ = ep.SetSockOptInt(tcpip.KeepaliveCountOption, k.Count)
	ep.SocketOptions().SetKeepAlive(true)
}

// IsPeerTimeout reports whether err (a relay's error) says that a leg's
// peer stopped answering: keepalive probes or retransmissions timed out
// (syscall.ETIMEDOUT, see NetError), not a Read or Write deadline.
func IsPeerTimeout(err error) bool {
	var re *RelayError
	return errors.As(err, &re) && errors.Is(re.Err, syscall.ETIMEDOUT)
}

// relayEnded counts and logs, for the relay of the connection named conn,
// an end by a peer timeout.
func (s *Stack) relayEnded(dir Direction, conn string, err error) {
	if IsPeerTimeout(err) {
		s.counters.PeerTimeouts.Add(1)
		s.limits.hit(evPeerTimeout, "direction", dir.String(), "conn", conn)
	}
}
