package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/stack/wiretest"
)

// stackPair is a client stack (ENO or not) and a server stack joined by an
// in-memory wire.
func stackPair(t *testing.T, clientENO bool) (client, server *stack.Stack) {
	t.Helper()
	mk := func(addrs []string, noENO bool) (*stack.Stack, *channel.Endpoint) {
		ep := channel.New(1024, 1500, "")
		o := stack.Options{Link: ep, NoENO: noENO}
		for _, a := range addrs {
			o.Addresses = append(o.Addresses, netip.MustParsePrefix(a))
		}
		st, err := stack.New(o)
		if err != nil {
			t.Fatal(err)
		}
		return st, ep
	}
	client, ea := mk([]string{"10.0.0.1/24", "fd00::1/64"}, !clientENO)
	server, eb := mk([]string{"10.0.0.2/24", "fd00::2/64"}, false)
	hub, _, _ := wiretest.Pair(ea, eb)
	t.Cleanup(func() {
		client.Close()
		server.Close()
		hub.Close()
	})
	return client, server
}

// backendSeen is what a backend received: the PROXY header (if any) and
// the body.
type backendSeen struct {
	hdr  *proxyproto.Header
	body []byte
	err  error
}

// runBackend accepts one connection; with proxy it reads a PROXY header
// first. It echoes the body upper-cased.
func runBackend(t *testing.T, proxy bool) (string, <-chan backendSeen) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	seen := make(chan backendSeen, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			seen <- backendSeen{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		var s backendSeen
		if proxy {
			if s.hdr, s.err = proxyproto.ReadHeader(r); s.err != nil {
				seen <- s
				return
			}
		}
		s.body, s.err = io.ReadAll(r)
		c.Write(bytes.ToUpper(s.body))
		c.(*net.TCPConn).CloseWrite()
		seen <- s
	}()
	return l.Addr().String(), seen
}

// The PROXY v2 header names the client and the service and carries the
// session ID of an encrypted connection; a plain connection's header has
// no session ID TLV; without proxy_protocol the backend sees only data.
func TestBackendProxyHeader(t *testing.T) {
	tests := []struct {
		name      string
		clientENO bool
		proxy     bool
		v6        bool
	}{
		{"encrypted ipv4", true, true, false},
		{"encrypted ipv6", true, true, true},
		{"plain ipv4", false, true, false},
		{"no proxy protocol", true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := stackPair(t, tc.clientENO)
			backend, seen := runBackend(t, tc.proxy)
			svcAddr := netip.MustParseAddrPort("10.0.0.2:443")
			if tc.v6 {
				svcAddr = netip.MustParseAddrPort("[fd00::2]:443")
			}
			svc := config.Service{Name: "web", Listen: svcAddr, Backend: backend, ProxyProtocol: tc.proxy, Policy: config.ModeOpportunistic}
			sv, err := server.Serve(svcAddr.Addr(), svcAddr.Port(), servicePolicy(svc), backendDialer(svc, server.CheckBackend), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, netip.AddrPort{}, svcAddr, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Encrypted() != tc.clientENO {
				t.Fatalf("encrypted %v, want %v", c.Encrypted(), tc.clientENO)
			}
			c.Write([]byte("hello backend"))
			c.CloseWrite()
			resp, err := io.ReadAll(c)
			if err != nil || string(resp) != "HELLO BACKEND" {
				t.Fatalf("response %q %v", resp, err)
			}
			s := <-seen
			if s.err != nil || string(s.body) != "hello backend" {
				t.Fatalf("backend: %v body %q", s.err, s.body)
			}
			if !tc.proxy {
				if s.hdr != nil {
					t.Fatal("header without proxy_protocol")
				}
				return
			}
			clientAddr := addrPortOf(c.LocalAddr())
			if s.hdr.Command != proxyproto.CommandProxy || s.hdr.Source != clientAddr || s.hdr.Dest != svcAddr {
				t.Fatalf("header %v -> %v (%v), want %v -> %v", s.hdr.Source, s.hdr.Dest, s.hdr.Command, clientAddr, svcAddr)
			}
			id, ok := s.hdr.SessionID()
			if !tc.clientENO {
				if ok {
					t.Fatalf("plain connection's header carries a session ID %x", id)
				}
				return
			}
			want, _ := c.SessionID()
			if !ok || !bytes.Equal(id, want) || len(id) != 33 {
				t.Fatalf("session ID TLV %x, client's %x", id, want)
			}
		})
	}
}
