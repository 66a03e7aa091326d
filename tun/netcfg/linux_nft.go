package netcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Our nftables table holds three NAT chains, the capture chain and a forward
// filter:
//
//	table inet tcpcryptd {
//	  chain prerouting  { type nat hook prerouting priority dstnat; ... DNAT rules }
//	  chain output      { type nat hook output priority dstnat; ... local DNAT rules }
//	  chain postrouting { type nat hook postrouting priority srcnat; ... masquerade rules }
//	  chain capture     { type route hook output priority dstnat + 10; ... capture rules }
//	  chain forward     { type filter hook forward priority filter; policy accept; ... forward-drop }
//	  chain capture-in  { type filter hook prerouting priority mangle; ... capture-restore-in }
//	}
//
// The capture chain runs after the output DNAT, so it sees the address a
// local connection to a host port was rewritten to (a service address), and
// is of type route: the kernel routes a packet again when the chain changed
// its mark. Every rule stands on its own (no rule relies on another running
// before it), so rules added later by a reconcile can go at the end.
//
// Each rule's user data is its NATRule text, which is how NATRules reads them back.
const (
	chainPre     = "prerouting"
	chainOut     = "output"
	chainPost    = "postrouting"
	chainCapture = "capture"
	chainForward = "forward"
	chainCapIn   = "capture-in"
)

func nftTable() *nftables.Table {
	return &nftables.Table{Name: NFTTableName, Family: nftables.TableFamilyINet}
}

// nftChains returns our chains: prerouting, output, postrouting, capture,
// forward, capture-in.
func nftChains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{
		{Name: chainPre, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
		{Name: chainOut, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest},
		{Name: chainPost, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource},
		{Name: chainCapture, Table: t, Type: nftables.ChainTypeRoute,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest + 10)},
		{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
		{Name: chainCapIn, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept},
	}
}

// chainFor is the chain (of nftChains) a rule of kind k goes in.
func chainFor(chains []*nftables.Chain, k NATKind) *nftables.Chain {
	switch k {
	case NATDNAT:
		return chains[0]
	case NATDNATLocal:
		return chains[1]
	case NATCapture, NATCaptureRestore:
		return chains[3]
	case NATForwardDrop:
		return chains[4]
	case NATCaptureRestoreIn:
		return chains[5]
	}
	return chains[2]
}

func (h *LinuxHost) nft() (*nftables.Conn, error) {
	c, err := nftables.New(h.nftOpts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

func (h *LinuxHost) tableExists(c *nftables.Conn) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list nft tables: %w", err)
	}
	return slices.ContainsFunc(ts, func(t *nftables.Table) bool { return t.Name == NFTTableName }), nil
}

// ourRules lists the rules of our chains with the NATRule each stands for; rules
// whose user data is not a NATRule (someone else's edits) come back with ok=false.
type nftRule struct {
	rule *nftables.Rule
	nat  NATRule
	ok   bool
}

func (h *LinuxHost) ourRules(c *nftables.Conn) ([]nftRule, error) {
	t := nftTable()
	var out []nftRule
	for _, ch := range nftChains(t) {
		rs, err := c.GetRules(t, ch)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // chain missing
			}
			return nil, fmt.Errorf("list nft rules of %s: %w", ch.Name, err)
		}
		for _, r := range rs {
			nr, err := ParseNATRule(string(r.UserData))
			out = append(out, nftRule{rule: r, nat: nr, ok: err == nil})
		}
	}
	return out, nil
}

// NATRules implements NATHost.
func (h *LinuxHost) NATRules() ([]NATRule, bool, error) {
	c, err := h.nft()
	if err != nil {
		return nil, false, err
	}
	exists, err := h.tableExists(c)
	if err != nil || !exists {
		return nil, false, err
	}
	rs, err := h.ourRules(c)
	if err != nil {
		return nil, true, err
	}
	var out []NATRule
	for _, r := range rs {
		if r.ok {
			out = append(out, r.nat)
		}
	}
	return out, true, nil
}

// AddNATRules implements NATHost: table, chains and rules in one transaction
// (adding an existing table or chain is a no-op in nftables).
func (h *LinuxHost) AddNATRules(rules []NATRule) error {
	c, err := h.nft()
	if err != nil {
		return err
	}
	t := c.AddTable(nftTable())
	chains := nftChains(t)
	for _, ch := range chains {
		c.AddChain(ch)
	}
	for _, r := range rules {
		exprs, err := natExprs(r)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chainFor(chains, r.Kind), Exprs: exprs, UserData: []byte(r.String())})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft transaction: %w", err)
	}
	return nil
}

