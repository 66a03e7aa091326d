package stack

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Defaults of RelayOptions fields left zero.
const (
	// DefaultMaxRelays bounds the relayed connections of each direction.
	// A relay holds two gVisor endpoints with their buffers and, inbound,
	// a kernel socket to the backend: 16,384 inbound relays stay well
	// below the unit's 65,536 descriptors, and the two directions have
	// budgets of their own so a flood of inbound connections cannot take
	// the host's outbound connections away.
	DefaultMaxRelays = 16384
	// DefaultMaxRelaysPerSource bounds the relays one source holds: a
	// quarter of a direction's budget, so one address (one IPv6 /64)
	// cannot take it all, while a host behind one NAT address, or the
	// local host whose outbound connections all come from one address,
	// keeps room for thousands of connections.
	DefaultMaxRelaysPerSource = 4096
)

// RelayOptions bound the forwarder's and the services' relayed connections
// and keep their peers' legs checked. The zero value means the defaults
// with keepalive on.
type RelayOptions struct {
	// MaxOutbound and MaxInbound bound the relays of the forwarder and of
	// all services together (default DefaultMaxRelays each). A connection
	// over the limit is reset: the application's SYN, or a service's
	// client once its handshake is done.
	MaxOutbound, MaxInbound int
	// MaxPerSource bounds the relays of one source, in each direction: a
	// service's client, or the host whose connection the forwarder
	// relays. IPv6 sources count per /64, which one host typically holds
	// whole. Default DefaultMaxRelaysPerSource.
	MaxPerSource int
	// Keepalive checks the legs to remote peers (see Keepalive).
	Keepalive Keepalive
	// RoutedIn, if set, says whether the host routes address a into the
	// device, and why (a configuration key, for the message); "" if not.
	// A service's backend there would be a loop (see CheckBackend). The
	// stack's own addresses count as routed in without it.
	RoutedIn func(a netip.Addr) string
}

func (o RelayOptions) withDefaults() RelayOptions {
	if o.MaxOutbound <= 0 {
		o.MaxOutbound = DefaultMaxRelays
	}
	if o.MaxInbound <= 0 {
		o.MaxInbound = DefaultMaxRelays
	}
	if o.MaxPerSource <= 0 {
		o.MaxPerSource = DefaultMaxRelaysPerSource
	}
	o.Keepalive = o.Keepalive.withDefaults()
	return o
}

// relayLimiter counts relayed connections per direction and source.
type relayLimiter struct {
	maxTotal  [Inbound + 1]int
	maxSource int

	mu     sync.Mutex
	total  [Inbound + 1]int    // guarded by mu
	source map[relaySource]int // guarded by mu; only sources holding relays
}

// relaySource is a direction and a source prefix (an IPv4 address or an
// IPv6 /64). Entries exist only while they hold relays, so the map is
// bounded by the total limits whatever sources peers use.
type relaySource struct {
	dir Direction
	pfx netip.Prefix
}

func newRelayLimiter(o RelayOptions) *relayLimiter {
	l := &relayLimiter{maxSource: o.MaxPerSource, source: make(map[relaySource]int)}
	l.maxTotal[Outbound] = o.MaxOutbound
	l.maxTotal[Inbound] = o.MaxInbound
	return l
}

// Limit events, counted in Counters and logged through limitLog.
const (
	evRelayLimitTotal  = "relay refused: too many relayed connections"
	evRelayLimitSource = "relay refused: too many relayed connections from one source"
	evPeerTimeout      = "relay reset: peer stopped answering (keepalive or retransmission timeout)"
	evBackendLoop      = "backend dial refused: address routed into the device"
)

// acquireRelay takes a relay slot for a connection from src in direction
// dir. It returns the function that gives the slot back (call it once), or
// an error saying which limit refused it; refusals are counted and logged.
func (s *Stack) acquireRelay(dir Direction, src netip.Addr) (release func(), err error) {
	l := s.relays
	k := relaySource{dir, sourcePrefix(src)}
	l.mu.Lock()
	switch {
	case l.total[dir] >= l.maxTotal[dir]:
		lim := l.maxTotal[dir]
		l.mu.Unlock()
		s.counters.RelayLimitTotal.Add(1)
		s.limits.hit(evRelayLimitTotal, "direction", dir.String(), "limit", lim)
		return nil, fmt.Errorf("%s relays at their limit (%d)", dir, lim)
	case l.source[k] >= l.maxSource:
		l.mu.Unlock()
		s.counters.RelayLimitSource.Add(1)
		s.limits.hit(evRelayLimitSource, "direction", dir.String(), "source", k.pfx.String(), "limit", l.maxSource)
		return nil, fmt.Errorf("%s relays from %v at their limit (%d)", dir, k.pfx, l.maxSource)
	}
	l.total[dir]++
	l.source[k]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total[dir]--
			if l.source[k]--; l.source[k] <= 0 {
				delete(l.source, k)
			}
			l.mu.Unlock()
		})
	}, nil
}

// Relays returns the relay slots held now in direction dir, and the number
// of sources holding them.
func (s *Stack) Relays(dir Direction) (relays, sources int) {
	l := s.relays
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.source {
		if k.dir == dir {
			sources++
		}
	}
	return l.total[dir], sources
}

// Default keepalive settings (RelayOptions.Keepalive fields left zero).
const (
	// DefaultKeepaliveIdle: probe a leg idle this long. Two minutes is far
	// below the idle timeouts of common NATs and stateful firewalls (five
	// minutes and more), so the probes also keep an idle connection's
	// path state alive, and costs one empty segment each way per idle
	// connection per two minutes.
	DefaultKeepaliveIdle = 2 * time.Minute
	// DefaultKeepaliveInterval and DefaultKeepaliveCount: after the idle
	// time, four probes 30 s apart. A peer is declared gone after
	// 2 min + 4 x 30 s = 4 min of silence, which rides out a route change
	// or a Wi-Fi roam of a minute or two.
	DefaultKeepaliveInterval = 30 * time.Second
	DefaultKeepaliveCount    = 4
)

// Keepalive configures TCP keepalive on the legs of relayed connections
// that are not the host's own: the forwarder's outer leg (and its inner
// leg, which in routed mode leads to another host) and a service's
// client leg. A service's backend socket is the kernel's, with Go's own
// keepalive. When a peer stops answering, its leg times out, the relay
// ends with an error and both legs are reset.
type Keepalive struct {
	Off      bool          // no keepalive (the zero value is on)
	Idle     time.Duration // default DefaultKeepaliveIdle
	Interval time.Duration // default DefaultKeepaliveInterval
	Count    int           // default DefaultKeepaliveCount
}

func (k Keepalive) withDefaults() Keepalive {
	if k.Idle <= 0 {
		k.Idle = DefaultKeepaliveIdle
	}
	if k.Interval <= 0 {
		k.Interval = DefaultKeepaliveInterval
	}
	if k.Count <= 0 {
		k.Count = DefaultKeepaliveCount
	}
	return k
}
