package integration

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpcryptd/tcpcryptd/control"
	"github.com/tcpcryptd/tcpcryptd/internal/impair"
	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

var (
	errConnRefused = syscall.ECONNREFUSED
	errConnReset   = syscall.ECONNRESET
)

// families are the two address families every scenario runs over.
var families = []struct {
	name           string
	svc            netip.Addr // service address behind the server's tcpcryptd
	server, laptop netip.Addr // the hosts' own addresses
}{
	{"IPv4", svcIPv4, topo.ServerIPv4, topo.LaptopIPv4},
	{"IPv6", svcIPv6, topo.ServerIPv6, topo.LaptopIPv6},
}

// TestEncryptedEndToEnd: laptop and server both run tcpcryptd. An ordinary
// HTTP client on the laptop reaches an ordinary HTTP backend on the server
// over tcpcrypt; both daemons report the same session ID through the control
// API and the CLI, the backend gets it in the PROXY v2 header (TC-13: it
// starts with the TEP byte of B's SYN-ACK), and the router sees ENO in the
// SYN, SYN-ACK and third segment (ENO-18) but never the plaintext (ENO-21).
func TestEncryptedEndToEnd(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	capt := routerCapture(t, tp)
	web := startWebBackend(t, tp.Server, true, fmt.Sprintf("127.0.0.1:%d", portWebBack), fmt.Sprintf("[::1]:%d", portWebBack))
	srv := startDaemon(t, tp.Server, "server", serverConfig)
	lap := startDaemon(t, tp.Laptop, "laptop", laptopConfig)

	sessionIDs := map[string][]byte{} // by family
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			body, local, remote := webGet(t, tp.Laptop, urlFor(fam.svc, portWeb, "/"+markerReq))
			if !strings.Contains(body, markerResp) || !strings.Contains(body, markerReq) {
				t.Fatalf("response %q", body)
			}

			// Laptop: the application's own socket addresses find the
			// connection; it is encrypted.
			lc := lap.connection(local, remote)
			if !lc.Encrypted || lc.SessionID == "" || lc.TEP == "" || lc.AEAD == "" || lc.Direction != control.Outbound {
				t.Fatalf("laptop connection not encrypted: %+v", lc)
			}
			lapID, err := lap.api.SessionID(local, remote)
			if err != nil {
				t.Fatalf("laptop /v1/sessid: %v", err)
			}

			// Server: the backend's socket addresses find the inbound leg;
			// the PROXY v2 header names the client and carries the ID.
			bc := web.last(t)
			if bc.err != nil {
				t.Fatalf("backend PROXY header: %v (raw %x)", bc.err, bc.raw)
			}
			if !bytes.HasPrefix(bc.raw, proxyV2Sig) {
				t.Fatalf("backend stream does not start with the PROXY v2 signature: %x", bc.raw)
			}
			if bc.hdr.Source.Addr() != fam.laptop || bc.hdr.Dest != netip.AddrPortFrom(fam.svc, portWeb) {
				t.Fatalf("PROXY header %v -> %v, want %v -> %v:%d", bc.hdr.Source, bc.hdr.Dest, fam.laptop, fam.svc, portWeb)
			}
			proxyID, ok := bc.hdr.SessionID()
			if !ok {
				t.Fatalf("PROXY header has no session ID TLV: %+v", bc.hdr)
			}
			sc := srv.connection(bc.local, bc.remote)
			if !sc.Encrypted || sc.Direction != control.Inbound || sc.TEP != lc.TEP || sc.AEAD != lc.AEAD {
				t.Fatalf("server connection %+v vs laptop %+v", sc, lc)
			}
			srvID, err := srv.api.SessionID(bc.local, bc.remote)
			if err != nil {
				t.Fatalf("server /v1/sessid: %v", err)
			}

			// The CLI, as a script would use it, on both hosts.
			lapCLI := runCLI(t, tp.Laptop, "sessid", "--control-socket", lap.socket, "--local", local.String(), "--remote", remote.String())
			srvCLI := runCLI(t, tp.Server, "sessid", "--control-socket", srv.socket, "--local", bc.local.String(), "--remote", bc.remote.String())
			if lapCLI.code != 0 || srvCLI.code != 0 {
				t.Fatalf("sessid CLI: laptop %v\nserver %v", lapCLI, srvCLI)
			}

			ids := map[string]string{
				"laptop API":   hex.EncodeToString(lapID),
				"laptop table": lc.SessionID,
				"laptop CLI":   strings.TrimSpace(lapCLI.stdout),
				"server API":   hex.EncodeToString(srvID),
				"server table": sc.SessionID,
				"server CLI":   strings.TrimSpace(srvCLI.stdout),
				"PROXY TLV":    hex.EncodeToString(proxyID),
			}
			for where, id := range ids {
				if id != ids["laptop API"] {
					t.Fatalf("session IDs differ (%s): %v", where, ids)
				}
			}
			sessionIDs[fam.name] = lapID
			t.Logf("session ID %s (%s, %s) on both sides", ids["laptop API"], lc.TEP, lc.AEAD)
		})
	}

	// The wire, as the router saw it.
	segs := impair.Segments(capt.Stop())
	for _, fam := range families {
		dst := netip.AddrPortFrom(fam.svc, portWeb)
		syn, synack := handshake(t, segs, dst)
		if _, ok := syn.Option(impair.OptENO); !ok {
			t.Errorf("%s: SYN without ENO: %s", fam.name, impair.Describe(syn))
		}
		if o, ok := synack.Option(impair.OptENO); !ok || len(o.Data) == 0 {
			t.Errorf("%s: SYN-ACK without ENO: %s", fam.name, impair.Describe(synack))
		} else if id := sessionIDs[fam.name]; len(id) == 0 || id[0] != o.Data[len(o.Data)-1] {
			// TC-13 (RFC 8548 §3.4): the session ID starts with B's TEP
			// byte, the one B's SYN-ACK chose.
			t.Errorf("%s: session ID %x does not start with the SYN-ACK's TEP byte %#x", fam.name, id, o.Data[len(o.Data)-1])
		}
		// ENO-18: the active opener puts ENO in the third segment too.
		if ack := firstACK(segs, syn); ack == nil {
			t.Errorf("%s: no third segment captured", fam.name)
		} else if _, ok := ack.Option(impair.OptENO); !ok {
			t.Errorf("%s: third segment without ENO: %s", fam.name, impair.Describe(ack))
		}
		t.Logf("%s SYN:     %s", fam.name, impair.Describe(syn))
		t.Logf("%s SYN-ACK: %s", fam.name, impair.Describe(synack))
		streams := streamsTo(segs, dst)
		if len(streams) < 2 {
			t.Fatalf("%s: capture has %d stream directions to %v", fam.name, len(streams), dst)
		}
		for k, b := range streams {
			if len(b) == 0 {
				t.Errorf("%s: %v carried no bytes", fam.name, k)
			}
			for _, m := range []string{markerReq, markerResp, "HTTP/1.1", "GET /"} {
				if bytes.Contains(b, []byte(m)) {
					t.Errorf("%s: plaintext %q on the wire in %v", fam.name, m, k)
				}
			}
		}
	}
}