// DelNATRules implements NATHost.
func (h *LinuxHost) DelNATRules(rules []NATRule) error {
	c, err := h.nft()
	if err != nil {
		return err
	}
	if exists, err := h.tableExists(c); err != nil {
		return err
	} else if !exists {
		return fmt.Errorf("nft table %s: %w", NFTTableName, ErrNotExist)
	}
	present, err := h.ourRules(c)
	if err != nil {
		return err
	}
	n := 0
	for _, p := range present {
		if p.ok && slices.Contains(rules, p.nat) {
			if err := c.DelRule(p.rule); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("nft rules: %w", ErrNotExist)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft transaction: %w", err)
	}
	return nil
}

// DelNATTable implements NATHost.
func (h *LinuxHost) DelNATTable() error {
	c, err := h.nft()
	if err != nil {
		return err
	}
	if exists, err := h.tableExists(c); err != nil {
		return err
	} else if !exists {
		return fmt.Errorf("nft table %s: %w", NFTTableName, ErrNotExist)
	}
	c.DelTable(nftTable())
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft transaction: %w", err)
	}
	return nil
}

// natExprs encodes r as nftables expressions, the equivalent of
//
//	masquerade: meta nfproto ipv4 ip saddr SRC oifname != DEV masquerade
//	dnat:       meta nfproto ipv4 iifname != DEV meta l4proto tcp th dport PORT
//	            fib daddr type local dnat ip to ADDR:PORT
//	dnat-local: meta nfproto ipv4 ip daddr & 255.0.0.0 != 127.0.0.0
//	            meta l4proto tcp th dport PORT fib daddr type local
//	            dnat ip to ADDR:PORT
//	            (IPv6: ip6 daddr != ::1)
//	capture:    meta nfproto ipv4 meta l4proto tcp ct state new
//	            ct direction original meta mark != OWN ip daddr LO-HI
//	            fib daddr type != local ct mark set MARK meta mark set MARK
//	capture-restore: ct mark MARK meta mark set MARK
//	capture-restore-in: iifname DEV ct mark MARK meta mark set MARK
//	forward-drop: meta nfproto ipv4 iifname != DEV oifname != DEV drop
func natExprs(r NATRule) ([]expr.Any, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("nat rule %v: %w", r, err)
	}
	if r.Kind == NATCaptureRestore || r.Kind == NATCaptureRestoreIn {
		mark := binary.NativeEndian.AppendUint32(nil, r.Mark)
		var e []expr.Any
		if r.Kind == NATCaptureRestoreIn {
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.Dev)},
			)
		}
		return append(e,
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		), nil
	}
	fam := byte(unix.NFPROTO_IPV4)
	if r.V6() {
		fam = unix.NFPROTO_IPV6
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
	switch r.Kind {
	case NATCapture:
		e = append(e, captureExprs(r)...)
	case NATForwardDrop:
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Dev)},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Dev)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		)
	case NATMasquerade:
		off, n := uint32(12), uint32(4) // IPv4 source address (RFC 791 §3.1)
		if r.V6() {
			off, n = 8, 16 // IPv6 source address (RFC 8200 §3)
		}
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.Src.AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Dev)},
			&expr.Masq{},
		)
	case NATDNAT, NATDNATLocal:
		var local [4]byte
		binary.NativeEndian.PutUint32(local[:], unix.RTN_LOCAL)
		if r.Kind == NATDNAT {
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Dev)},
			)
		} else {
			e = append(e, notLoopbackDst(r.V6())...)
		}
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, r.Port)},
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: local[:]},
			&expr.Immediate{Register: 1, Data: r.To.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, r.To.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(fam), RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		)
	}
	return e, nil
}

// captureExprs is a capture rule after its family match. The cheap tests
// come first: every packet but a connection's first stops at "ct state new".
func captureExprs(r NATRule) []expr.Any {
	off, n := uint32(16), uint32(4) // IPv4 destination address (RFC 791 §3.1)
	if r.V6() {
		off, n = 24, 16 // IPv6 destination address (RFC 8200 §3)
	}
	var local [4]byte
	binary.NativeEndian.PutUint32(local[:], unix.RTN_LOCAL)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}}, // IP_CT_DIR_ORIGINAL
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, r.Own)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: r.Lo.AsSlice(), ToData: r.Hi.AsSlice()},
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: local[:]},
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, r.Mark)},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}
}

// notLoopbackDst matches packets whose destination is not a loopback
// address (127.0.0.0/8, ::1).
func notLoopbackDst(v6 bool) []expr.Any {
	if v6 {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}, // RFC 8200 §3
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: netip.IPv6Loopback().AsSlice()},
		}
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // RFC 791 §3.1
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
	}
}

// ifname is an interface name as nftables compares it: IFNAMSIZ bytes, NUL-padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
