package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Source is what the handler needs from the daemon. The daemon implements
// it over the stack's connection table; tests use a fake.
type Source interface {
	// Connections returns a snapshot of the relayed connections.
	Connections() []Connection
	// Health reports the daemon's state; an error makes /v1/health answer
	// 503.
	Health() (Health, error)
}

// NewHandler returns the control API handler. metrics serves /metrics (nil:
// 404); log receives request errors (nil: discard).
func NewHandler(src Source, metrics http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{src: src, metrics: metrics, log: log}
}

// WithPprof adds Go's runtime profiles under PathPprof to a handler made by
// NewHandler (for the control socket only: see PathPprof).
func WithPprof(h http.Handler) http.Handler {
	if hh, ok := h.(*handler); ok {
		c := *hh
		c.pprof = true
		return &c
	}
	return h
}

type handler struct {
	src     Source
	metrics http.Handler
	log     *slog.Logger
	pprof   bool
}

// servePprof picks the net/http/pprof handler for a name below PathPprof.
func servePprof(name string) func(http.ResponseWriter, *http.Request) {
	switch name {
	case "":
		return pprof.Index
	case "profile":
		return pprof.Profile
	case "trace":
		return pprof.Trace
	case "cmdline":
		return pprof.Cmdline
	case "symbol":
		return pprof.Symbol
	default:
		return pprof.Handler(name).ServeHTTP
	}
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter, *http.Request)
	switch r.URL.Path {
	case PathHealth:
		serve = h.health
	case PathConnections:
		serve = h.connections
	case PathSessionID:
		serve = h.sessionID
	case PathMetrics:
		if h.metrics == nil {
			h.fail(w, http.StatusNotFound, CodeNotFound, "metrics are not served here", "")
			return
		}
		serve = h.metrics.ServeHTTP
	default:
		if name, ok := strings.CutPrefix(r.URL.Path, PathPprof); ok && h.pprof {
			serve = servePprof(name)
			break
		}
		h.fail(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no such endpoint %q; see %s, %s, %s, %s", r.URL.Path, PathHealth, PathConnections, PathSessionID, PathMetrics), "")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed; use GET", "")
		return
	}
	serve(w, r)
}

func (h *handler) health(w http.ResponseWriter, _ *http.Request) {
	hl, err := h.src.Health()
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, CodeUnavailable, err.Error(), "")
		return
	}
	h.reply(w, http.StatusOK, hl)
}

func (h *handler) connections(w http.ResponseWriter, _ *http.Request) {
	conns := h.src.Connections()
	if conns == nil {
		conns = []Connection{}
	}
	h.reply(w, http.StatusOK, ConnectionList{Connections: conns})
}

func (h *handler) sessionID(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var ends [2]netip.AddrPort
	for i, name := range []string{"local", "remote"} {
		v := q.Get(name)
		ap, err := netip.ParseAddrPort(v)
		if err != nil {
			h.fail(w, http.StatusBadRequest, CodeBadRequest,
				fmt.Sprintf("query parameter %s: %q is not ADDR:PORT (e.g. 10.0.0.1:443 or [fd00::1]:443)", name, v), "")
			return
		}
		ends[i] = ap
	}
	c, ok := Find(h.src.Connections(), ends[0], ends[1])
	switch {
	case !ok:
		h.fail(w, http.StatusNotFound, CodeNotFound,
			fmt.Sprintf("no relayed connection with local %v and remote %v", ends[0], ends[1]), "")
	case !c.Encrypted:
		reason := c.Fallback
		msg := fmt.Sprintf("connection %v -> %v is not encrypted", c.App.Local, c.App.Remote)
		if reason != "" {
			msg += " (" + reason + ")"
		} else {
			msg += " (yet)"
		}
		h.fail(w, http.StatusConflict, CodeNotEncrypted, msg, reason)
	default:
		h.reply(w, http.StatusOK, SessionIDResponse{SessionID: c.SessionID, Connection: c})
	}
}

func (h *handler) reply(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		h.log.Error("control: encode reply", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (h *handler) fail(w http.ResponseWriter, status int, code, msg, reason string) {
	h.reply(w, status, errorBody{Error: msg, Code: code, Reason: reason})
}

// Server serves HTTP on one listener in its own goroutine, which exits
// when the listener fails or Close is called.
type Server struct {
	srv  *http.Server
	done chan struct{}
	once sync.Once
	err  error // set before done is closed
}

// Serve starts serving h on l. The Server owns l.
func Serve(l net.Listener, h http.Handler) *Server {
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s
}

// Done is closed when the server has stopped; Err then says why (nil after
// Close).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns the error that stopped the server (valid after Done).
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the server: it stops accepting, lets requests in progress
// finish for up to two seconds, then closes what is left and waits for the
// serving goroutine.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
	})
	<-s.done
	return nil
}
