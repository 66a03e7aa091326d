package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/tcpcryptd/tcpcryptd/config"
	"github.com/tcpcryptd/tcpcryptd/proxyproto"
	"github.com/tcpcryptd/tcpcryptd/stack"
	"github.com/tcpcryptd/tcpcryptd/tun/netcfg"
	"golang.org/x/sys/unix"
)

// backendDialer returns the stack.BackendDialer of a service: a kernel
// TCP connection to svc.Backend and, with proxy_protocol on, a PROXY v2
// header (package proxyproto) written before any relayed byte: TCP from
// the client's address and port to the service's, plus the session ID in
// a proxyproto.TypeSessionID (0xE7) TLV when the connection is encrypted.
//
// check (stack.Stack.CheckBackend) sees every address the backend's name
// resolves to before the socket connects to it, and refuses one routed
// into the device: that connection would come back to the daemon, to this
// service, whose next dial would do the same. Validation refuses such an
// address literal; a name is only known at dial time.
func backendDialer(svc config.Service, check func(netip.AddrPort) error) stack.BackendDialer {
	return func(ctx context.Context, c *stack.Conn) (net.Conn, error) {
		d := net.Dialer{ControlContext: func(_ context.Context, _, address string, rc syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				// The dialer hands over the resolved IP:port; refuse
				// what cannot be checked.
				return fmt.Errorf("backend address %q: %w", address, err)
			}
			if err := check(ap); err != nil {
				return err
			}
			return markOwn(rc)
		}}
		bc, err := d.DialContext(ctx, "tcp", svc.Backend)
		if err != nil {
			return nil, err
		}
		if !svc.ProxyProtocol {
			return bc, nil
		}
		hdr, err := proxyHeader(c)
		if err == nil {
			err = writeAll(ctx, bc, hdr)
		}
		if err != nil {
			bc.Close()
			return nil, fmt.Errorf("PROXY header to %s: %w", svc.Backend, err)
		}
		return bc, nil
	}
}

// markOwn puts netcfg.OwnMark on a socket of the daemon's own: the capture
// rules skip packets that carry it, so a backend inside an include prefix
// (or anywhere, with include = everything) is dialed directly, never back
// into the device (docs/capture.md). Setting SO_MARK needs CAP_NET_ADMIN,
// which the daemon has; without it the dial fails rather than risk a loop.
func markOwn(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, netcfg.OwnMark)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_MARK on a backend socket: %w", serr)
	}
	return nil
}

// proxyHeader encodes the PROXY v2 header for an inbound connection.
func proxyHeader(c *stack.Conn) ([]byte, error) {
	client, service := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
	sid, err := c.SessionID()
	if err != nil {
		sid = nil // plain connection: no session ID TLV
	}
	return proxyproto.ForConnection(client, service, sid).MarshalBinary()
}

// writeAll writes b within ctx's deadline.
func writeAll(ctx context.Context, c net.Conn, b []byte) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetWriteDeadline(dl); err != nil {
			return err
		}
		defer c.SetWriteDeadline(time.Time{})
	}
	_, err := c.Write(b)
	return err
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok && ta != nil {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