// TestServerWithoutTcpcryptd: the laptop's tcpcryptd offers ENO to a server
// that does not answer it; the connection is plain, works, and the laptop
// records why. The capture shows the plaintext (which also proves the
// capture would have seen it in TestEncryptedEndToEnd).
func TestServerWithoutTcpcryptd(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	capt := routerCapture(t, tp)
	startWebBackend(t, tp.Server, false, fmt.Sprintf("[::]:%d", portPlain))
	lap := startDaemon(t, tp.Laptop, "laptop", laptopConfig)

	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			body, local, remote := webGet(t, tp.Laptop, urlFor(fam.server, portPlain, "/"+markerReq))
			if !strings.Contains(body, markerResp) {
				t.Fatalf("response %q", body)
			}
			lc := lap.connection(local, remote)
			if lc.Encrypted || lc.SessionID != "" {
				t.Fatalf("connection to a plain server reported encrypted: %+v", lc)
			}
			if lc.Fallback == "" {
				t.Fatalf("plain connection without a recorded reason: %+v", lc)
			}
			t.Logf("fallback reason: %s", lc.Fallback)
			if _, err := lap.api.SessionID(local, remote); !errors.Is(err, control.ErrNotEncrypted) {
				t.Fatalf("/v1/sessid of a plain connection: %v, want not-encrypted", err)
			}
			r := runCLI(t, tp.Laptop, "sessid", "--control-socket", lap.socket, "--local", local.String(), "--remote", remote.String())
			if r.code != 6 || r.stdout != "" { // exit 6: not encrypted (tcpcryptd --help)
				t.Fatalf("sessid of a plain connection: %v, want exit 6", r)
			}
		})
	}

	segs := impair.Segments(capt.Stop())
	for _, fam := range families {
		dst := netip.AddrPortFrom(fam.server, portPlain)
		syn, synack := handshake(t, segs, dst)
		if _, ok := syn.Option(impair.OptENO); !ok {
			t.Errorf("%s: laptop's SYN without ENO: %s", fam.name, impair.Describe(syn))
		}
		if _, ok := synack.Option(impair.OptENO); ok {
			t.Errorf("%s: plain server's SYN-ACK with ENO: %s", fam.name, impair.Describe(synack))
		}
		var sawReq, sawResp bool
		for _, b := range streamsTo(segs, dst) {
			sawReq = sawReq || bytes.Contains(b, []byte(markerReq))
			sawResp = sawResp || bytes.Contains(b, []byte(markerResp))
		}
		if !sawReq || !sawResp {
			t.Errorf("%s: plain connection's markers not in the capture (request %v, response %v)", fam.name, sawReq, sawResp)
		}
	}
}

