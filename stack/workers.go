package stack

import (
	"sync"
	"sync/atomic"
	"time"
)

// workers runs the stack's per-connection tasks (a new relay's two
// directions, a relay direction woken from suspension, a listener's
// handshake, a service connection) on goroutines that outlive them.
//
// Why: a new goroutine starts with a small stack, and these tasks run deep
// into gVisor and the tcpcrypt handshake, so each one started with `go`
// grew its stack by copying it. In the connection-rate
// benchmark that copying (runtime.newstack/copystack) was 5–13% of a
// daemon's CPU. A worker that finishes a task waits up to idleFor for the
// next one and keeps the stack it grew (until the garbage collector shrinks
// an idle one).
type workers struct {
	tasks   chan func() // unbuffered: a send succeeds only if a worker waits
	quit    chan struct{}
	once    sync.Once
	idleFor time.Duration
	maxIdle int32
	idle    atomic.Int32 // workers waiting for a task
}

// Idle workers linger this long, and at most this many wait at once; a
// burst beyond that starts goroutines that exit after their task.
const (
	workerIdle    = 5 * time.Second
	maxIdleWorker = 128
)

func newWorkers(idleFor time.Duration, maxIdle int32) *workers {
	return &workers{tasks: make(chan func()), quit: make(chan struct{}), idleFor: idleFor, maxIdle: maxIdle}
}

// Go runs f on an idle worker, or on a new goroutine that then becomes one.
func (w *workers) Go(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.run(f)
	}
}

func (w *workers) run(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(w.idleFor)
		} else {
			t.Reset(w.idleFor)
		}
		select {
		case f = <-w.tasks:
		case <-t.C:
		case <-w.quit:
		}
		w.idle.Add(-1)
		if f == nil {
			t.Stop()
			return
		}
	}
}

// close makes idle workers exit, and busy ones once their task returns.
// Go still works after close (tasks then run on goroutines of their own).
func (w *workers) close() {
	w.once.Do(func() { close(w.quit) })
}
