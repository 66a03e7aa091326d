package integration

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `tcpcryptd demo` (which builds its own two namespaces) and
// checks what it reports: matching session IDs on both sides for IPv4 and
// IPv6, ENO in the SYN, no plaintext on the wire, and nothing left behind.
func TestDemo(t *testing.T) {
	requireDaemon(t)
	cmd := exec.Command(binPath, "demo")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("demo did not finish within 90s:\n%s", out.String())
	}
	text := out.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, text)
	}
	t.Logf("demo output:\n%s", text)

	laptop := regexp.MustCompile(`laptop \(control API\): ([0-9a-f]+)`).FindAllStringSubmatch(text, -1)
	server := regexp.MustCompile(`server \(PROXY TLV\): +([0-9a-f]+)`).FindAllStringSubmatch(text, -1)
	if len(laptop) != 2 || len(server) != 2 {
		t.Fatalf("demo printed %d laptop and %d server session IDs, want 2 each", len(laptop), len(server))
	}
	for i := range laptop {
		if laptop[i][1] != server[i][1] || len(laptop[i][1]) < 32 {
			t.Fatalf("session IDs differ: laptop %s, server %s", laptop[i][1], server[i][1])
		}
		// Both connection tables show it too (abbreviated).
		if n := strings.Count(text, laptop[i][1][:16]); n < 4 {
			t.Errorf("session ID %s appears %d times, want in both tables and both listings", laptop[i][1], n)
		}
	}
	for _, want := range []string{"session IDs MATCH", "TCP-ENO (kind 69", "RFC 8547): 45 ", "2 connections: 2 encrypted",
		"neither the request nor the response text appears"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(text, "DIFFER") {
		t.Error("demo reported differing session IDs")
	}
	// The demo removed its namespaces.
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("tcpcdemo-%d-", cmd.Process.Pid)) {
			t.Errorf("demo left namespace %s behind", e.Name())
		}
	}
}
