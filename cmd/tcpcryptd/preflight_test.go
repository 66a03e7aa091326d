package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPreflight(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	status := func(capEff string) string {
		return write("status-"+capEff, "Name:\ttcpcryptd\nCapInh:\t0000000000000000\nCapEff:\t"+capEff+"\nCapBnd:\t000001ffffffffff\n")
	}
	ok := preflight{
		procStatus:  status("0000000000001000"), // CAP_NET_ADMIN only
		tunDevice:   "/dev/null",                // a character device we can open
		ifInet6:     write("if_inet6", ""),
		disableIPv6: write("disable0", "0\n"),
	}
	if err := ok.check(true); err != nil {
		t.Fatalf("all present: %v", err)
	}

	tests := []struct {
		name   string
		mod    func(p *preflight)
		needs  bool
		expect string
	}{
		{"no CAP_NET_ADMIN", func(p *preflight) { p.procStatus = status("00000000a80425fb") }, false, "missing CAP_NET_ADMIN"},
		{"no CapEff line", func(p *preflight) { p.procStatus = write("nocap", "Name:\tx\n") }, false, "no CapEff line"},
		{"no tun", func(p *preflight) { p.tunDevice = filepath.Join(dir, "tun") }, true, "modprobe tun"},
		{"tun not a device", func(p *preflight) { p.tunDevice = write("tunfile", "") }, true, "not a character device"},
		{"no ipv6", func(p *preflight) { p.ifInet6 = filepath.Join(dir, "none") }, false, "IPv6 is not available"},
		{"ipv6 disabled", func(p *preflight) { p.disableIPv6 = write("disable1", "1\n") }, false, "disable_ipv6=0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mod(&p)
			err := p.check(tc.needs)
			var ce *codeError
			if !errors.As(err, &ce) || ce.code != exitEnvironment {
				t.Fatalf("err %v, want exit code %d", err, exitEnvironment)
			}
			if !strings.Contains(err.Error(), tc.expect) {
				t.Fatalf("err %q lacks %q", err, tc.expect)
			}
		})
	}
	// 'down' does not need the TUN driver.
	p := ok
	p.tunDevice = filepath.Join(dir, "tun")
	if err := p.check(false); err != nil {
		t.Fatalf("down without tun: %v", err)
	}
}
