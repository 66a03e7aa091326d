package main

import (
	"encoding/hex"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/crypt/eno"
	"github.com/tcpcryptd/tcpcryptd/stack"
)

// connTable is what the control API and the metrics read from the stack.
// *stack.Table implements it.
type connTable interface {
	List() []stack.ConnInfo
	Len() int
}

var _ connTable = (*stack.Table)(nil)

// apiSource implements control.Source over the stack's connection table.
// The control socket is up before the stack exists (so a second daemon is
// refused before it touches the host); until the table is set and the
// daemon is ready, health answers "starting".
type apiSource struct {
	device  string
	started time.Time
	table   atomic.Pointer[connTable]
	ready   atomic.Bool
	// stopping is set when teardown starts; health then fails.
	stopping atomic.Bool
}

var _ control.Source = (*apiSource)(nil)

func (s *apiSource) setTable(t connTable) { s.table.Store(&t) }

// Connections implements control.Source.
func (s *apiSource) Connections() []control.Connection {
	t := s.table.Load()
	if t == nil {
		return nil
	}
	infos := (*t).List()
	out := make([]control.Connection, len(infos))
	for i, ci := range infos {
		out[i] = apiConnection(ci)
	}
	return out
}

// Health implements control.Source.
func (s *apiSource) Health() (control.Health, error) {
	switch {
	case s.stopping.Load():
		return control.Health{}, errors.New("tcpcryptd is stopping")
	case !s.ready.Load():
		return control.Health{}, errors.New("tcpcryptd is starting")
	}
	n := 0
	if t := s.table.Load(); t != nil {
		n = (*t).Len()
	}
	return control.Health{Status: "ok", Version: version, PID: os.Getpid(), Device: s.device, Started: s.started, Connections: n}, nil
}

// apiConnection converts a table entry to its control API form. The
// application's view of the plain leg is the stack's view reversed: the
// stack answers an outbound application as its destination, and dials
// an inbound connection's backend from its own kernel socket.
func apiConnection(ci stack.ConnInfo) control.Connection {
	c := control.Connection{
		ID:            ci.ID,
		Direction:     ci.Direction.String(),
		State:         ci.State.String(),
		Inner:         control.Tuple{Local: ci.Inner.Local, Remote: ci.Inner.Remote},
		Outer:         control.Tuple{Local: ci.Outer.Local, Remote: ci.Outer.Remote},
		Start:         ci.Start,
		Encrypted:     ci.Encrypted,
		BytesToPeer:   ci.BytesInnerToOuter,
		BytesFromPeer: ci.BytesOuterToInner,
	}
	c.App = c.Inner.Reverse()
	if ci.Encrypted {
		c.TEP = ci.TEP.String()
		c.AEAD = ci.AEAD.String()
		c.Resumed = ci.Resumed
		c.SessionID = hex.EncodeToString(ci.SessionID)
	} else if ci.Reason != eno.ReasonNone {
		c.Fallback = ci.Reason.String()
	}
	return c
}
