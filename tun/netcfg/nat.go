package netcfg

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NATKind says what a NATRule does.
type NATKind int

const (
	// NATMasquerade rewrites the source of the stack's egress packets to the address of
	// the interface they leave by; conntrack maps replies back (notes §2).
	NATMasquerade NATKind = iota + 1
	// NATDNAT rewrites TCP connections to a host port on one of the host's own
	// addresses so they go to a service address in the stack.
	NATDNAT
	// NATDNATLocal is NATDNAT for the host's own connections (the output
	// hook: they never pass prerouting), except those to loopback
	// addresses: Linux drops packets from 127/8 or ::1 that leave the
	// loopback device.
	NATDNATLocal
	// NATCapture marks the host's own new TCP connections to destinations
	// Lo..Hi (both included): the first packet of a connection in its
	// original direction, unless it carries the daemon's own socket mark
	// Own or goes to one of the host's own addresses, gets Mark in
	// conntrack and on the packet, which a policy rule on Mark sends into
	// the device (docs/capture.md).
	NATCapture
	// NATCaptureRestore copies Mark from conntrack onto every later packet
	// the host sends on a captured connection.
	NATCaptureRestore
	// NATCaptureRestoreIn copies Mark from conntrack onto packets that
	// arrive from Dev: the stack's replies on a captured connection. With
	// src_valid_mark on Dev, reverse-path filtering then looks the sender
	// up by the mark, finds the route into Dev, and strict rp_filter
	// passes them.
	NATCaptureRestoreIn
	// NATForwardDrop drops forwarded packets of one IP family that neither
	// come from Dev nor leave through it: the host forwards only the
	// device's flows while forwarding is on by our doing.
	NATForwardDrop
)

// NATRule is one rule of our nftables table, in a form that can be compared and
// printed. Its String is stored in the nftables rule's user data, so the rules of a
// table can be read back without decoding expressions.
type NATRule struct {
	Kind NATKind
	// Masquerade: packets from Src that do not leave through Dev.
	Src netip.Addr
	// DNAT: TCP to port Port of a local address, not arriving through Dev, goes to To.
	// DNATLocal: the same from the host itself (no Dev), not to a loopback address.
	Port uint16
	To   netip.AddrPort
	Dev  string
	// Capture: destinations Lo..Hi (same family), Mark to set, Own to skip.
	// CaptureRestore: Mark.
	Lo, Hi    netip.Addr
	Mark, Own uint32
	// ForwardDrop: the family (with Dev).
	IPv6 bool
}

// String is the canonical text of r (see ParseNATRule).
func (r NATRule) String() string {
	switch r.Kind {
	case NATMasquerade:
		return fmt.Sprintf("masquerade from %v oif != %s", r.Src, r.Dev)
	case NATDNAT:
		return fmt.Sprintf("dnat tcp dport %d to %v iif != %s", r.Port, r.To, r.Dev)
	case NATDNATLocal:
		return fmt.Sprintf("dnat-local tcp dport %d to %v", r.Port, r.To)
	case NATCapture:
		return fmt.Sprintf("capture tcp daddr %v-%v mark %#x unless %#x", r.Lo, r.Hi, r.Mark, r.Own)
	case NATCaptureRestore:
		return fmt.Sprintf("capture-restore mark %#x", r.Mark)
	case NATCaptureRestoreIn:
		return fmt.Sprintf("capture-restore-in mark %#x iif %s", r.Mark, r.Dev)
	case NATForwardDrop:
		return fmt.Sprintf("forward-drop %s iif != %s oif != %s", famName(r.IPv6), r.Dev, r.Dev)
	}
	return fmt.Sprintf("invalid nat rule kind %d", int(r.Kind))
}

