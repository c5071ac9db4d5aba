// Package export serves the stored events of an org, env and time range as
// one Parquet or CSV file (GET /v1/o/{org}/environments/{env}/export), as
// stored, so already scrubbed: a user's own copy of their data, for
// DuckDB, pandas, Spark or a spreadsheet, without a DuckDB client of
// their own. apimeter export is its command line.
package export

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/apimeter/apimeter/server"
)

// Store writes the events of org and env with a request time in [from,
// to) in format ("parquet" or "csv") to w. The embedded DuckDB store is
// one.
type Store interface {
	Export(ctx context.Context, org, env string, from, to time.Time, format string, w io.Writer) error
}

// Mux is where routes are registered (server.Server is one).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Handler answers export requests; a nil Store answers 501 (the ClickHouse
// store, whose clickhouse-client exports a query itself).
type Handler struct {
	Store  Store
	Logger *slog.Logger
}

// Register adds the routes to mux, behind a read key of the path's org.
func (h *Handler) Register(mux Mux) {
	for _, base := range []string{"/v1/o/{org}/environments/{env}", "/v1/o/{org}/e/{env}"} {
		mux.Handle("GET "+base+"/export", http.HandlerFunc(h.export))
	}
}

var contentTypes = map[string]string{"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8"}

func (h *Handler) export(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(status int, code, field, msg string) {
		server.WriteError(w, r, log, &server.APIError{Status: status, Code: code, Field: field, Message: msg})
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = "parquet"
	}
	ct, ok := contentTypes[format]
	if !ok {
		fail(http.StatusBadRequest, "invalid_parameter", "format", "format: want parquet or csv")
		return
	}
	from, err := ParseTime(q.Get("from"))
	if err != nil {
		fail(http.StatusBadRequest, "invalid_parameter", "from", "from: "+err.Error())
		return
	}
	to, err := ParseTime(q.Get("to"))
	if err != nil {
		fail(http.StatusBadRequest, "invalid_parameter", "to", "to: "+err.Error())
		return
	}
	if !from.Before(to) {
		fail(http.StatusBadRequest, "invalid_parameter", "to", "to must be after from")
		return
	}
	if h.Store == nil {
		fail(http.StatusNotImplemented, "not_supported", "", "export is offered on the embedded store; with ClickHouse, export with clickhouse-client (SELECT ... FROM events WHERE org = ... FORMAT CSVWithNames)")
		return
	}
	org, env := r.PathValue("org"), r.PathValue("env")
	name := "apimeter-" + org + "-" + env + "-" + from.UTC().Format("20060102T150405Z") + "-" + to.UTC().Format("20060102T150405Z") + "." + format
	// The store makes the whole file before its first byte is written, so
	// an error of the query is still answered as a JSON error; the headers
	// of the file go out with its first byte.
	fw := &fileWriter{w: w, header: func() {
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", `attachment; filename="`+strings.NewReplacer(`"`, "", `\`, "").Replace(name)+`"`)
	}}
	if err := h.Store.Export(r.Context(), org, env, from, to, format, fw); err != nil {
		if !fw.started {
			server.WriteError(w, r, log, err)
			return
		}
		log.Warn("export cut short", "org", org, "env", env, "err", err)
		return
	}
	if !fw.started {
		fw.Write(nil)
	}
}

// fileWriter sends the file's headers before its first byte.
type fileWriter struct {
	w       http.ResponseWriter
	header  func()
	started bool
}

func (f *fileWriter) Write(p []byte) (int, error) {
	if !f.started {
		f.started = true
		f.header()
		f.w.WriteHeader(http.StatusOK)
	}
	return f.w.Write(p)
}

// ParseTime reads an instant: RFC 3339 (2026-11-01T00:00:00Z) or a UTC
// date (2026-11-01).
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errRequired
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errFormat
	}
	return t, nil
}

type timeError string

func (e timeError) Error() string { return string(e) }

const (
	errRequired = timeError("required: an RFC 3339 time (2026-11-01T00:00:00Z) or a UTC date (2026-11-01)")
	errFormat   = timeError("want an RFC 3339 time (2026-11-01T00:00:00Z) or a UTC date (2026-11-01)")
)
