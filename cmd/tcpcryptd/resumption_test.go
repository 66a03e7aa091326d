package main

import (
	"testing"
	"time"
)

// TestResumptionLimitsWiring: the [limits] resumption keys reach the
// cache; a look-ahead of 0 means none (the package reads 0 as default).
func TestResumptionLimitsWiring(t *testing.T) {
	cfg := mustParse(t, "[crypto]\nresumption_lifetime = \"2h\"\n[limits]\nresumption_lookahead = 100\nresumption_prefix_share = 7\n")
	tc, err := tcpcryptConfig(cfg.Crypto, cfg.Limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	cc := tc.Cache.Config()
	if cc.LookAhead != 100 || cc.PrefixShare != 7 || cc.Lifetime != 2*time.Hour || cc.MaxEntries != 4096 {
		t.Errorf("cache config %+v", cc)
	}
	cfg = mustParse(t, "[limits]\nresumption_lookahead = 0\n")
	if tc, err = tcpcryptConfig(cfg.Crypto, cfg.Limits, nil); err != nil || tc.Cache.Config().LookAhead != 0 {
		t.Errorf("look-ahead 0: %v %+v", err, tc.Cache.Config())
	}
	def := mustParse(t, "")
	if tc, err = tcpcryptConfig(def.Crypto, def.Limits, nil); err != nil || tc.Cache.Config().LookAhead != 64 || tc.Cache.Config().Lifetime != 24*time.Hour {
		t.Errorf("defaults: %v %+v", err, tc.Cache.Config())
	}
}
