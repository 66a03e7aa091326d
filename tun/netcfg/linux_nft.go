package netcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Our nftables table holds two NAT chains:
//
//	table inet tcpcryptd {
//	  chain prerouting  { type nat hook prerouting priority dstnat; ... DNAT rules }
//	  chain postrouting { type nat hook postrouting priority srcnat; ... masquerade rules }
//	}
//
// Each rule's user data is its NATRule text, which is how NATRules reads them back.
const (
	chainPre  = "prerouting"
	chainPost = "postrouting"
)

func nftTable() *nftables.Table {
	return &nftables.Table{Name: NFTTableName, Family: nftables.TableFamilyINet}
}

func nftChains(t *nftables.Table) (pre, post *nftables.Chain) {
	pre = &nftables.Chain{Name: chainPre, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}
	post = &nftables.Chain{Name: chainPost, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	return pre, post
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
	pre, post := nftChains(t)
	var out []nftRule
	for _, ch := range []*nftables.Chain{pre, post} {
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
	pre, post := nftChains(t)
	c.AddChain(pre)
	c.AddChain(post)
	for _, r := range rules {
		exprs, err := natExprs(r)
		if err != nil {
			return err
		}
		ch := post
		if r.Kind == NATDNAT {
			ch = pre
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: []byte(r.String())})
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
func natExprs(r NATRule) ([]expr.Any, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("nat rule %v: %w", r, err)
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
	case NATDNAT:
		var local [4]byte
		binary.NativeEndian.PutUint32(local[:], unix.RTN_LOCAL)
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Dev)},
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

// ifname is an interface name as nftables compares it: IFNAMSIZ bytes, NUL-padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}
