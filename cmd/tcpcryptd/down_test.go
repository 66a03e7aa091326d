package main

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg/netcfgtest"
)

// fakeLinks is a linkDeleter over the fake host's interfaces: each name
// maps to its kind.
type fakeLinks struct {
	host  *netcfgtest.Host
	kinds map[string]string
}

func (f *fakeLinks) Kind(name string) (string, error) {
	k, ok := f.kinds[name]
	if !ok {
		return "", fs.ErrNotExist
	}
	return k, nil
}

func (f *fakeLinks) Delete(name string) error {
	delete(f.kinds, name)
	f.host.RemoveLink(name)
	return nil
}

func downConfig(t *testing.T) *config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "down")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := mustParse(t, `
[device]
name = "tc0"
[outbound]
include = ["192.0.2.0/24", "2001:db8::/32"]
[[service]]
listen = "10.254.78.1:443"
backend = "127.0.0.1:8080"
host_port = 443
`)
	cfg.Control.Socket = filepath.Join(dir, "control.sock")
	return cfg
}

// A crashed 'up' (a persistent device here, so that it outlives the
// process) leaves routes, rules, NAT, sysctls and a stale socket; 'down'
// removes them all, says what it removed, and a second 'down' finds
// nothing.
func TestDownAfterCrash(t *testing.T) {
	cfg := downConfig(t)
	host := netcfgtest.NewHost()
	before := host.String()
	host.AddLink("tc0", 1500)
	links := &fakeLinks{host: host, kinds: map[string]string{"tc0": "tun", "eth0": "device"}}

	nc, err := netcfg.New(host, netcfg.Options{JournalPath: journalPath(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Up(netSpec(cfg)); err != nil {
		t.Fatal(err)
	}
	// The daemon's stale socket: bound, then abandoned without removal.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Control.Socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()

	var out, errw bytes.Buffer
	if err := runDown(cfg, host, links, &out, &errw); err != nil {
		t.Fatalf("down: %v\n%s", err, errw.String())
	}
	text := out.String()
	for _, want := range []string{
		"removed route table 7701 192.0.2.0/24 dev tc0",
		"removed rule v4 prio 7702 ipproto tcp fwmark 0x7463a001 lookup 7701",
		"removed rule v4 prio 7702 to 10.254.78.1/32 ipproto tcp lookup 7701",
		"removed nft capture tcp daddr 192.0.2.0-192.0.2.255 mark 0x7463a001 unless 0x7463a002",
		"removed nft forward-drop ipv4 iif != tc0 oif != tc0",
		"removed nft masquerade from 10.254.77.2",
		"removed nft dnat tcp dport 443 to 10.254.78.1:443",
		"removed addr tc0 10.254.77.1/24",
		"restored net/ipv4/ip_forward to 0",
		"removed device tc0",
		"removed stale control socket " + cfg.Control.Socket,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("down output lacks %q:\n%s", want, text)
		}
	}
	if after := host.String(); after != before {
		t.Fatalf("host not restored\n--- before\n%s--- after\n%s", before, after)
	}
	if _, err := os.Stat(journalPath(cfg)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("journal left: %v", err)
	}

	out.Reset()
	if err := runDown(cfg, host, links, &out, &errw); err != nil || out.String() != "nothing to remove\n" {
		t.Fatalf("second down: %v %q", err, out.String())
	}
}

// Without a journal (lost), leftovers with our marks still go.
func TestDownWithoutJournal(t *testing.T) {
	cfg := downConfig(t)
	host := netcfgtest.NewHost()
	host.AddLink("tc0", 1500)
	nc, err := netcfg.New(host, netcfg.Options{JournalPath: journalPath(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Up(netSpec(cfg)); err != nil {
		t.Fatal(err)
	}
	os.Remove(journalPath(cfg))
	host.RemoveLink("tc0") // the TUN went with the process
	var out, errw bytes.Buffer
	links := &fakeLinks{host: host, kinds: map[string]string{}}
	if err := runDown(cfg, host, links, &out, &errw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "removed rule") || !strings.Contains(out.String(), "removed nft table inet tcpcryptd") {
		t.Fatalf("output %q", out.String())
	}
	routes, _ := host.Routes(0)
	for _, r := range routes {
		if r.Proto == netcfg.RouteProtocol || r.Table == cfg.Device.RouteTable {
			t.Fatalf("route left: %v", r)
		}
	}
	rules, _ := host.Rules()
	for _, r := range rules {
		if r.Proto == netcfg.RouteProtocol {
			t.Fatalf("rule left: %v", r)
		}
	}
}

// 'down' refuses while a daemon answers, and never deletes an interface
// that is not a TUN.
func TestDownSafety(t *testing.T) {
	cfg := downConfig(t)
	host := netcfgtest.NewHost()
	l, err := net.Listen("unix", cfg.Control.Socket)
	if err != nil {
		t.Fatal(err)
	}
	before := host.String()
	var out, errw bytes.Buffer
	links := &fakeLinks{host: host, kinds: map[string]string{"tc0": "veth"}}
	if err := runDown(cfg, host, links, &out, &errw); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("live daemon: %v", err)
	}
	if host.String() != before || out.Len() != 0 {
		t.Fatal("down changed something while a daemon answered")
	}
	l.Close()

	if err := runDown(cfg, host, links, &out, &errw); err != nil {
		t.Fatal(err)
	}
	if _, ok := links.kinds["tc0"]; !ok || !strings.Contains(errw.String(), "not a TUN device; left alone") {
		t.Fatalf("veth touched or not reported: %v %q", links.kinds, errw.String())
	}
}
