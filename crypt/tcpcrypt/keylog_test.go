package tcpcrypt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenKeyLogCreates0600: a new key log is created with mode 0600 (even
// under a permissive umask), appended to, and opened again.
func TestOpenKeyLogCreates0600(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "keys.log")
	for _, line := range []string{"one\n", "two\n"} {
		f, err := OpenKeyLog(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode %04o, want 0600", perm)
	}
	if b, _ := os.ReadFile(path); string(b) != "one\ntwo\n" {
		t.Fatalf("content %q", b)
	}
}

// TestOpenKeyLogRefusesUnsafe: an existing file others can read, a symbolic
// link (even to a 0600 file of ours) and a FIFO are refused with an error
// naming the file and the fix; nothing is written, and the file keeps its
// mode (the old code opened a 0644 file as it was).
func TestOpenKeyLogRefusesUnsafe(t *testing.T) {
	dir := t.TempDir()
	wide := filepath.Join(dir, "wide.log")
	if err := os.WriteFile(wide, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(wide, 0o644) // whatever the umask
	target := filepath.Join(dir, "target.log")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want string // part of the error: the fix
	}{
		{wide, "chmod 600 " + wide},
		{link, "symbolic link"},
		{fifo, "not a regular file"},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := OpenKeyLog(tc.path)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: OpenKeyLog blocked", tc.path)
		}
		if !errors.Is(err, ErrKeyLogUnsafe) || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrKeyLogUnsafe naming the file and %q", tc.path, err, tc.want)
		}
	}
	if fi, _ := os.Stat(wide); fi.Mode().Perm() != 0o644 || fi.Size() != 0 {
		t.Errorf("refused file changed: mode %04o, %d bytes", fi.Mode().Perm(), fi.Size())
	}
	if fi, _ := os.Stat(target); fi.Size() != 0 {
		t.Errorf("the link's target was written")
	}
}

// TestOpenKeyLogRefusesOthersFile: a file owned by another user is refused
// (root only: it needs chown).
func TestOpenKeyLogRefusesOthersFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path := filepath.Join(t.TempDir(), "theirs.log")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Skipf("chown: %v", err)
	}
	f, err := OpenKeyLog(path)
	if err == nil {
		f.Close()
	}
	if !errors.Is(err, ErrKeyLogUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("error %v, want a refusal naming the owner", err)
	}
}
