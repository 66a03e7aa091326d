package stack

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// gVisor reports failures as tcpip.Error values, which mean nothing outside
// this package. At the package's edge each becomes a *NetError: gVisor's
// text (so logs read as before) unwrapping to the errno the kernel would
// have returned, so that callers test the cause as with the kernel's
// sockets: errors.Is(err, syscall.ECONNREFUSED), syscall.ETIMEDOUT,
// syscall.ECONNRESET, and so on.
//
// Timeouts: gVisor's own timeout (retransmissions or keepalive probes
// unanswered, like the kernel's ETIMEDOUT) is syscall.ETIMEDOUT. A dial
// abandoned because its context ended returns the context's error
// (context.DeadlineExceeded or context.Canceled), as net.Dialer does; a
// Read or Write past a deadline set with SetDeadline returns an error for
// which errors.Is(err, os.ErrDeadlineExceeded) holds, as net.Conn does. All
// three report Timeout() == true through net.Error where they are one.

// NetError is a gVisor network error seen from outside the stack.
type NetError struct {
	Text  string        // gVisor's description
	Errno syscall.Errno // the kernel's errno for the same condition; 0 if none
}

func (e *NetError) Error() string { return e.Text }

// Unwrap returns the errno, so errors.Is(err, syscall.ECONNREFUSED) works.
func (e *NetError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Timeout reports whether the peer stopped answering (net.Error).
func (e *NetError) Timeout() bool { return e.Errno == syscall.ETIMEDOUT }

// Temporary implements the deprecated half of net.Error; nothing here is.
func (e *NetError) Temporary() bool { return false }

var _ net.Error = (*NetError)(nil)

// errnoOf is the errno Linux returns for the condition terr names, as a
// socket would; 0 for conditions with none worth testing for.
func errnoOf(terr tcpip.Error) syscall.Errno {
	switch terr.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return syscall.ENETUNREACH
	case *tcpip.ErrHostDown:
		return syscall.EHOSTDOWN
	case *tcpip.ErrPortInUse, *tcpip.ErrDuplicateAddress:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return syscall.EAGAIN // as Linux's connect(2) without a free ephemeral port
	case *tcpip.ErrClosedForSend, *tcpip.ErrAborted:
		return syscall.EPIPE
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrAlreadyConnected:
		return syscall.EISCONN
	case *tcpip.ErrAlreadyConnecting:
		return syscall.EALREADY
	case *tcpip.ErrConnectStarted:
		return syscall.EINPROGRESS
	case *tcpip.ErrWouldBlock:
		return syscall.EWOULDBLOCK
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrAddressFamilyNotSupported:
		return syscall.EAFNOSUPPORT
	case *tcpip.ErrNotPermitted:
		return syscall.EPERM
	case *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue:
		return syscall.EINVAL
	}
	return 0
}

// netErr maps terr at the edge of the package (see NetError).
func netErr(terr tcpip.Error) error {
	if terr == nil {
		return nil
	}
	return &NetError{Text: terr.String(), Errno: errnoOf(terr)}
}

// streamErrnos maps the text of the tcpip errors that gonet's net.Conn
// adapter flattens with errors.New(terr.String()) back to their errnos.
// Built from the error values themselves, so it follows gVisor's wording.
var streamErrnos = func() map[string]syscall.Errno {
	m := map[string]syscall.Errno{}
	for _, terr := range []tcpip.Error{
		&tcpip.ErrConnectionRefused{}, &tcpip.ErrTimeout{}, &tcpip.ErrConnectionReset{},
		&tcpip.ErrConnectionAborted{}, &tcpip.ErrHostUnreachable{}, &tcpip.ErrNetworkUnreachable{},
		&tcpip.ErrNoNet{}, &tcpip.ErrHostDown{}, &tcpip.ErrClosedForSend{}, &tcpip.ErrAborted{},
		&tcpip.ErrNotConnected{}, &tcpip.ErrInvalidEndpointState{}, &tcpip.ErrNoBufferSpace{},
	} {
		m[terr.String()] = errnoOf(terr)
	}
	return m
}()

// streamErr maps the error of a Read or Write through gonet (see
// streamErrnos). Only the error path pays for it.
func streamErr(err error) error {
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || oe.Err == nil {
		return err
	}
	if _, done := oe.Err.(*NetError); done {
		return err
	}
	text := oe.Err.Error()
	if ne, ok := oe.Err.(net.Error); ok && ne.Timeout() && text == os.ErrDeadlineExceeded.Error() {
		// gonet's own deadline error: make it the one net.Conn returns.
		oe.Err = os.ErrDeadlineExceeded
		return err
	}
	if errno, ok := streamErrnos[text]; ok {
		oe.Err = &NetError{Text: text, Errno: errno}
	}
	return err
}

// ctxErr is the error of a dial or handshake abandoned because ctx ended:
// the context's error, which a deadline also makes os.ErrDeadlineExceeded
// (net.Dialer's answer) and a net.Error with Timeout.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != context.DeadlineExceeded {
		return err
	}
	return deadlineErr{}
}

// deadlineErr is a context's deadline, seen both ways (see ctxErr).
type deadlineErr struct{}

func (deadlineErr) Error() string   { return context.DeadlineExceeded.Error() }
func (deadlineErr) Unwrap() error   { return context.DeadlineExceeded }
func (deadlineErr) Timeout() bool   { return true }
func (deadlineErr) Temporary() bool { return true }

func (deadlineErr) Is(target error) bool { return target == os.ErrDeadlineExceeded }
