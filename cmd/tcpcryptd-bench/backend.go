package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tcpcryptd/tcpcryptd/internal/topo"
)

// The backend's one-byte operations: the client's first byte says what the
// connection is for.
const (
	opUpload   = 'U' // read to EOF, answer the byte count (8 bytes, big-endian), close
	opDownload = 'D' // write until the client goes away
	opPing     = 'P' // answer one byte and close (connection rate)
	opRequest  = 'R' // 99 more request bytes, then 100-byte answers to 100-byte requests until EOF
	opIdle     = 'I' // answer one byte, then wait for EOF (idle connections)
)

// rrSize is the size of a request and of its response.
const rrSize = 100

// bulkChunk is the size of the client's and backend's bulk writes.
const bulkChunk = 256 << 10

// backend serves the operations above on a listener in the server namespace.
type backend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	data  []byte // bulkChunk of pseudo-random bytes for downloads
}

func newBackend(ln net.Listener) *backend {
	b := &backend{ln: ln, conns: make(map[net.Conn]struct{}), data: make([]byte, bulkChunk)}
	fillPattern(b.data)
	b.wg.Add(1)
	go b.accept()
	return b
}

// fillPattern fills p with incompressible-looking bytes (nothing on the path
// compresses, but a pattern of zeros would hide a bug that drops data).
func fillPattern(p []byte) {
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i+8 <= len(p); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
}

func (b *backend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.serve(c)
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
			c.Close()
		}()
	}
}

func (b *backend) serve(c net.Conn) {
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case opUpload:
		buf := make([]byte, bulkChunk)
		var n uint64
		for {
			m, err := c.Read(buf)
			n += uint64(m)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return
				}
				break
			}
		}
		var ans [8]byte
		binary.BigEndian.PutUint64(ans[:], n)
		c.Write(ans[:])
	case opDownload:
		for {
			if _, err := c.Write(b.data); err != nil {
				return
			}
		}
	case opPing:
		c.Write([]byte{'p'})
	case opRequest:
		buf := make([]byte, rrSize)
		if _, err := io.ReadFull(c, buf[1:]); err != nil {
			return
		}
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
		}
	case opTransact:
		serveTransactions(c)
	case opIdle:
		if _, err := c.Write([]byte{'i'}); err != nil {
			return
		}
		var one [1]byte
		c.Read(one[:])
	}
}

// Close stops accepting, closes every connection and waits for the handlers.
func (b *backend) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

// runBackend is the hidden "backend" command: the backend server as a
// process of its own in the server namespace, so its descriptors (one per
// idle connection) and CPU time are not the load generator's.
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	listen := fs.String("listen", fmt.Sprintf("[::]:%d", backendPort), "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	b := newBackend(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return b.Close()
}

// startBackend runs `self backend` in ns and waits until it accepts.
func startBackend(self string, ns *topo.NS) (*sideProc, error) {
	p, err := startSideProc(ns.Command(self, "backend", "-listen", fmt.Sprintf("[::]:%d", backendPort)), "backend", "server", "")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := ns.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", backendPort))
		cancel()
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("backend exited during start-up (%v)%s", p.err, p.tailSuffix())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(procStopGrace)
			return nil, fmt.Errorf("backend not accepting after 10s: %v", err)
		}
	}
}
