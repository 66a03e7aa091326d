package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/config"
)

// runCLI runs the command line in-process and returns the exit code and
// both outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"tcpcryptd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tcpcryptd.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag on up", []string{"up", "--bogus"}, "flag provided but not defined: -bogus"},
		{"unknown flag on down", []string{"down", "--log-level", "debug"}, "flag provided but not defined"},
		{"stray argument", []string{"up", "extra"}, `up takes no arguments, got "extra"`},
		{"bad log level", []string{"up", "--log-level", "loud"}, `--log-level (overrides log.level): "loud" is not a level; use debug, info, warn or error`},
		{"bad log format", []string{"up", "--log-format", "xml"}, `--log-format (overrides log.format): "xml" is not a format`},
		{"relative socket", []string{"up", "--control-socket", "ctl.sock"}, `--control-socket (overrides control.socket): "ctl.sock" must be an absolute path`},
		{"bad metrics address", []string{"up", "--metrics-listen", "localhost"}, `--metrics-listen (overrides metrics.listen): "localhost" is not address:port`},
		{"bad device name", []string{"up", "--device", "this-name-is-too-long"}, `--device (overrides device.name): "this-name-is-too-long" is not a valid interface name`},
		{"empty key log", []string{"up", "--key-log", ""}, "--key-log (overrides log.key_log): needs a file name"},
		{"sessid without remote", []string{"sessid", "--local", "10.0.0.1:1"}, "--remote ADDR:PORT is required"},
		{"sessid bad address", []string{"sessid", "--local", "10.0.0.1", "--remote", "10.0.0.2:1"}, `--local "10.0.0.1"`},
		{"flag needs value", []string{"check-config", "--config"}, "flag needs an argument"},
		{"version with argument", []string{"version", "x"}, "takes no arguments"},
	}
	// The default config file, if this machine has one, must not matter:
	// point every command that loads one at the embedded default's text.
	def := writeConfig(t, config.DefaultText())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if len(args) > 0 && (args[0] == "up" || args[0] == "down") {
				args = append(append([]string{args[0]}, "--config", def), args[1:]...)
			}
			code, _, stderr := runCLI(t, args...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.msg) {
				t.Fatalf("stderr %q does not contain %q", stderr, tc.msg)
			}
		})
	}
}

// Bad configuration files: the message names the key, the exit status is
// exitConfig, for check-config and for up and down alike, and nothing is
// done (up fails before touching the host).
func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, text, key string
	}{
		{"syntax", "[device\nname = 1\n", "to end table name"},
		{"unknown key", "[device]\ncolour = \"blue\"\n", "device.colour"},
		{"mtu", "[device]\nmtu = 100\n", "device.mtu"},
		{"device name", "[device]\nname = \"a/b\"\n", "device.name"},
		{"include", "[outbound]\ninclude = [\"10.0.0.0/33\"]\n", "outbound.include[0]"},
		{"policy", "[outbound]\npolicy = \"maybe\"\n", "outbound.policy"},
		{"service listen", "[[service]]\nname = \"web\"\nlisten = \"10.254.78.1\"\nbackend = \"127.0.0.1:80\"\n", `service "web".listen`},
		{"teps", "[crypto]\nteps = [\"rsa\"]\n", "crypto.teps"},
		{"control mode", "[control]\nmode = \"0666\"\n", "control.mode"},
		{"log level", "[log]\nlevel = \"loud\"\n", "log.level"},
		{"metrics", "[metrics]\nlisten = \"nowhere\"\n", "metrics.listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			for _, cmd := range []string{"check-config", "up", "down"} {
				code, stdout, stderr := runCLI(t, cmd, "--config", path)
				if code != exitConfig {
					t.Fatalf("%s: exit %d, want %d; stderr %q", cmd, code, exitConfig, stderr)
				}
				if !strings.Contains(stderr, tc.key) || !strings.Contains(stderr, path) {
					t.Fatalf("%s: stderr %q does not name %q in %s", cmd, stderr, tc.key, path)
				}
				if stdout != "" {
					t.Fatalf("%s: printed %q on a bad config", cmd, stdout)
				}
			}
		})
	}
	// A file that does not exist is a config error too.
	code, _, stderr := runCLI(t, "up", "--config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != exitConfig || !strings.Contains(stderr, "missing.toml") {
		t.Fatalf("missing file: exit %d, %q", code, stderr)
	}
}

func TestCheckConfig(t *testing.T) {
	path := writeConfig(t, `
[outbound]
include = ["192.0.2.0/24", "2001:db8::/32"]
[[service]]
name = "web"
listen = "10.254.78.1:443"
backend = "127.0.0.1:8080"
proxy_protocol = true
host_port = 443
[log]
key_log = "/tmp/keys.log"
`)
	code, out, stderr := runCLI(t, "check-config", "--config", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{path + ": OK", "192.0.2.0/24 2001:db8::/32", `"web" 10.254.78.1:443 -> 127.0.0.1:8080`,
		"PROXY v2", "host port 443", "TEPs x25519 x448 p256,", "key log on"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "check-config", "--print-default")
	if code != exitOK || out != config.DefaultText() {
		t.Fatalf("--print-default: exit %d, %d bytes", code, len(out))
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitOK || out != "tcpcryptd "+version+"\n" {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, cmd := range []string{"up", "down", "status", "sessid", "check-config"} {
		code, out, _ := runCLI(t, cmd, "--help")
		if code != exitOK || !strings.Contains(out, "tcpcryptd "+cmd) || !strings.Contains(out, "DESCRIPTION") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, out)
		}
	}
	_, out, _ = runCLI(t, "up", "--help")
	for _, flag := range []string{"--config", "--log-level", "--log-format", "--key-log", "--control-socket", "--metrics-listen", "--device"} {
		if !strings.Contains(out, flag) {
			t.Errorf("up --help does not document %s", flag)
		}
	}
}

// Client commands report a daemon that is not running clearly.
func TestClientWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, args := range [][]string{
		{"status", "--control-socket", sock},
		{"sessid", "--control-socket", sock, "--local", "10.0.0.1:1", "--remote", "10.0.0.2:2"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitError || !strings.Contains(stderr, "is it running?") {
			t.Fatalf("%v: exit %d %q", args, code, stderr)
		}
	}
}

// TestFlagAndFileOneMessage: a bad value from a flag and the same value in
// the config file get the one validation's message for the same key; the
// flag's names the flag and is a usage error, the file's names the file
// and is a config error.
func TestFlagAndFileOneMessage(t *testing.T) {
	def := writeConfig(t, config.DefaultText())
	bad := writeConfig(t, "[log]\nlevel = \"loud\"\n")
	const body = `"loud" is not a level; use debug, info, warn or error`
	code, _, stderr := runCLI(t, "up", "--config", bad)
	if code != exitConfig || !strings.Contains(stderr, bad+": log.level: "+body) {
		t.Fatalf("file: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "up", "--config", def, "--log-level", "loud")
	if code != exitUsage || !strings.Contains(stderr, "--log-level (overrides log.level): "+body) {
		t.Fatalf("flag: exit %d, %q", code, stderr)
	}
}
