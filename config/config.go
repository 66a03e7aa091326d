// Package config holds tcpcryptd's configuration: the TOML schema, the
// embedded default file, and validation whose messages name the key, the bad
// value and the fix.
//
// Parse, then validate, then hand out a plain value: Load and Parse have no
// side effects, and a *Config they return is complete (every default filled
// in) and valid.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where tcpcryptd looks for its configuration file when the
// command line names none and the file exists.
const DefaultPath = "/etc/tcpcryptd/tcpcryptd.toml"

// defaultTOML is the embedded default configuration. Its text doubles as the
// reference of every key.
//
//go:embed default.toml
var defaultTOML string

// DefaultText returns the embedded default configuration file.
func DefaultText() string { return defaultTOML }

// Mode is a per-destination encryption policy.
type Mode string

// Policy modes.
const (
	ModeOff           Mode = "off"
	ModeOpportunistic Mode = "opportunistic"
	ModeRequired      Mode = "required"
)

// Config is a complete, validated configuration.
type Config struct {
	Device   Device
	Outbound Outbound
	Services []Service
	Crypto   Crypto
	Control  Control
	Metrics  Metrics
	Log      Log
	Runtime  Runtime
	TCP      TCP
	Limits   Limits
}

// Device describes the TUN device and its addresses.
type Device struct {
	Name         string
	MTU          int
	KernelIPv4   netip.Prefix // kernel side of the device, with prefix length
	StackIPv4    netip.Addr   // the stack's egress source address
	KernelIPv6   netip.Prefix
	StackIPv6    netip.Addr
	RouteTable   int
	RulePriority int
}

// Outbound describes which destinations are captured and upgraded.
type Outbound struct {
	Include  []netip.Prefix
	Exclude  []netip.Prefix
	NAT      bool
	Policy   Mode // default for destinations no rule matches
	Policies []PolicyRule
}

// PolicyRule sets the mode for a prefix and, optionally, a set of ports.
type PolicyRule struct {
	Prefix netip.Prefix
	Ports  []uint16 // empty: every port
	Mode   Mode
}

// Service is an inbound tcpcrypt termination point.
type Service struct {
	Name          string
	Listen        netip.AddrPort
	Backend       string // host:port of the plaintext backend
	ProxyProtocol bool
	Policy        Mode
	HostPort      uint16 // 0: no DNAT from a host port
}

// Crypto holds protocol preferences. Lists are most preferred first.
type Crypto struct {
	TEPs                 []string // "x25519", "x448", "p256", "p521", "x25519mlkem768" (default: x25519, x448, p256)
	AEADs                []string // "aes128gcm", "aes256gcm", "chacha20poly1305"
	Resumption           bool
	ResumptionCacheSize  int
	ResumptionLifetime   time.Duration
	EphemeralKeyLifetime time.Duration
	RekeyAfterBytes      uint64 // 0: the protocol package's default
}

// Control describes the control socket.
type Control struct {
	Socket string
	Mode   os.FileMode
	Group  string
}

// Metrics describes the optional Prometheus TCP listener.
type Metrics struct {
	Listen string // empty: control socket only
}

// Log describes logging.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // text, json
	KeyLog string // path of the opt-in key log; empty: off
}

// Runtime tunes the daemon's process.
type Runtime struct {
	// CPUs is how many CPUs run the daemon's Go code at once (GOMAXPROCS);
	// 0: all of them, Go's default.
	CPUs int
}

// TCP tunes the userspace stack's TCP.
type TCP struct {
	// SACKMinRTT: connections to and from peers measured nearer than this
	// run without SACK, so without gVisor's tail loss probes, which misfire
	// on such paths. 0: SACK with every peer.
	SACKMinRTT time.Duration
	// MinRTO is the floor of the retransmission timeout of the stack's
	// connections (gVisor's own is 200 ms).
	MinRTO time.Duration
	// Keepalive probes the remote peer of every relayed connection once
	// its leg has been idle for KeepaliveIdle, every KeepaliveInterval;
	// after KeepaliveCount unanswered probes both legs are reset.
	Keepalive         bool
	KeepaliveIdle     time.Duration
	KeepaliveInterval time.Duration
	KeepaliveCount    int
}

