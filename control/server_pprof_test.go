package control

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Profiles are served only by a handler wrapped in WithPprof.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	plain := NewHandler(fakeSourceForPprof{}, nil, nil)
	rec := httptest.NewRecorder()
	plain.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathPprof+"goroutine?debug=1", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("without WithPprof: status %d, want 404", rec.Code)
	}
	rec = httptest.NewRecorder()
	WithPprof(plain).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathPprof+"goroutine?debug=1", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Fatalf("with WithPprof: status %d, body %.200q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WithPprof(plain).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathPprof+"heap", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", rec.Code)
	}
}

type fakeSourceForPprof struct{}

func (fakeSourceForPprof) Connections() []Connection { return nil }
func (fakeSourceForPprof) Health() (Health, error)   { return Health{Status: "ok"}, nil }
