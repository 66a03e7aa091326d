package config

import (
	"errors"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/crypt/tcpcrypt"
)

// TestResumptionDefaultsMatchPackage (issue 13, hole 5): the documented
// defaults of the resumption cache are the package's own, so a cache built
// without this file (tests, other programs) behaves as the daemon does.
// Before, the package kept chains 1h and the file said 24h.
func TestResumptionDefaultsMatchPackage(t *testing.T) {
	d := Default()
	if d.Crypto.ResumptionLifetime != tcpcrypt.DefaultCacheLifetime {
		t.Errorf("crypto.resumption_lifetime = %v, package default %v", d.Crypto.ResumptionLifetime, tcpcrypt.DefaultCacheLifetime)
	}
	if d.Crypto.ResumptionCacheSize != tcpcrypt.DefaultCacheEntries {
		t.Errorf("crypto.resumption_cache_size = %d, package default %d", d.Crypto.ResumptionCacheSize, tcpcrypt.DefaultCacheEntries)
	}
}

// TestResumptionLimits: the [limits] resumption keys default to the
// package's values and are range-checked.
func TestResumptionLimits(t *testing.T) {
	d := Default()
	if d.Limits.ResumptionLookAhead != tcpcrypt.DefaultLookAhead || d.Limits.ResumptionPrefixShare != tcpcrypt.DefaultPrefixShare {
		t.Errorf("limits %+v, package defaults look-ahead %d, prefix share %d", d.Limits, tcpcrypt.DefaultLookAhead, tcpcrypt.DefaultPrefixShare)
	}
	if maxResumptionLookAhead != tcpcrypt.MaxLookAhead {
		t.Errorf("maximum look-ahead %d, package %d", maxResumptionLookAhead, tcpcrypt.MaxLookAhead)
	}
	for _, tc := range []struct {
		text, key string
	}{
		{"[limits]\nresumption_lookahead = -1\n", "limits.resumption_lookahead"},
		{"[limits]\nresumption_lookahead = 1025\n", "limits.resumption_lookahead"},
		{"[limits]\nresumption_prefix_share = 0\n", "limits.resumption_prefix_share"},
	} {
		_, err := Parse("t.toml", []byte(tc.text))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%q: error %v, want one for %s", tc.text, err, tc.key)
		}
	}
	c, err := Parse("t.toml", []byte("[limits]\nresumption_lookahead = 0\nresumption_prefix_share = 4\n"))
	if err != nil || c.Limits.ResumptionLookAhead != 0 || c.Limits.ResumptionPrefixShare != 4 {
		t.Fatalf("parse: %v %+v", err, c)
	}
}
