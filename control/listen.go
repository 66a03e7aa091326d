package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// ErrInUse is matched by the error of Listen when another process answers
// on the socket path.
var ErrInUse = errors.New("control socket in use")

// ListenOptions say where and how the control socket is created.
type ListenOptions struct {
	// Path of the socket; its directory is created (0755) if missing.
	Path string
	// Mode of the socket file (0: 0600).
	Mode os.FileMode
	// Group, if set, owns the socket, so that its members can use it with a
	// mode such as 0660.
	Group string
	// DialTimeout bounds the probe of an existing socket (0: one second).
	DialTimeout time.Duration
}

// Listen creates the control socket. An existing socket file at Path is
// replaced only if nobody answers on it (a daemon that crashed left it);
// if someone does, the error matches ErrInUse and nothing is changed. A
// file that is not a socket is never removed.
//
// The socket is bound under a temporary name in the same directory, given
// its mode and group, and only then renamed to Path, so it is never
// reachable with looser permissions. Closing the listener removes Path if
// it is still our socket.
func Listen(o ListenOptions) (net.Listener, error) {
	if o.Path == "" || !filepath.IsAbs(o.Path) {
		return nil, fmt.Errorf("control socket: path %q must be absolute", o.Path)
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	gid := -1
	if o.Group != "" {
		g, err := user.LookupGroup(o.Group)
		if err != nil {
			return nil, fmt.Errorf("control socket: group %q: %w", o.Group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("control socket: group %q has gid %q: %w", o.Group, g.Gid, err)
		}
	}
	dir := filepath.Dir(o.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("control socket: create directory: %w", err)
	}
	if err := clearStale(o.Path, o.DialTimeout); err != nil {
		return nil, err
	}

	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", filepath.Base(o.Path), os.Getpid()))
	_ = os.Remove(tmp) // our own leftover, if any
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: listen: %w", err)
	}
	ul.SetUnlinkOnClose(false) // we remove Path ourselves, see socketListener.Close
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(tmp, o.Mode); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, o.Path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(o.Path)
	if err != nil {
		return fail(err)
	}
	return &socketListener{UnixListener: ul, path: o.Path, fi: fi}, nil
}

// clearStale removes a socket at path that nobody answers on.
func clearStale(path string, timeout time.Duration) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket: %s exists and is not a socket; remove it or set control.socket", path)
	}
	c, err := net.DialTimeout("unix", path, timeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket: %w: %s answers (is another tcpcryptd running?)", ErrInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return nil
}

// socketListener removes its socket file on Close, unless another process
// has replaced it meanwhile.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

// Close implements net.Listener.
func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return err
}
