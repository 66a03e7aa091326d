package main

import (
	"slices"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/crypt/kex"
)

// TestPQHybridWiring: the default configuration leaves the experimental
// x25519mlkem768 off; listing it in crypto.teps (most preferred first)
// makes it the protocol's most preferred TEP.
func TestPQHybridWiring(t *testing.T) {
	def := config.Default()
	if slices.Contains(def.Crypto.TEPs, "x25519mlkem768") {
		t.Fatalf("default crypto.teps = %v enables the experimental TEP", def.Crypto.TEPs)
	}
	tc, err := tcpcryptConfig(def.Crypto, def.Limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tc.TEPs, kex.X25519MLKEM768) {
		t.Fatalf("default TEPs %v", tc.TEPs)
	}
	cr := def.Crypto
	cr.TEPs = []string{"x25519mlkem768", "x25519"}
	tc, err = tcpcryptConfig(cr, def.Limits, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tc.TEPs, []kex.ID{kex.X25519, kex.X25519MLKEM768}) {
		t.Fatalf("TEPs = %v, want x25519 then x25519mlkem768 (increasing preference)", tc.TEPs)
	}
	c, err := config.Parse("t", []byte("[crypto]\nteps = [\"x25519mlkem768\", \"x25519\"]\n"))
	if err != nil || !slices.Equal(c.Crypto.TEPs, []string{"x25519mlkem768", "x25519"}) {
		t.Fatalf("config: %v, %v", err, c)
	}
}
