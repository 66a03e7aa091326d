package stack

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimitLogOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newLimitLog(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		l.hit("syn flood dropped", "source", "192.0.2.1")
	}
	l.hit("other event")
	if got := strings.Count(buf.String(), "syn flood dropped"); got != 1 {
		t.Fatalf("logged %d lines within one interval, want 1:\n%s", got, buf.String())
	}
	if !strings.Contains(buf.String(), "other event") {
		t.Fatalf("a second event name was suppressed by the first:\n%s", buf.String())
	}
	now = now.Add(10 * time.Second)
	l.hit("syn flood dropped")
	if !strings.Contains(buf.String(), "suppressed_since_last=99") {
		t.Fatalf("next line does not count the 99 suppressed events:\n%s", buf.String())
	}
}
