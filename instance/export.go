package instance

import (
	"log/slog"

	"github.com/apimeter/apimeter/export"
)

// wireExport serves GET .../export: the embedded store writes the file; a
// store that cannot (ClickHouse) answers 501 saying what to use instead.
func wireExport(srv export.Mux, st any, log *slog.Logger) {
	h := &export.Handler{Logger: log}
	if es, ok := st.(export.Store); ok {
		h.Store = es
	}
	h.Register(srv)
}
