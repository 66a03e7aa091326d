package link

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// tunOffloads are the offloads we accept from the kernel (TUNSETOFFLOAD): partial
// checksums and TCP segmentation in both IP versions. wireguard-go's CreateTUN also
// claims UDP segmentation (USO4/6) where the kernel has it; we take that back, because
// gVisor cannot take a UDP super-datagram and splitting it here would be software work
// the kernel does as well when we do not claim it. TSO_ECN is not claimed either, so
// segments with CWR are never merged by the kernel.
const tunOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// Open creates (or attaches to) the TUN device name in the calling thread's network
// namespace with wireguard-go's tun.CreateTUN (IFF_TUN|IFF_NO_PI|IFF_VNET_HDR, MTU
// opts.MTU), sets our offloads, and returns an Endpoint that reads and writes its
// descriptor directly; the tun.Device's own Read/Write are never used. Close closes
// the device, which removes it unless it is persistent.
func Open(name string, opts Options) (*Endpoint, error) {
	if opts.MTU < 68 || opts.MTU > GSOMaxSize {
		return nil, fmt.Errorf("link: MTU %d out of range 68..%d", opts.MTU, GSOMaxSize)
	}
	dev, err := wgtun.CreateTUN(name, int(opts.MTU))
	if err != nil {
		return nil, fmt.Errorf("link: create TUN %q: %w", name, err)
	}
	f := dev.File()
	// Not f.Fd(): it would switch the descriptor to blocking mode, out of the poller.
	if err := setOffloads(f, tunOffloads); err != nil {
		dev.Close()
		return nil, fmt.Errorf("link: TUN %q: %w", name, err)
	}
	e, err := NewFromFile(f, opts)
	if err != nil {
		dev.Close()
		return nil, err
	}
	if n, err := dev.Name(); err == nil {
		e.name = n
	}
	e.closeDevice = dev.Close
	// The device's status listeners block on an unbuffered-after-5 events channel;
	// drain it until Close closes it. We learn link state from netlink elsewhere.
	e.background.Add(1)
	go func() {
		defer e.background.Done()
		for range dev.Events() {
		}
	}()
	e.log.Debug("TUN device open", "dev", e.name, "mtu", opts.MTU)
	return e, nil
}

// setOffloads replaces the TUN's offload flags and checks that the descriptor really
// carries virtio headers.
func setOffloads(f *os.File, flags int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = setOffloadsFD(int(fd), flags) }); err != nil {
		return err
	}
	return opErr
}

func setOffloadsFD(fd int, flags int) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("TUNGETIFF: %w", err)
	}
	if ifr.Uint16()&unix.IFF_VNET_HDR == 0 {
		return fmt.Errorf("descriptor lacks IFF_VNET_HDR")
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags); err != nil {
		return fmt.Errorf("TUNSETOFFLOAD %#x: %w", flags, err)
	}
	return nil
}
