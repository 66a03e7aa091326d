package config

import (
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
