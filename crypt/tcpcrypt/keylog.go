package tcpcrypt

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// Key log format (Config.KeyLog), one line per secret, lowercase hex, in the
// spirit of the NSS key log that crypto/tls writes to KeyLogWriter:
//
//	TCPCRYPT_ES <session-id> <ES>      fresh sessions: the ephemeral secret
//	TCPCRYPT_SS <session-id> <ss[i]>   every session: its session secret
//
// The session ID (33 bytes, RFC 8548 §3.4) identifies the connection in a
// capture; ss[i] alone lets a decoder derive every master and traffic key
// of the connection (with sn[i], which a resumed session carries in its
// SYN options). Each line is written with a single Write call.
const (
	keyLogES = "TCPCRYPT_ES"
	keyLogSS = "TCPCRYPT_SS"
)

// writeKeyLog writes one key log line, if a key log is configured. Errors
// writing the log are ignored: the log is a debugging aid and must not
// break connections.
func (c *Config) writeKeyLog(label string, sessionID, secret []byte) {
	if c.KeyLog == nil {
		return
	}
	line := make([]byte, 0, len(label)+2+2*(len(sessionID)+len(secret))+1)
	line = append(line, label...)
	line = append(line, ' ')
	line = hex.AppendEncode(line, sessionID)
	line = append(line, ' ')
	line = hex.AppendEncode(line, secret)
	line = append(line, '\n')
	s := c.state()
	s.keyLogMu.Lock()
	_, _ = c.KeyLog.Write(line)
	s.keyLogMu.Unlock()
	clear(line)
}

// ErrKeyLogUnsafe is matched (errors.Is) by OpenKeyLog's refusals of a file
// others could read or redirect.
var ErrKeyLogUnsafe = errors.New("unsafe key log file")

// OpenKeyLog opens the key log at path for appending, creating it with
// mode 0600. Anyone who reads the file can decrypt every logged connection,
// so it refuses, with an error naming the file and the fix:
//
//   - a symbolic link as the last path component (O_NOFOLLOW): whoever can
//     write the directory could point it at a file others can read;
//   - anything but a regular file (a FIFO is opened without blocking, then
//     refused);
//   - a file owned by another user, or with any permission for group or
//     others (an existing 0644 file is refused, not used as it is).
//
// The checks are made on the opened descriptor, so a rename between check
// and use changes nothing.
func OpenKeyLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("key log %s: %w: it is a symbolic link, which is not followed; give the path of the file itself", path, ErrKeyLogUnsafe)
		}
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
			// A FIFO without a reader fails with ENXIO: say what it is.
			return nil, notRegular(path, fi.Mode())
		}
		return nil, fmt.Errorf("key log: %w", err)
	}
	if err := checkKeyLog(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkKeyLog checks the opened key log (see OpenKeyLog).
func checkKeyLog(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("key log %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return notRegular(path, fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("key log %s: %w: owned by uid %d, not by us (uid %d); remove it, or chown it to uid %d",
			path, ErrKeyLogUnsafe, st.Uid, os.Geteuid(), os.Geteuid())
	}
	if perm := fi.Mode().Perm(); perm&^fs.FileMode(0o600) != 0 {
		return fmt.Errorf("key log %s: %w: mode %04o lets others read session secrets; run chmod 600 %s (or remove it: it is created with mode 0600)",
			path, ErrKeyLogUnsafe, perm, path)
	}
	return nil
}

func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("key log %s: %w: it is not a regular file (%v); give the path of a regular file", path, ErrKeyLogUnsafe, m.Type())
}