// TestLaptopWithoutTcpcryptd: a plain client reaches a service behind the
// server's tcpcryptd; plain TCP, working, with a PROXY header that names the
// client and carries no session ID.
func TestLaptopWithoutTcpcryptd(t *testing.T) {
	requireDaemon(t)
	tp := newTopo(t, false)
	capt := routerCapture(t, tp)
	web := startWebBackend(t, tp.Server, true, fmt.Sprintf("127.0.0.1:%d", portWebBack), fmt.Sprintf("[::1]:%d", portWebBack))
	srv := startDaemon(t, tp.Server, "server", serverConfig)

	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			body, local, _ := webGet(t, tp.Laptop, urlFor(fam.svc, portWeb, "/"+markerReq))
			if !strings.Contains(body, markerResp) {
				t.Fatalf("response %q", body)
			}
			bc := web.last(t)
			if bc.err != nil {
				t.Fatalf("PROXY header: %v", bc.err)
			}
			if bc.hdr.Source != local || bc.hdr.Dest != netip.AddrPortFrom(fam.svc, portWeb) {
				t.Fatalf("PROXY header %v -> %v, want %v -> %v:%d", bc.hdr.Source, bc.hdr.Dest, local, fam.svc, portWeb)
			}
			if id, ok := bc.hdr.SessionID(); ok {
				t.Fatalf("plain connection's PROXY header carries session ID %x", id)
			}
			sc := srv.connection(bc.local, bc.remote)
			if sc.Encrypted || sc.Fallback == "" {
				t.Fatalf("server connection: %+v", sc)
			}
			t.Logf("fallback reason: %s", sc.Fallback)
		})
	}
	segs := impair.Segments(capt.Stop())
	for _, fam := range families {
		syn, synack := handshake(t, segs, netip.AddrPortFrom(fam.svc, portWeb))
		if _, ok := syn.Option(impair.OptENO); ok {
			t.Errorf("%s: plain laptop's SYN has ENO", fam.name)
		}
		// ENO-22 (RFC 8547 §4.6): a passive opener sends no ENO, not even a
		// vacuous one, unless the SYN carried ENO.
		if _, ok := synack.Option(impair.OptENO); ok {
			t.Errorf("%s: SYN-ACK answers ENO that was not offered: %s", fam.name, impair.Describe(synack))
		}
	}
}
