package netcfg

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Options configures a Config.
type Options struct {
	// Logger receives one line per host change; nil discards.
	Logger *slog.Logger
	// JournalPath, if set, is a file that mirrors the journal after every change, so
	// a later process can undo this one's changes (New loads it). Empty keeps the
	// journal in memory only.
	JournalPath string
}

// Config applies Specs to a host and undoes them. Its methods are safe for
// concurrent use; they are serialised.
type Config struct {
	host Host
	log  *slog.Logger
	path string

	// mu serialises Up, Down and Journal and guards journal.
	mu sync.Mutex
	// journal lists the host changes in effect, oldest first; Down undoes them from
	// the end. An entry is recorded before its change is made (a crash in between
	// leaves an entry whose undo finds nothing: harmless) and dropped after the
	// change is undone or, for a failed add, right away.
	journal []Change
}

// New returns a Config for host. If opts.JournalPath holds a journal (left by a
// process that did not finish Down), it is loaded: Down undoes those changes too.
func New(host Host, opts Options) (*Config, error) {
	c := &Config{host: host, log: opts.Logger, path: opts.JournalPath}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.path != "" {
		j, err := loadJournal(c.path)
		if err != nil {
			return nil, err
		}
		c.journal = j
		if len(j) > 0 {
			c.log.Info("netcfg: loaded journal of an earlier run", "path", c.path, "changes", len(j))
		}
	}
	return c, nil
}

// Journal returns a copy of the changes in effect, oldest first.
func (c *Config) Journal() []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.journal)
}

// Up makes the host match spec: it adds what is missing, then removes what is ours
// and not wanted (what an earlier Up wanted, or leftovers with our marks). Calling it
// again with the same spec changes nothing. On error the host is partly configured
// and the journal says exactly how: Down undoes it.
func (c *Config) Up(spec Spec) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := spec.normalized()
	if err != nil {
		return err
	}
	link, err := c.host.Link(s.Device)
	if err != nil {
		return fmt.Errorf("netcfg: device %s: %w", s.Device, err)
	}
	facts, err := c.facts(s)
	if err != nil {
		return err
	}
	want := Desired(s, facts)

	// Every add comes before any delete, so a changed object (a new stack address,
	// say) is never missing in between. Adds run in dependency order — rules after
	// the routes they select, forwarding only once routes, rules and NAT are in
	// place — and deletes in the reverse order.
	steps := []func(State, Spec) error{
		c.upLink(link), c.addAddrs, c.addRoutes, c.addRules, c.addNAT, c.addSysctls,
		c.delSysctls, c.delNAT, c.delRules, c.delRoutes, c.delAddrs, c.delStale,
	}
	for _, step := range steps {
		if err := step(want, s); err != nil {
			return err
		}
	}
	return nil
}

// Down undoes every change in the journal, newest first. Undo of an object that is
// already gone counts as done. It goes on after errors and returns them all; what
// failed stays in the journal for another try.
func (c *Config) Down() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for i := len(c.journal) - 1; i >= 0; i-- {
		ch := c.journal[i]
		err := c.undo(ch)
		if err != nil && !errors.Is(err, ErrNotExist) {
			errs = append(errs, fmt.Errorf("netcfg: undo %v: %w", ch, err))
			continue
		}
		c.log.Info("netcfg: undone", "change", ch.String())
		c.journal = slices.Delete(c.journal, i, i+1)
	}
	if err := c.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) undo(ch Change) error {
	switch ch.Kind {
	case ChangeLink:
		return c.host.SetLink(*ch.Link)
	case ChangeAddr:
		return c.host.DelAddr(*ch.Addr)
	case ChangeRoute:
		return c.host.DelRoute(*ch.Route)
	case ChangeRule:
		return c.host.DelRule(*ch.Rule)
	case ChangeSysctl:
		return c.host.SetSysctl(ch.Sysctl.Key, ch.Sysctl.Value)
	case ChangeNATRule:
		return c.host.DelNATRules([]NATRule{*ch.NAT})
	case ChangeNATTable:
		return c.host.DelNATTable()
	}
	return fmt.Errorf("unknown change kind %q", ch.Kind)
}

