package instance

import (
	"io"
	"log/slog"
)

// NewLogger is the log of every long-running command: text lines for a
// terminal, or with format "json" one JSON object a line, for log
// collectors (Loki, Elasticsearch, CloudWatch) that would otherwise parse
// key=value text.
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
