package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSDNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sent, err := sdNotify("READY=1"); sent || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v %v", sent, err)
	}

	dir, err := os.MkdirTemp("", "ntf")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if sent, err := sdNotify("READY=1\nSTATUS=running"); !sent || err != nil {
		t.Fatalf("notify: %v %v", sent, err)
	}
	buf := make([]byte, 128)
	l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1\nSTATUS=running" {
		t.Fatalf("received %q %v", buf[:n], err)
	}

	// The abstract namespace ('@').
	name := "@tcpcryptd-test-" + filepath.Base(dir)
	al, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Skipf("abstract sockets: %v", err)
	}
	defer al.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if sent, err := sdNotify("STOPPING=1"); !sent || err != nil {
		t.Fatalf("abstract notify: %v %v", sent, err)
	}
	al.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := al.Read(buf); err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Fatalf("abstract received %q %v", buf[:n], err)
	}

	t.Setenv("NOTIFY_SOCKET", "relative")
	if _, err := sdNotify("READY=1"); err == nil {
		t.Fatal("relative NOTIFY_SOCKET accepted")
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "nobody"))
	if _, err := sdNotify("READY=1"); err == nil {
		t.Fatal("no listener, no error")
	}
}
