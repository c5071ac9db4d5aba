package billing

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/server"
)

// Mux is where the handler's routes go (server.Server).
type Mux interface {
	HandleScope(pattern string, need server.Scope, h http.Handler)
}

// Handler serves the billing API of a Biller; every route needs an admin
// key of the path's org and env:
//
//	GET  /v1/o/{org}/environments/{env}/billing/export?period=YYYY-MM&format=json|csv
//	GET  /v1/o/{org}/environments/{env}/billing/push-plan?period=YYYY-MM
//	POST /v1/o/{org}/environments/{env}/billing/ledger?period=YYYY-MM  (an Entry)
//	GET  /v1/o/{org}/environments/{env}/billing/statement?period=YYYY-MM&meter=M&customer=C
//	GET  /v1/o/{org}/environments/{env}/billing/key
type Handler struct {
	b   *Biller
	log *slog.Logger
}

// NewHandler returns a Handler of b.
func NewHandler(b *Biller, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{b: b, log: log}
}

// Register adds the routes to mux.
func (h *Handler) Register(mux Mux) {
	const p = "/v1/o/{org}/environments/{env}/billing/"
	mux.HandleScope("GET "+p+"export", server.Admin, http.HandlerFunc(h.export))
	mux.HandleScope("GET "+p+"push-plan", server.Admin, http.HandlerFunc(h.plan))
	mux.HandleScope("POST "+p+"ledger", server.Admin, http.HandlerFunc(h.record))
	mux.HandleScope("GET "+p+"statement", server.Admin, http.HandlerFunc(h.statement))
	mux.HandleScope("GET "+p+"key", server.Admin, http.HandlerFunc(h.key))
}

func bad(field, msg string) error {
	return &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: field, Message: msg}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *meter.FieldError
	switch {
	case errors.As(err, &fe):
		err = bad(fe.Field, fe.Error())
	case errors.Is(err, meter.ErrNotFound):
		err = &server.APIError{Status: http.StatusNotFound, Code: "not_found", Field: "meter", Message: "no meter " + strconv.Quote(r.URL.Query().Get("meter"))}
	case errors.Is(err, ErrNoSecret):
		err = &server.APIError{Status: http.StatusNotFound, Code: "no_statements", Message: err.Error()}
	}
	server.WriteError(w, r, h.log, err)
}

func period(r *http.Request) (Period, error) {
	q := r.URL.Query()
	if len(q["period"]) != 1 {
		return Period{}, bad("period", "give period once, as YYYY-MM (e.g. 2026-11)")
	}
	per, err := ParsePeriod(q.Get("period"))
	if err != nil {
		return per, bad("period", err.Error())
	}
	return per, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// CSVHeader is the first row of a CSV export.
var CSVHeader = []string{"customer", "meter", "period", "value", "events"}

// WriteCSV writes lines as CSV with CSVHeader.
func WriteCSV(w io.Writer, lines []Line) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	for _, l := range lines {
		cw.Write([]string{l.Customer, l.Meter, l.Period, fmtNum(l.Value), strconv.FormatInt(l.Events, 10)})
	}
	cw.Flush()
	return cw.Error()
}

func (h *Handler) export(w http.ResponseWriter, r *http.Request) {
	per, err := period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		h.fail(w, r, bad("format", strconv.Quote(format)+": want json or csv"))
		return
	}
	lines, err := h.b.Export(r.Context(), r.PathValue("org"), r.PathValue("env"), per)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv")
		WriteCSV(w, lines)
		return
	}
	writeJSON(w, map[string]any{"period": per.Name, "from": per.From, "to": per.To, "lines": lines})
}

func (h *Handler) plan(w http.ResponseWriter, r *http.Request) {
	per, err := period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	lines, err := h.b.PushPlan(r.Context(), r.PathValue("org"), r.PathValue("env"), per)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if lines == nil {
		lines = []Line{}
	}
	writeJSON(w, map[string]any{"period": per.Name, "lines": lines})
}

func (h *Handler) record(w http.ResponseWriter, r *http.Request) {
	per, err := period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var e Entry
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		h.fail(w, r, bad("body", "want a ledger entry as JSON: "+err.Error()))
		return
	}
	if e.Period != per.Name {
		h.fail(w, r, bad("period", "the entry's period "+strconv.Quote(e.Period)+" is not the query's "+per.Name))
		return
	}
	if err := h.b.Record(r.Context(), r.PathValue("org"), r.PathValue("env"), per, e); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) statement(w http.ResponseWriter, r *http.Request) {
	per, err := period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Get("meter") == "" || q.Get("customer") == "" {
		h.fail(w, r, bad("meter", "give meter and customer"))
		return
	}
	ce, err := h.b.Statement(r.Context(), r.PathValue("org"), r.PathValue("env"), q.Get("meter"), q.Get("customer"), per)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, ce)
}

func (h *Handler) key(w http.ResponseWriter, r *http.Request) {
	k, err := h.b.PublicKey(r.PathValue("org"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]string{"org": r.PathValue("org"), "algorithm": "Ed25519", "publicKey": k})
}
