package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit (linux/capability.h).
const capNetAdmin = 12

// preflight names the files the dependency checks read, so tests can
// point them elsewhere.
type preflight struct {
	procStatus  string // /proc/self/status
	tunDevice   string // /dev/net/tun
	ifInet6     string // /proc/net/if_inet6
	disableIPv6 string // /proc/sys/net/ipv6/conf/all/disable_ipv6
}

var hostPreflight = preflight{
	procStatus:  "/proc/self/status",
	tunDevice:   "/dev/net/tun",
	ifInet6:     "/proc/net/if_inet6",
	disableIPv6: "/proc/sys/net/ipv6/conf/all/disable_ipv6",
}

// check verifies, before anything on the host is changed, what 'up' and
// 'down' need: CAP_NET_ADMIN (for the TUN device, addresses, routes, rules,
// nftables and sysctls), the TUN driver, and IPv6 (the device always gets
// an IPv6 address). Every error says what to do.
func (p preflight) check(needTUN bool) error {
	var errs []error
	if ok, err := p.hasCap(capNetAdmin); err != nil {
		errs = append(errs, fmt.Errorf("cannot read capabilities: %w", err))
	} else if !ok {
		errs = append(errs, errors.New("missing CAP_NET_ADMIN: run as root (sudo tcpcryptd ...) or grant the capability (the systemd unit does)"))
	}
	if needTUN {
		if err := p.checkTUN(); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(p.ifInet6); err != nil {
		errs = append(errs, errors.New("IPv6 is not available in this kernel or network namespace (no /proc/net/if_inet6); boot without ipv6.disable=1"))
	} else if b, err := os.ReadFile(p.disableIPv6); err == nil && strings.TrimSpace(string(b)) != "0" {
		errs = append(errs, errors.New("IPv6 is disabled (net.ipv6.conf.all.disable_ipv6=1); enable it: sysctl -w net.ipv6.conf.all.disable_ipv6=0"))
	}
	if len(errs) > 0 {
		return withCode(exitEnvironment, errors.Join(errs...))
	}
	return nil
}

func (p preflight) checkTUN() error {
	fi, err := os.Stat(p.tunDevice)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist: load the TUN driver (modprobe tun); in a container, pass the device in (e.g. --device /dev/net/tun)", p.tunDevice)
	case err != nil:
		return fmt.Errorf("%s: %w", p.tunDevice, err)
	case fi.Mode()&fs.ModeCharDevice == 0:
		return fmt.Errorf("%s is not a character device", p.tunDevice)
	}
	f, err := os.OpenFile(p.tunDevice, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w (a systemd DevicePolicy/DeviceAllow or container policy may block it)", p.tunDevice, err)
	}
	f.Close()
	return nil
}

// hasCap reports whether capability bit n is in the effective set.
func (p preflight) hasCap(n uint) (bool, error) {
	f, err := os.Open(p.procStatus)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("CapEff %q: %w", v, err)
		}
		return mask&(1<<n) != 0, nil
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, fmt.Errorf("no CapEff line in %s", p.procStatus)
}
