package topo

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// disableOffloads turns off transmit checksum offload, TSO and GSO on the
// namespace's interface ifname (the `ethtool -K ifname tx off tso off gso off`
// of a host without ethtool). Then every frame that leaves it is a single
// MTU-sized segment with a complete checksum, which is what a userspace bridge
// reading frames with AF_PACKET must see: with offloads a veth hands over 64 KiB
// super-packets whose checksums are only partial.
func (n *NS) disableOffloads(ifname string) error {
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		for _, cmd := range []uint32{unix.ETHTOOL_STXCSUM, unix.ETHTOOL_STSO, unix.ETHTOOL_SGSO} {
			if err := ethtoolSet(fd, ifname, cmd, 0); err != nil {
				return fmt.Errorf("disable offload (ethtool cmd %#x) on %s in %s: %w", cmd, ifname, n.Name, err)
			}
		}
		return nil
	})
}

// ethtoolValue is struct ethtool_value from <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with the ifr_data member of the union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtoolSet(fd int, ifname string, cmd, value uint32) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	v := ethtoolValue{cmd: cmd, data: value}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return errno
	}
	return nil
}
