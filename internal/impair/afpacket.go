package impair

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// packetConn is an AF_PACKET/SOCK_RAW socket bound to one interface, in the
// runtime's poller (Read blocks only its goroutine; Close unblocks it).
type packetConn struct {
	f     *os.File
	iface *net.Interface
}

// htons for the protocol argument of socket(2) and sockaddr_ll.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacket opens a packet socket on ifname in the CALLER's network namespace
// (so call it from a thread that has entered the namespace). With
// ignoreOutgoing the socket does not see frames sent on the interface (its own
// writes and the kernel's), which a bridge needs to avoid loops; a capture wants
// them.
func openPacket(ifname string, ignoreOutgoing bool, rcvbuf int) (*packetConn, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket on %s: %w", ifname, err)
	}
	fail := func(what string, err error) (*packetConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("AF_PACKET %s on %s: %w", what, ifname, err)
	}
	if ignoreOutgoing {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fail("PACKET_IGNORE_OUTGOING", err)
		}
	}
	if rcvbuf > 0 {
		// SO_RCVBUFFORCE (root) is not capped by net.core.rmem_max, a host
		// sysctl we must not change.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			return fail("SO_RCVBUFFORCE", err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	return &packetConn{f: f, iface: ifi}, nil
}

// Read reads one frame; a frame longer than b is truncated.
func (c *packetConn) Read(b []byte) (int, error) { return c.f.Read(b) }

// Write sends one complete Ethernet frame on the interface.
func (c *packetConn) Write(b []byte) (int, error) { return c.f.Write(b) }

// Close closes the socket, unblocking a pending Read.
func (c *packetConn) Close() error { return c.f.Close() }

// pending reports whether a frame waits in the socket's receive queue
// (SIOCINQ: the length of the next frame, for packet sockets).
func (c *packetConn) pending() bool {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); cerr != nil || err != nil {
		return false
	}
	return n > 0
}

// drops returns the kernel's count of frames dropped on this socket since the
// last call (its receive buffer was full), from PACKET_STATISTICS.
func (c *packetConn) drops() uint64 {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0
	}
	var st *unix.TpacketStats
	rc.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	})
	if err != nil || st == nil {
		return 0
	}
	return uint64(st.Drops)
}
