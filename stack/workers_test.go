package stack

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitIdle waits until w has n idle workers, each parked in its select
// (counted idle just before it gets there: a task sent in between would
// start a goroutine of its own).
func waitIdle(t *testing.T, w *workers, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for w.idle.Load() != n || parkedWorkers() != int(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers (%d parked), want %d", w.idle.Load(), parkedWorkers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// parkedWorkers counts goroutines waiting in workers.run's select.
func parkedWorkers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "stack.(*workers).run(") {
			n++
		}
	}
	return n
}

// TestWorkersReuse: a task started after another finished runs on the same
// goroutine, which kept the stack the first one grew; concurrent tasks get
// goroutines of their own; at most maxIdle wait; close ends the idle ones.
func TestWorkersReuse(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(time.Minute, 2)
	ids := make(chan uint64, 3)
	for range 3 {
		w.Go(func() { ids <- goid() })
		waitIdle(t, w, 1)
	}
	first := <-ids
	for range 2 {
		if id := <-ids; id != first {
			t.Fatalf("task ran on goroutine %d, want the idle worker %d", id, first)
		}
	}

	// Four tasks blocked at once need four goroutines; afterwards two stay.
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Add(4)
	for range 4 {
		w.Go(func() { wg.Done(); <-release })
	}
	wg.Wait()
	close(release)
	waitIdle(t, w, 2)

	w.close()
	waitIdle(t, w, 0)
	checkGoroutines(t, before)

	// After close, tasks still run.
	done := make(chan struct{})
	w.Go(func() { close(done) })
	<-done
	checkGoroutines(t, before)
}

// TestWorkersIdleTimeout: an idle worker exits after idleFor.
func TestWorkersIdleTimeout(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(20*time.Millisecond, 4)
	done := make(chan struct{})
	w.Go(func() { close(done) })
	<-done
	// Wait for the worker itself, not for the goroutine count alone:
	// goroutines of earlier tests winding down can bring the count to
	// before while the worker still idles (seen under -race in CI).
	deadline := time.Now().Add(5 * time.Second)
	for w.idle.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := w.idle.Load(); n != 0 {
		t.Fatalf("%d idle workers 5 s after a 20 ms idle timeout", n)
	}
	checkGoroutines(t, before)
}

// goid is the running goroutine's ID, from its stack header.
func goid() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id uint64
	for _, c := range buf[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
