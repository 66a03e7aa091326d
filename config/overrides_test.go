package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestOverrideAndFileSameMessage: a bad value given by a flag and the same
// value written in the file fail the one validation with the same key and
// message; only the flag's error names the flag.
func TestOverrideAndFileSameMessage(t *testing.T) {
	bad := map[string]string{
		"device.name":    "this-name-is-too-long",
		"control.socket": "ctl.sock",
		"metrics.listen": "localhost",
		"log.level":      "loud",
		"log.format":     "xml",
	}
	for _, key := range OverridableKeys {
		val, ok := bad[key]
		if !ok {
			continue
		}
		section, name, _ := strings.Cut(key, ".")
		_, ferr := Parse("f.toml", []byte(fmt.Sprintf("[%s]\n%s = %q\n", section, name, val)))
		_, oerr := ParseWith("f.toml", nil, Override{Key: key, Flag: "the-flag", Value: val})
		var fe, oe *Error
		if !errors.As(ferr, &fe) || !errors.As(oerr, &oe) {
			t.Fatalf("%s: file error %v, override error %v", key, ferr, oerr)
		}
		if fe.Key != key || oe.Key != key || fe.Msg != oe.Msg {
			t.Errorf("%s: file says %s: %s; flag says %s: %s", key, fe.Key, fe.Msg, oe.Key, oe.Msg)
		}
		if fe.Flag != "" || oe.Flag != "the-flag" {
			t.Errorf("%s: flags %q (file) and %q (override)", key, fe.Flag, oe.Flag)
		}
		if !strings.Contains(oe.Error(), "--the-flag (overrides "+key+")") || strings.Contains(fe.Error(), "--") {
			t.Errorf("%s: messages %q and %q", key, fe.Error(), oe.Error())
		}
	}
}

// TestOverrideBeforeValidation: an override replaces the file's value
// before validation, so it can correct a bad value in the file, and it is
// what the configuration holds.
func TestOverrideBeforeValidation(t *testing.T) {
	c, err := ParseWith("f.toml", []byte("[log]\nlevel = \"loud\"\n"), Override{Key: "log.level", Flag: "log-level", Value: "debug"})
	if err != nil || c.Log.Level != "debug" {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := ParseWith("f.toml", nil, Override{Key: "crypto.teps", Flag: "x", Value: "y"}); err == nil {
		t.Fatal("an override of a key with no flag was accepted")
	}
	// "" turns the key log off in the file, but a flag with no file name is refused.
	if _, err := Parse("f.toml", []byte("[log]\nkey_log = \"\"\n")); err != nil {
		t.Fatal(err)
	}
	_, err = ParseWith("f.toml", nil, Override{Key: "log.key_log", Flag: "key-log", Value: ""})
	if err == nil || !strings.Contains(err.Error(), "--key-log (overrides log.key_log): needs a file name") {
		t.Fatalf("empty --key-log: %v", err)
	}
}

// TestHostNetworkingMistakesNamedByKey: mistakes that tun/netcfg would
// otherwise be first to see (with its own field names) are refused here,
// naming the configuration key.
func TestHostNetworkingMistakesNamedByKey(t *testing.T) {
	tests := []struct{ text, key string }{
		{"[device]\nrule_priority = 32764\n", "device.rule_priority"},
		{"[device]\nname = \"..\"\n", "device.name"},
		{"[device]\nkernel_ipv4 = \"10.254.77.1/32\"\n", "device.kernel_ipv4"},
		{"[device]\nkernel_ipv4 = \"10.254.77.1/24\"\nstack_ipv4 = \"10.254.77.0\"\n", "device.stack_ipv4"},
		{"[[service]]\nlisten = \"127.0.0.1:443\"\nbackend = \"127.0.0.1:8080\"\n", "service[0].listen"},
		{"[[service]]\nlisten = \"[fe80::1%eth0]:443\"\nbackend = \"127.0.0.1:8080\"\n", "service[0].listen"},
		{"[[service]]\nlisten = \"10.254.78.1:443\"\nbackend = \"127.0.0.1:8080\"\nhost_port = 443\n" +
			"[[service]]\nlisten = \"10.254.78.2:443\"\nbackend = \"127.0.0.1:8081\"\nhost_port = 443\n", "service[1].host_port"},
	}
	for _, tc := range tests {
		_, err := Parse("f.toml", []byte(tc.text))
		var e *Error
		if !errors.As(err, &e) || e.Key != tc.key {
			t.Errorf("%q: got %v, want an error for %s", tc.text, err, tc.key)
		}
	}
	// One host port per IP family is fine.
	if _, err := Parse("f.toml", []byte("[[service]]\nlisten = \"10.254.78.1:443\"\nbackend = \"127.0.0.1:8080\"\nhost_port = 443\n"+
		"[[service]]\nlisten = \"[fd7c:e770::10]:443\"\nbackend = \"127.0.0.1:8081\"\nhost_port = 443\n")); err != nil {
		t.Fatal(err)
	}
}