// facts gathers what Desired needs from the host and the journal.
func (c *Config) facts(s Spec) (Facts, error) {
	f := Facts{AcceptRA: map[string]string{}, ChangedAcceptRA: map[string]bool{}}
	var err error
	if s.KernelV4.IsValid() {
		if f.Forward4Before, err = c.before(sysctlForward4); err != nil {
			return f, err
		}
	}
	if !s.KernelV6.IsValid() {
		return f, nil
	}
	names, err := c.host.Interfaces()
	if err != nil {
		return f, fmt.Errorf("netcfg: list interfaces: %w", err)
	}
	for _, n := range names {
		v, err := c.host.Sysctl(acceptRAKey(n))
		if errors.Is(err, ErrNotExist) {
			continue // IPv6 is off on that interface
		}
		if err != nil {
			return f, fmt.Errorf("netcfg: read %s: %w", acceptRAKey(n), err)
		}
		f.AcceptRA[n] = strings.TrimSpace(v)
		if _, ok := c.find(Change{Kind: ChangeSysctl, Sysctl: &Sysctl{Key: acceptRAKey(n)}}); ok {
			f.ChangedAcceptRA[n] = true
		}
	}
	f.Forward6Before, err = c.before(sysctlForward6)
	return f, err
}

// before is a sysctl's value before we changed it: the journal's record if
// we did, else its current value ("" if the host has no such key).
func (c *Config) before(key string) (string, error) {
	if i, ok := c.find(Change{Kind: ChangeSysctl, Sysctl: &Sysctl{Key: key}}); ok {
		return strings.TrimSpace(c.journal[i].Sysctl.Value), nil
	}
	v, err := c.host.Sysctl(key)
	if err != nil && !errors.Is(err, ErrNotExist) {
		return "", fmt.Errorf("netcfg: read %s: %w", key, err)
	}
	return strings.TrimSpace(v), nil
}

// Journal bookkeeping.

func (c *Config) find(ch Change) (int, bool) {
	k := ch.key()
	i := slices.IndexFunc(c.journal, func(x Change) bool { return x.key() == k })
	return i, i >= 0
}

// record appends ch unless an entry for the same object exists, and saves.
func (c *Config) record(ch Change) error {
	if _, ok := c.find(ch); ok {
		return nil
	}
	c.journal = append(c.journal, ch)
	return c.save()
}

// forget drops the entry for ch's object, if any, and saves.
func (c *Config) forget(ch Change) error {
	i, ok := c.find(ch)
	if !ok {
		return nil
	}
	c.journal = slices.Delete(c.journal, i, i+1)
	return c.save()
}

func (c *Config) save() error {
	if c.path == "" {
		return nil
	}
	return saveJournal(c.path, c.journal)
}

// add records ch, then runs do; if do fails the entry is dropped again.
func (c *Config) add(ch Change, do func() error) error {
	if err := c.record(ch); err != nil {
		return err
	}
	if err := do(); err != nil {
		_ = c.forget(ch)
		return fmt.Errorf("netcfg: %v: %w", ch, err)
	}
	c.log.Info("netcfg: " + ch.String())
	return nil
}

// remove runs do, then drops ch's entry.
func (c *Config) remove(what fmt.Stringer, ch Change, do func() error) error {
	if err := do(); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("netcfg: remove %v: %w", what, err)
	}
	c.log.Info("netcfg: removed " + what.String())
	return c.forget(ch)
}

// Steps of Up. add* adds what is missing and adopts what is there with our marks
// (records it, so Down removes it); del* removes what is ours and not wanted.

func (c *Config) upLink(cur Link) func(State, Spec) error {
	return func(want State, _ Spec) error {
		l := want.Link
		i, changed := c.find(Change{Kind: ChangeLink, Link: &Link{Name: l.Name}})
		if l.MTU == 0 && changed {
			// MTU 0 leaves the device's MTU alone; if an earlier spec changed it, that
			// change is undone, so the state does not depend on history.
			l.MTU = c.journal[i].Link.MTU
		}
		if cur.Up == l.Up && (l.MTU == 0 || cur.MTU == l.MTU) {
			return nil
		}
		old := cur
		return c.add(Change{Kind: ChangeLink, Link: &old}, func() error { return c.host.SetLink(l) })
	}
}

func (c *Config) presentAddrs(s Spec) ([]netip.Prefix, error) {
	present, err := c.host.Addrs(s.Device)
	if err != nil {
		return nil, fmt.Errorf("netcfg: list addresses of %s: %w", s.Device, err)
	}
	return slices.DeleteFunc(present, func(p netip.Prefix) bool { return p.Addr().IsLinkLocalUnicast() }), nil
}

func (c *Config) addAddrs(want State, s Spec) error {
	present, err := c.presentAddrs(s)
	if err != nil {
		return err
	}
	for _, a := range want.Addrs {
		ch := Change{Kind: ChangeAddr, Addr: &a}
		if slices.Contains(present, a.Prefix) {
			if err := c.record(ch); err != nil { // adopt: the device is ours
				return err
			}
			continue
		}
		if err := c.add(ch, func() error { return c.host.AddAddr(a) }); err != nil {
			return err
		}
	}
	return nil
}

