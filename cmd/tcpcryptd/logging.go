package main

import (
	"io"
	"log/slog"

	"github.com/tcpcryptd/tcpcryptd/config"
)

// newLogger makes the daemon's logger from the [log] section; components
// get it with their own "component" attribute.
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	var level slog.Level
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
