// Package link is the gVisor link endpoint between a Linux TUN device and the
// netstack, built for throughput (DESIGN.md "Performance shape",
// notes/netstack-on-tun.md §3).
//
// The device is opened with IFF_VNET_HDR (wireguard-go's tun.CreateTUN) and the
// endpoint reads and writes its file descriptor directly, each packet prefixed by a
// virtio_net_hdr:
//
//   - Outbound, gVisor TCP runs in host-GSO mode: it hands over segments of up to
//     64 KiB with only a pseudo-header checksum, and one write(2) passes each to the
//     kernel with NEEDS_CSUM and, when longer than the MSS, a TCP GSO type, so the
//     kernel segments and checksums (txHeader).
//   - Inbound, the kernel's TSO super-packets are delivered to gVisor unsplit, partial
//     checksums are trusted or completed as gVisor needs (inspectInbound), bursts of
//     ordinary packets pass through gVisor's GRO, and the 64 KiB read buffer is only
//     given away when it holds a super-packet.
//
// The packet functions (virtio header codec, inspectInbound, txHeader, checksum
// completion) are pure and tested without a device; the I/O around them is thin
// (reader.go, writer.go).
package link

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Tunables and limits.
const (
	// GSOMaxSize is the largest segment gVisor may hand us: the IPv4 total-length
	// limit, which the kernel's virtio GSO path also obeys.
	GSOMaxSize = 65535

	// DefaultRXBurst is how many packets the reader takes per wake-up before it
	// flushes GRO; a read that would block ends a burst earlier.
	DefaultRXBurst = 64

	// rxBufSize is the read buffer: gVisor's largest pooled chunk (buffer.MaxChunkSize),
	// enough for any packet of a TUN whose GSO limit is 64 KiB. The virtio header is
	// read into a separate array (readv), so the chunk holds exactly the IP packet.
	rxBufSize = 1 << 16

	// rxCopyMax: packets up to this size are copied into a right-sized pooled chunk
	// and the read buffer is reused; larger ones (super-packets) take the read buffer
	// itself, so a super-packet is never copied and a small packet never pins 64 KiB
	// in a receive queue.
	rxCopyMax = 1 << 15
	// rxHeaderSplit is how many leading bytes of an inbound packet get a
	// buffer chunk of their own: room for the largest IPv4 header and the
	// largest TCP header (the ENO shim pulls up that much). gVisor's IPv4
	// input holds a reference to the network header's chunk while it pulls
	// the header up again, and a pull-up of a shared chunk copies all of it:
	// with the payload in the same chunk, that was a copy of every packet
	// (10% of a relay's CPU in a bulk transfer); now it is 128 bytes.
	rxHeaderSplit = 128
)

// Options configures an Endpoint.
type Options struct {
	// MTU of the device in bytes of IP packet (68..65535).
	MTU uint32
	// DisableGRO turns gVisor's GRO off for inbound bursts of non-GSO packets.
	DisableGRO bool
	// RXBurst overrides DefaultRXBurst when positive.
	RXBurst int
	// Logger receives lifecycle events (never per-packet ones); nil discards.
	Logger *slog.Logger
}

// Endpoint is a stack.LinkEndpoint over a TUN file descriptor with virtio_net_hdr
// framing. Create it with Open or NewFromFile; it owns the descriptor.
//
// Endpoint implements stack.LinkEndpoint and stack.GSOEndpoint.
type Endpoint struct {
	file  *os.File
	rc    syscall.RawConn
	name  string
	log   *slog.Logger
	gro   bool
	burst int
	mtu   atomic.Uint32

	stats   counters
	writers sync.Pool // *writer: per-call write state, so WritePackets needs no lock

	// closed is set by Close before the descriptor is closed; writes then fail fast.
	closed atomic.Bool

	// rx guards the reader goroutine's lifecycle.
	rx struct {
		sync.Mutex
		dispatcher stack.NetworkDispatcher // nil when detached
		done       chan struct{}           // closed when the current reader exits; nil if none started
		onClose    func()
		closing    bool // Close has begun: Attach starts nothing
	}
	// stopRX asks the reader to exit at its next wake-up; set under rx with a past
	// read deadline that wakes it.
	stopRX atomic.Bool
	// rxErr holds the error that ended the reader, if it was not asked to stop.
	rxErr atomic.Pointer[error]

	closeOnce   sync.Once
	closeDevice func() error   // closes the descriptor (and, for Open, the device's listeners)
	background  sync.WaitGroup // helpers that end only after closeDevice (Open's event drain)
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ stack.GSOEndpoint  = (*Endpoint)(nil)
)

// NewFromFile wraps f, which must be a TUN descriptor opened with IFF_VNET_HDR (the
// default 10-byte header) in non-blocking mode, so that Go's poller can wake and stop
// the reader. The Endpoint owns f and closes it on Close. Offloads (TUNSETOFFLOAD) are
// the caller's business; Open sets them.
func NewFromFile(f *os.File, opts Options) (*Endpoint, error) {
	if f == nil {
		return nil, errors.New("link: nil file")
	}
	if opts.MTU < 68 || opts.MTU > GSOMaxSize {
		return nil, fmt.Errorf("link: MTU %d out of range 68..%d", opts.MTU, GSOMaxSize)
	}
	// Only pollable files take deadlines; the reader is stopped by one.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("link: %s is not a non-blocking descriptor: %w", f.Name(), err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("link: raw access to %s: %w", f.Name(), err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{
		file:        f,
		rc:          rc,
		name:        f.Name(),
		log:         log,
		gro:         !opts.DisableGRO,
		burst:       DefaultRXBurst,
		closeDevice: f.Close,
	}
	if opts.RXBurst > 0 {
		e.burst = opts.RXBurst
	}
	e.mtu.Store(opts.MTU)
	e.writers.New = func() any { return newWriter() }
	return e, nil
}

