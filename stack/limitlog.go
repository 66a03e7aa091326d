package stack

import (
	"log/slog"
	"sync"
	"time"
)

// limitLogInterval is how often one kind of limit event is logged at most.
// A hostile peer can hit a limit thousands of times a second; the counters
// count every hit, the log says once per interval that it is happening.
const limitLogInterval = 10 * time.Second

// limitLog logs limit events (a flood dropped, a handshake evicted, a peer
// aborted) at most once per interval and event name, with the number of
// events since the last line. The zero value is not usable: see
// newLimitLog.
type limitLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	events map[string]*limitEvent
}

type limitEvent struct {
	last   time.Time
	missed uint64 // events not logged since last
}

func newLimitLog(l *slog.Logger, every time.Duration, now func() time.Time) *limitLog {
	if now == nil {
		now = time.Now
	}
	return &limitLog{log: l, every: every, now: now, events: make(map[string]*limitEvent)}
}

// hit records one event named event and logs it, with attrs, unless the
// same event was logged less than the interval ago. The set of names is
// fixed by the code, so the map stays small whatever peers do: callers
// must never build a name from packet contents.
func (l *limitLog) hit(event string, attrs ...any) {
	now := l.now()
	l.mu.Lock()
	e := l.events[event]
	if e == nil {
		e = &limitEvent{}
		l.events[event] = e
	} else if now.Sub(e.last) < l.every {
		e.missed++
		l.mu.Unlock()
		return
	}
	missed := e.missed
	e.last, e.missed = now, 0
	l.mu.Unlock()
	l.log.Warn(event, append(attrs, "suppressed_since_last", missed)...)
}