// delAddrs removes addresses on our device that are not wanted (an earlier spec's).
func (c *Config) delAddrs(want State, s Spec) error {
	present, err := c.presentAddrs(s)
	if err != nil {
		return err
	}
	for _, p := range present {
		a := Addr{Dev: s.Device, Prefix: p}
		if !slices.Contains(want.Addrs, a) {
			if err := c.remove(a, Change{Kind: ChangeAddr, Addr: &a}, func() error { return c.host.DelAddr(a) }); err != nil {
				return err
			}
		}
	}
	return nil
}

func hasRoute(rs []Route, r Route) bool {
	return slices.ContainsFunc(rs, func(x Route) bool { return x.key() == r.key() })
}

func (c *Config) addRoutes(want State, s Spec) error {
	present, err := c.host.Routes(s.Table)
	if err != nil {
		return fmt.Errorf("netcfg: list routes of table %d: %w", s.Table, err)
	}
	for _, r := range want.Routes {
		ch := Change{Kind: ChangeRoute, Route: &r}
		if hasRoute(present, r) {
			if err := c.record(ch); err != nil {
				return err
			}
			continue
		}
		if err := c.add(ch, func() error { return c.host.AddRoute(r) }); err != nil {
			return err
		}
	}
	return nil
}

// delRoutes empties our table of what is not wanted: the table is ours, so that
// includes routes we did not add.
func (c *Config) delRoutes(want State, s Spec) error {
	present, err := c.host.Routes(s.Table)
	if err != nil {
		return fmt.Errorf("netcfg: list routes of table %d: %w", s.Table, err)
	}
	for _, r := range present {
		if !hasRoute(want.Routes, r) {
			if err := c.remove(r, Change{Kind: ChangeRoute, Route: &r}, func() error { return c.host.DelRoute(r) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// ourRule recognises a rule as ours: our protocol mark, or a lookup of our table at
// our priorities (a rule added by a kernel without FRA_PROTOCOL).
func ourRule(r Rule, table, prio int) bool {
	return r.Proto == RouteProtocol || (r.Table == table && r.Priority >= prio && r.Priority < prio+RulePrioritySpan)
}

func (c *Config) presentRules(s Spec) ([]Rule, error) {
	all, err := c.host.Rules()
	if err != nil {
		return nil, fmt.Errorf("netcfg: list rules: %w", err)
	}
	return slices.DeleteFunc(all, func(r Rule) bool { return !ourRule(r, s.Table, s.RulePriority) }), nil
}

func hasRule(rs []Rule, r Rule) bool {
	return slices.ContainsFunc(rs, func(x Rule) bool { return x.key() == r.key() })
}

func (c *Config) addRules(want State, s Spec) error {
	present, err := c.presentRules(s)
	if err != nil {
		return err
	}
	// Bypass rules (lower priority number) are added before the table lookup, so no
	// moment exists where the stack's egress could be sent into the device.
	for _, r := range want.Rules {
		ch := Change{Kind: ChangeRule, Rule: &r}
		if hasRule(present, r) {
			if err := c.record(ch); err != nil {
				return err
			}
			continue
		}
		if err := c.add(ch, func() error { return c.host.AddRule(r) }); err != nil {
			return err
		}
	}
	return nil
}

// delRules removes our unwanted rules, table lookups before bypasses (the reverse
// of adding).
func (c *Config) delRules(want State, s Spec) error {
	present, err := c.presentRules(s)
	if err != nil {
		return err
	}
	slices.SortStableFunc(present, func(a, b Rule) int { return b.Priority - a.Priority })
	for _, r := range present {
		if !hasRule(want.Rules, r) {
			if err := c.remove(r, Change{Kind: ChangeRule, Rule: &r}, func() error { return c.host.DelRule(r) }); err != nil {
				return err
			}
		}
	}
	return nil
}

type natTableName struct{}

func (natTableName) String() string { return "nft table inet " + NFTTableName }

func (c *Config) addNAT(want State, _ Spec) error {
	if len(want.NAT) == 0 {
		return nil
	}
	present, exists, err := c.host.NATRules()
	if err != nil {
		return fmt.Errorf("netcfg: list nft table %s: %w", NFTTableName, err)
	}
	// The table is recorded before its rules, so Down deletes the rules first and the
	// table last; an existing table of ours is adopted.
	tableCh := Change{Kind: ChangeNATTable}
	if err := c.record(tableCh); err != nil {
		return err
	}
	var missing []NATRule
	for _, r := range want.NAT {
		if err := c.record(Change{Kind: ChangeNATRule, NAT: &r}); err != nil {
			return err
		}
		if !slices.Contains(present, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := c.host.AddNATRules(missing); err != nil {
		for _, r := range missing {
			_ = c.forget(Change{Kind: ChangeNATRule, NAT: &r})
		}
		if !exists {
			_ = c.forget(tableCh)
		}
		return fmt.Errorf("netcfg: add nft rules: %w", err)
	}
	for _, r := range missing {
		c.log.Info("netcfg: added nft " + r.String())
	}
	return nil
}

// delNAT removes unwanted rules from our table, or the whole table when no NAT is
// wanted.
func (c *Config) delNAT(want State, _ Spec) error {
	present, exists, err := c.host.NATRules()
	if err != nil {
		return fmt.Errorf("netcfg: list nft table %s: %w", NFTTableName, err)
	}
	if !exists {
		return nil
	}
	if len(want.NAT) == 0 {
		if err := c.remove(natTableName{}, Change{Kind: ChangeNATTable}, c.host.DelNATTable); err != nil {
			return err
		}
		for i := len(c.journal) - 1; i >= 0; i-- {
			if c.journal[i].Kind == ChangeNATRule {
				if err := c.forget(c.journal[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var extra []NATRule
	for _, r := range present {
		if !slices.Contains(want.NAT, r) {
			extra = append(extra, r)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	if err := c.host.DelNATRules(extra); err != nil && !errors.Is(err, ErrNotExist) {
		return fmt.Errorf("netcfg: delete nft rules: %w", err)
	}
	for _, r := range extra {
		c.log.Info("netcfg: removed nft " + r.String())
		if err := c.forget(Change{Kind: ChangeNATRule, NAT: &r}); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) addSysctls(want State, _ Spec) error {
	for _, sc := range want.Sysctls {
		cur, err := c.host.Sysctl(sc.Key)
		if err != nil {
			return fmt.Errorf("netcfg: read %s: %w", sc.Key, err)
		}
		cur = strings.TrimSpace(cur)
		if cur == sc.Value {
			continue
		}
		ch := Change{Kind: ChangeSysctl, Sysctl: &Sysctl{Key: sc.Key, Value: cur}}
		if err := c.add(ch, func() error { return c.host.SetSysctl(sc.Key, sc.Value) }); err != nil {
			return err
		}
		if strings.HasSuffix(sc.Key, "/accept_ra") {
			c.log.Warn("netcfg: IPv6 forwarding makes Linux ignore router advertisements where accept_ra=1;"+
				" set accept_ra=2 so this interface keeps its IPv6 default route (restored on shutdown)",
				"sysctl", sc.Key, "was", cur)
		}
	}
	return nil
}

// delSysctls gives sysctls we changed that are no longer wanted their old value back.
func (c *Config) delSysctls(want State, _ Spec) error {
	for i := len(c.journal) - 1; i >= 0; i-- {
		ch := c.journal[i]
		if ch.Kind != ChangeSysctl || slices.ContainsFunc(want.Sysctls, func(x Sysctl) bool { return x.Key == ch.Sysctl.Key }) {
			continue
		}
		old := *ch.Sysctl
		if err := c.remove(old, ch, func() error { return c.host.SetSysctl(old.Key, old.Value) }); err != nil {
			return err
		}
	}
	return nil
}

// delStale undoes journal entries for objects the present-state scans above cannot
// see because the spec moved away from them (another table or device): whatever we
// added and no longer want goes.
func (c *Config) delStale(want State, _ Spec) error {
	wanted := map[string]bool{}
	for _, a := range want.Addrs {
		wanted[Change{Kind: ChangeAddr, Addr: &a}.key()] = true
	}
	for _, r := range want.Routes {
		wanted[Change{Kind: ChangeRoute, Route: &r}.key()] = true
	}
	for _, r := range want.Rules {
		wanted[Change{Kind: ChangeRule, Rule: &r}.key()] = true
	}
	for i := len(c.journal) - 1; i >= 0; i-- {
		ch := c.journal[i]
		switch ch.Kind {
		case ChangeAddr, ChangeRoute, ChangeRule:
		default:
			continue
		}
		if wanted[ch.key()] {
			continue
		}
		if err := c.remove(stringer(ch.key()), ch, func() error { return c.undo(ch) }); err != nil {
			return err
		}
	}
	return nil
}

type stringer string

func (s stringer) String() string { return string(s) }