// Name is the device name (Open) or the file's name (NewFromFile).
func (e *Endpoint) Name() string { return e.name }

// Stats returns a snapshot of the counters.
func (e *Endpoint) Stats() Stats { return e.stats.snapshot() }

// Err returns the error that stopped the reader on its own (a failing descriptor),
// or nil while it runs or after an orderly stop.
func (e *Endpoint) Err() error {
	if p := e.rxErr.Load(); p != nil {
		return *p
	}
	return nil
}

// MTU implements stack.LinkEndpoint.MTU.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU. It changes what gVisor assumes, not
// the device: the device MTU is host configuration (netcfg).
func (e *Endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: a TUN has no link
// header, and the virtio header is written from a separate buffer.
func (*Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.LinkAddress: an L3 device has none.
func (*Endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress; it is a no-op.
func (*Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint.Capabilities.
//
// RX checksum offload is claimed because inspectInbound guarantees what gVisor then
// skips (see there); TSO super-packets carry partial checksums and could not be
// delivered without it. TX checksum offload is not claimed: gVisor would leave the
// checksum zero without a pseudo-header sum, which the kernel drops; host GSO's
// NeedsCsum is the path to offloaded transmit checksums.
func (*Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize.
func (*Endpoint) GSOMaxSize() uint32 { return GSOMaxSize }

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: the kernel segments.
func (*Endpoint) SupportedGSO() stack.SupportedGSO { return stack.HostGSOSupported }

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.AddHeader; there is no link header.
func (*Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.ParseHeader; there is no link header.
func (*Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *Endpoint) SetOnCloseAction(f func()) {
	e.rx.Lock()
	e.rx.onClose = f
	e.rx.Unlock()
}

// Attach implements stack.LinkEndpoint.Attach. A non-nil dispatcher starts the reader
// goroutine (if none is attached); nil stops it and returns once it has exited, so no
// packet reaches a removed NIC.
//
// The owner must call Attach(nil) (or Close) itself before gVisor's Stack.Wait or
// Destroy. Those detach the NIC, calling Attach(nil) and Wait, with the stack's lock
// held, and a reader in the middle of delivering a packet needs that lock: under
// inbound traffic both would wait for ever. Stopped first, the reader finishes its
// packet and exits, and gVisor's own detach returns at once.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	if d == nil {
		e.stopReader()
		return
	}
	e.rx.Lock()
	defer e.rx.Unlock()
	if e.rx.dispatcher != nil || e.rx.closing {
		return
	}
	if e.rx.done != nil {
		<-e.rx.done // a previous reader was stopped; it has exited (stopReader waited)
	}
	e.stopRX.Store(false)
	if err := e.file.SetReadDeadline(time.Time{}); err != nil {
		e.log.Error("cannot clear read deadline; reader not started", "dev", e.name, "err", err)
		return
	}
	e.rx.dispatcher = d
	done := make(chan struct{})
	e.rx.done = done
	go e.readLoop(d, done)
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool {
	e.rx.Lock()
	defer e.rx.Unlock()
	return e.rx.dispatcher != nil
}

// stopReader stops the reader goroutine, if any, and waits until it has exited.
func (e *Endpoint) stopReader() {
	e.rx.Lock()
	done := e.rx.done
	if e.rx.dispatcher != nil {
		e.stopRX.Store(true)
		// A deadline in the past wakes a reader parked in the poller.
		if err := e.file.SetReadDeadline(time.Unix(1, 0)); err != nil {
			e.log.Warn("cannot set read deadline to stop reader", "dev", e.name, "err", err)
		}
		e.rx.dispatcher = nil
	}
	e.rx.Unlock()
	// Wait without the lock: the reader delivers into the stack, which may call back
	// into IsAttached.
	if done != nil {
		<-done
	}
}

// Wait implements stack.LinkEndpoint.Wait: it returns when the reader goroutine has
// exited (after Attach(nil) or Close, or on a descriptor error). It does not close
// anything; gVisor calls it before Close.
func (e *Endpoint) Wait() {
	e.rx.Lock()
	done := e.rx.done
	e.rx.Unlock()
	if done != nil {
		<-done
	}
}

// Close implements stack.LinkEndpoint.Close. In order: the reader is stopped and
// waited for, the close action set by the stack runs, the descriptor (and device) is
// closed, and helper goroutines are waited for. Later writes fail with
// ErrClosedForSend. Close is idempotent.
func (e *Endpoint) Close() {
	e.closeOnce.Do(func() {
		e.rx.Lock()
		e.rx.closing = true
		onClose := e.rx.onClose
		e.rx.Unlock()
		e.stopReader()
		if onClose != nil {
			onClose()
		}
		e.closed.Store(true)
		if err := e.closeDevice(); err != nil {
			e.log.Warn("closing TUN device", "dev", e.name, "err", err)
		}
		e.background.Wait()
		e.log.Debug("link endpoint closed", "dev", e.name)
	})
}
