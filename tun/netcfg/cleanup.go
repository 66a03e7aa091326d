package netcfg

import (
	"errors"
	"fmt"
	"log/slog"
)

// CleanupOptions says where to look for leftovers.
type CleanupOptions struct {
	// Device is our TUN device; if it still exists (a persistent TUN), its addresses
	// other than link-local ones are removed.
	Device string
	// Table and RulePriority are those of the crashed run (0: defaults). Rules and
	// routes with our RouteProtocol mark are found whatever they were.
	Table, RulePriority int
	// JournalPath, if set and present, is replayed first (Down): only a journal can
	// restore sysctls to their earlier values.
	JournalPath string
	Logger      *slog.Logger
}

// Cleanup removes everything of ours from host after a crash: it replays a journal
// if there is one, then sweeps what carries our marks — rules with RouteProtocol or
// looking up Table at our priorities, routes with RouteProtocol in any table, every
// route in Table, the nftables table NFTTableName, addresses on Device. Sysctls
// cannot be restored without a journal (their earlier values are unknown): it says
// so in the log. It goes on after errors and returns them all.
func Cleanup(host Host, o CleanupOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Table == 0 {
		o.Table = DefaultTable
	}
	if o.RulePriority == 0 {
		o.RulePriority = DefaultRulePriority
	}
	var errs []error
	fail := func(what string, err error) {
		if err != nil && !errors.Is(err, ErrNotExist) {
			errs = append(errs, fmt.Errorf("netcfg: cleanup: %s: %w", what, err))
		}
	}

	if o.JournalPath != "" {
		c, err := New(host, Options{Logger: log, JournalPath: o.JournalPath})
		if err != nil {
			fail("journal", err)
		} else {
			fail("replay journal", c.Down())
		}
	} else {
		log.Warn("netcfg: cleanup without a journal cannot restore sysctls (forwarding, accept_ra); check them")
	}

	if rules, err := host.Rules(); err != nil {
		fail("list rules", err)
	} else {
		for _, r := range rules {
			if ourRule(r, o.Table, o.RulePriority) {
				log.Info("netcfg: cleanup: removed " + r.String())
				fail(r.String(), host.DelRule(r))
			}
		}
	}

	if routes, err := host.Routes(0); err != nil {
		fail("list routes", err)
	} else {
		for _, r := range routes {
			if r.Table == o.Table || r.Proto == RouteProtocol {
				log.Info("netcfg: cleanup: removed " + r.String())
				fail(r.String(), host.DelRoute(r))
			}
		}
	}

	if err := host.DelNATTable(); err == nil {
		log.Info("netcfg: cleanup: removed " + natTableName{}.String())
	} else {
		fail("nft table", err)
	}

	if o.Device != "" {
		addrs, err := host.Addrs(o.Device)
		if err != nil && !errors.Is(err, ErrNotExist) {
			fail("list addresses", err)
		}
		for _, p := range addrs {
			if p.Addr().IsLinkLocalUnicast() {
				continue
			}
			a := Addr{Dev: o.Device, Prefix: p}
			log.Info("netcfg: cleanup: removed " + a.String())
			fail(a.String(), host.DelAddr(a))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}
