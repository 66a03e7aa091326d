package netcfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ChangeKind names what a journal entry changed.
type ChangeKind string

const (
	ChangeLink     ChangeKind = "link"      // Link holds the state before
	ChangeAddr     ChangeKind = "addr"      // Addr was added
	ChangeRoute    ChangeKind = "route"     // Route was added
	ChangeRule     ChangeKind = "rule"      // Rule was added
	ChangeSysctl   ChangeKind = "sysctl"    // Sysctl: Key set, Old is the value before
	ChangeNATTable ChangeKind = "nat-table" // our nftables table was created
	ChangeNATRule  ChangeKind = "nat-rule"  // NAT was added
)

// Change is one journal entry: enough to undo one change to the host.
type Change struct {
	Kind   ChangeKind `json:"kind"`
	Link   *Link      `json:"link,omitempty"`
	Addr   *Addr      `json:"addr,omitempty"`
	Route  *Route     `json:"route,omitempty"`
	Rule   *Rule      `json:"rule,omitempty"`
	Sysctl *Sysctl    `json:"sysctl,omitempty"` // Value is the old value
	NAT    *NATRule   `json:"nat,omitempty"`
}

func (c Change) String() string {
	switch c.Kind {
	case ChangeLink:
		return "changed " + c.Link.Name + ", was: " + c.Link.String()
	case ChangeAddr:
		return "added " + c.Addr.String()
	case ChangeRoute:
		return "added " + c.Route.String()
	case ChangeRule:
		return "added " + c.Rule.String()
	case ChangeSysctl:
		return "set " + c.Sysctl.Key + ", was " + c.Sysctl.Value
	case ChangeNATTable:
		return "created nft table inet " + NFTTableName
	case ChangeNATRule:
		return "added nft " + c.NAT.String()
	}
	return "unknown change " + string(c.Kind)
}

// key identifies what a change is about, so a later change to the same object finds
// its entry.
func (c Change) key() string {
	switch c.Kind {
	case ChangeLink:
		return "link " + c.Link.Name
	case ChangeAddr:
		return c.Addr.String()
	case ChangeRoute:
		return c.Route.key()
	case ChangeRule:
		return c.Rule.key()
	case ChangeSysctl:
		return "sysctl " + c.Sysctl.Key
	case ChangeNATTable:
		return "nat-table"
	case ChangeNATRule:
		return "nat " + c.NAT.String()
	}
	return ""
}

// validate checks that a change read from a file carries what undo needs.
func (c Change) validate() error {
	ok := false
	switch c.Kind {
	case ChangeLink:
		ok = c.Link != nil && c.Link.Name != ""
	case ChangeAddr:
		ok = c.Addr != nil && c.Addr.Dev != "" && c.Addr.Prefix.IsValid()
	case ChangeRoute:
		ok = c.Route != nil && c.Route.Dst.IsValid() && c.Route.Table > 0 && (c.Route.Throw || c.Route.Dev != "")
	case ChangeRule:
		ok = c.Rule != nil && c.Rule.Table > 0
	case ChangeSysctl:
		ok = c.Sysctl != nil && validSysctlKey(c.Sysctl.Key) == nil
	case ChangeNATTable:
		ok = true
	case ChangeNATRule:
		ok = c.NAT != nil && c.NAT.validate() == nil
	}
	if !ok {
		return fmt.Errorf("incomplete %q entry", c.Kind)
	}
	return nil
}

// JournalError reports a journal file that cannot be used.
type JournalError struct {
	Path string
	Err  error
}

func (e *JournalError) Error() string { return fmt.Sprintf("netcfg: journal %s: %v", e.Path, e.Err) }
func (e *JournalError) Unwrap() error { return e.Err }

// parseJournal decodes a journal file's content.
func parseJournal(b []byte) ([]Change, error) {
	var cs []Change
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, err
	}
	for i, c := range cs {
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return cs, nil
}

// loadJournal reads the journal at path; a missing file is an empty journal.
func loadJournal(path string) ([]Change, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &JournalError{path, err}
	}
	cs, err := parseJournal(b)
	if err != nil {
		return nil, &JournalError{path, err}
	}
	return cs, nil
}

// saveJournal writes the journal atomically (temp file, fsync, rename), or removes
// the file when the journal is empty.
func saveJournal(path string, cs []Change) error {
	if len(cs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return &JournalError{path, err}
		}
		return nil
	}
	b, err := json.MarshalIndent(cs, "", " ")
	if err != nil {
		return &JournalError{path, err}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".netcfg-journal-*")
	if err != nil {
		return &JournalError{path, err}
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return &JournalError{path, err}
	}
	return nil
}