// Limits bound what hostile peers can make the daemon hold or compute.
type Limits struct {
	// ENOFlows bounds the connections with ENO state in the stack,
	// half-open ones included; ENOFlowsOutboundReserve of them only
	// outbound connections (the forwarder's) may use, so a SYN flood
	// cannot stop the daemon from dialling.
	ENOFlows                int
	ENOFlowsOutboundReserve int
	// HalfOpenPerSource bounds the inbound connections not yet accepted
	// per source (an IPv4 address, an IPv6 /64); a new SYN beyond it
	// evicts the source's oldest.
	HalfOpenPerSource int
	// HalfOpenTimeout: an inbound connection whose handshake has not
	// completed after this long loses its ENO state and is reset.
	HalfOpenTimeout time.Duration

	// ResumptionLookAhead is how many resumption secrets past the next
	// unused one of a chain a passive opener recognises, so that
	// concurrent connections whose SYNs arrive out of order still resume
	// (0: only the next one).
	ResumptionLookAhead int
	// ResumptionPrefixShare is how many resumption chains one IPv4
	// address or one IPv6 /64 may hold in the cache.
	ResumptionPrefixShare int

	// Passive handshakes (services): slots of a service one source (IPv4
	// address, IPv6 /64) holds at once; how long host B waits for Init1
	// after TCP's handshake; key-exchange CPU per source, in X25519
	// handshakes per second (dearer TEPs count several).
	HandshakesPerSource      int
	Init1Timeout             time.Duration
	HandshakeBudgetPerSource int

	// Relayed connections at once: of the forwarder, of all services
	// together, and of one source address (IPv6: one /64) in each
	// direction. Over a limit a connection is reset.
	RelaysOutbound  int
	RelaysInbound   int
	RelaysPerSource int
}

// maxResumptionLookAhead bounds limits.resumption_lookahead (the work one
// resumption SYN can cost); tcpcrypt.MaxLookAhead.
const maxResumptionLookAhead = 1024

// Bounds of the [limits] keys for passive handshakes.
const (
	maxHandshakesPerSource = 65536
	minInit1Timeout        = 100 * time.Millisecond
	maxInit1Timeout        = time.Minute
	maxHandshakeBudget     = 1_000_000
)

// Bounds of the [limits] flow keys.
const (
	minENOFlows        = 64
	maxENOFlows        = 1 << 22
	minHalfOpenTimeout = 3 * time.Second
	maxHalfOpenTimeout = 2 * time.Minute
)

// maxSACKMinRTT bounds tcp.sack_min_rtt: beyond it SACK's loss recovery is
// worth far more than the probes cost.
const maxSACKMinRTT = 100 * time.Millisecond

// Bounds of tcp.min_rto. Below 10 ms a receiver's delayed ACK alone would
// set off spurious timeouts; above 1 s nobody would want it.
const (
	minMinRTO = 10 * time.Millisecond
	maxMinRTO = time.Second
)

// maxCPUs bounds runtime.cpus (Go's own limit is far above any machine).
const maxCPUs = 1024

// KnownTEPs and KnownAEADs are the names the crypto section accepts.
var (
	KnownTEPs  = []string{"x25519", "x448", "p256", "p521", "x25519mlkem768"} // the last: experimental, off unless listed
	KnownAEADs = []string{"aes128gcm", "aes256gcm", "chacha20poly1305"}
)

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse("default", []byte(defaultTOML))
	if err != nil {
		// The embedded file is tested; failing here is a build defect.
		panic("config: embedded default is invalid: " + err.Error())
	}
	return c
}

// Load reads and validates the file at path. Keys it omits keep their
// default values.
func Load(path string) (*Config, error) { return LoadWith(path) }

// LoadWith is Load with command-line overrides applied before validation.
func LoadWith(path string, ovs ...Override) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseWith(path, b, ovs...)
}

// DefaultWith validates the embedded default with command-line overrides;
// unlike Default, the overrides can make it invalid.
func DefaultWith(ovs ...Override) (*Config, error) {
	return ParseWith("embedded default", []byte(defaultTOML), ovs...)
}

// Parse validates the TOML text b; name is used in messages. Keys missing
// from b keep their default values.
func Parse(name string, b []byte) (*Config, error) { return ParseWith(name, b) }

// ParseWith is Parse with command-line overrides: they replace the file's
// values before the one validation, which names the flag of a bad value.
func ParseWith(name string, b []byte, ovs ...Override) (*Config, error) {
	var f file
	// Defaults first, then the user's file on top of them.
	if _, err := toml.Decode(defaultTOML, &f); err != nil {
		return nil, fmt.Errorf("config: embedded default: %w", err)
	}
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: name, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, &Error{File: name, Key: keys[0],
			Msg: fmt.Sprintf("unknown key (unknown keys: %s); see the reference in `tcpcryptd check-config --print-default`", strings.Join(keys, ", "))}
	}
	flags, err := f.apply(name, ovs)
	if err != nil {
		return nil, err
	}
	return f.validate(name, flags)
}

// Error is a configuration error naming the file, the key and what to do.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key, e.g. "outbound.include[2]"
	Flag string // the command-line flag (no dashes) that set Key; "" if the file did
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Flag != "" {
		// The value came from the command line: the file is beside the point.
		fmt.Fprintf(&b, "--%s (overrides %s): %s", e.Flag, e.Key, e.Msg)
		return b.String()
	}
	b.WriteString("config ")
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}