func famName(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// V6 reports the rule's IP family (false for CaptureRestore, which has none).
func (r NATRule) V6() bool {
	switch r.Kind {
	case NATDNAT, NATDNATLocal:
		return r.To.Addr().Is6()
	case NATCapture:
		return r.Lo.Is6()
	case NATCaptureRestore, NATCaptureRestoreIn:
		return false
	case NATForwardDrop:
		return r.IPv6
	}
	return r.Src.Is6()
}

// MarshalText implements encoding.TextMarshaler (journal files).
func (r NATRule) MarshalText() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *NATRule) UnmarshalText(b []byte) error {
	v, err := ParseNATRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// NATRuleError reports text that is not a NATRule.
type NATRuleError struct {
	Text   string
	Reason string
}

func (e *NATRuleError) Error() string {
	return fmt.Sprintf("netcfg: nat rule %q: %s", e.Text, e.Reason)
}

// ParseNATRule parses the text String produces, and nothing else: exactly
//
//	masquerade from ADDR oif != DEV
//	dnat tcp dport PORT to ADDR:PORT iif != DEV
//	dnat-local tcp dport PORT to ADDR:PORT
//	capture tcp daddr LO-HI mark MARK unless OWN
//	capture-restore mark MARK
//	capture-restore-in mark MARK iif DEV
//	forward-drop ipv4|ipv6 iif != DEV oif != DEV
func ParseNATRule(s string) (NATRule, error) {
	bad := func(format string, args ...any) (NATRule, error) {
		return NATRule{}, &NATRuleError{Text: s, Reason: fmt.Sprintf(format, args...)}
	}
	f := strings.Split(s, " ")
	var r NATRule
	switch {
	case len(f) == 6 && f[0] == "masquerade" && f[1] == "from" && f[3] == "oif" && f[4] == "!=":
		src, err := netip.ParseAddr(f[2])
		if err != nil {
			return bad("source: %v", err)
		}
		r = NATRule{Kind: NATMasquerade, Src: src, Dev: f[5]}
	case len(f) == 9 && f[0] == "dnat" && f[1] == "tcp" && f[2] == "dport" && f[4] == "to" && f[6] == "iif" && f[7] == "!=",
		len(f) == 6 && f[0] == "dnat-local" && f[1] == "tcp" && f[2] == "dport" && f[4] == "to":
		port, err := strconv.ParseUint(f[3], 10, 16)
		if err != nil || f[3] != strconv.FormatUint(port, 10) {
			return bad("port %q", f[3])
		}
		to, err := netip.ParseAddrPort(f[5])
		if err != nil {
			return bad("target: %v", err)
		}
		r = NATRule{Kind: NATDNATLocal, Port: uint16(port), To: to}
		if f[0] == "dnat" {
			r.Kind, r.Dev = NATDNAT, f[8]
		}
	case len(f) == 8 && f[0] == "capture" && f[1] == "tcp" && f[2] == "daddr" && f[4] == "mark" && f[6] == "unless":
		lo, hi, ok := strings.Cut(f[3], "-")
		if !ok {
			return bad("range %q", f[3])
		}
		var err error
		r.Kind = NATCapture
		if r.Lo, err = netip.ParseAddr(lo); err != nil {
			return bad("range start: %v", err)
		}
		if r.Hi, err = netip.ParseAddr(hi); err != nil {
			return bad("range end: %v", err)
		}
		if r.Mark, err = parseMark(f[5]); err != nil {
			return bad("mark: %v", err)
		}
		if r.Own, err = parseMark(f[7]); err != nil {
			return bad("own mark: %v", err)
		}
	case len(f) == 3 && f[0] == "capture-restore" && f[1] == "mark":
		m, err := parseMark(f[2])
		if err != nil {
			return bad("mark: %v", err)
		}
		r = NATRule{Kind: NATCaptureRestore, Mark: m}
	case len(f) == 5 && f[0] == "capture-restore-in" && f[1] == "mark" && f[3] == "iif":
		m, err := parseMark(f[2])
		if err != nil {
			return bad("mark: %v", err)
		}
		r = NATRule{Kind: NATCaptureRestoreIn, Mark: m, Dev: f[4]}
	case len(f) == 8 && f[0] == "forward-drop" && (f[1] == "ipv4" || f[1] == "ipv6") &&
		f[2] == "iif" && f[3] == "!=" && f[5] == "oif" && f[6] == "!=":
		r = NATRule{Kind: NATForwardDrop, IPv6: f[1] == "ipv6", Dev: f[4]}
	default:
		return bad("unknown form")
	}
	if err := r.validate(); err != nil {
		return bad("%v", err)
	}
	if r.String() != s {
		return bad("not in canonical form")
	}
	return r, nil
}

func parseMark(s string) (uint32, error) {
	if !strings.HasPrefix(s, "0x") {
		return 0, fmt.Errorf("%q is not hexadecimal", s)
	}
	m, err := strconv.ParseUint(s[2:], 16, 32)
	return uint32(m), err
}

// validate checks what the nftables encoding relies on.
func (r NATRule) validate() error {
	switch r.Kind {
	case NATCapture:
		switch {
		case !r.Lo.IsValid() || !r.Hi.IsValid() || r.Lo.Zone() != "" || r.Hi.Zone() != "" || r.Lo.Is4In6() || r.Hi.Is4In6():
			return fmt.Errorf("range %v-%v: need plain IPv4 or IPv6", r.Lo, r.Hi)
		case r.Lo.Is6() != r.Hi.Is6() || r.Hi.Less(r.Lo):
			return fmt.Errorf("range %v-%v is empty or mixes families", r.Lo, r.Hi)
		case r.Mark == 0 || r.Own == 0 || r.Mark == r.Own:
			return fmt.Errorf("marks %#x and %#x must be distinct and non-zero", r.Mark, r.Own)
		}
		return nil
	case NATCaptureRestore:
		if r.Mark == 0 {
			return fmt.Errorf("mark 0")
		}
		return nil
	case NATCaptureRestoreIn:
		if r.Mark == 0 {
			return fmt.Errorf("mark 0")
		}
		if r.Dev == "" || len(r.Dev) > 15 || strings.ContainsAny(r.Dev, " /\x00") {
			return fmt.Errorf("bad device name %q", r.Dev)
		}
		return nil
	case NATForwardDrop:
		if r.Dev == "" || len(r.Dev) > 15 || strings.ContainsAny(r.Dev, " /\x00") {
			return fmt.Errorf("bad device name %q", r.Dev)
		}
		return nil
	}
	if r.Kind == NATDNATLocal {
		if r.Dev != "" {
			return fmt.Errorf("device %q on a local rule", r.Dev)
		}
	} else if r.Dev == "" || len(r.Dev) > 15 || strings.ContainsAny(r.Dev, " /\x00") {
		return fmt.Errorf("bad device name %q", r.Dev)
	}
	var a netip.Addr
	switch r.Kind {
	case NATMasquerade:
		a = r.Src
	case NATDNAT, NATDNATLocal:
		if r.Port == 0 || r.To.Port() == 0 {
			return fmt.Errorf("port 0")
		}
		a = r.To.Addr()
	default:
		return fmt.Errorf("unknown kind %d", int(r.Kind))
	}
	if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
		return fmt.Errorf("address %v: need plain IPv4 or IPv6", a)
	}
	return nil
}
