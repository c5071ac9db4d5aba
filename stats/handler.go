package stats

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultQuotaPerMinute is Apigee's documented Metrics API quota (Postgres
// backend): 40 calls per minute per organization.
const DefaultQuotaPerMinute = 40

// Config configures the HTTP handler.
type Config struct {
	DB      Queryer
	Dialect Dialect
	// DailyTable is the store's daily table (see RunDaily), read when the
	// query allows and DB is a *sql.DB; "" reads the events table alone.
	DailyTable string
	// QuotaPerMinute is the calls per minute allowed per organization;
	// 0 means DefaultQuotaPerMinute, a negative value turns the quota off.
	QuotaPerMinute int
	Logger         *slog.Logger
	// Now is the clock of the quota; nil means time.Now.
	Now func() time.Time
}

// Handler serves the Metrics API.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	quota *quota
}

// NewHandler returns a Handler for cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.QuotaPerMinute == 0 {
		cfg.QuotaPerMinute = DefaultQuotaPerMinute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dialect == nil {
		cfg.Dialect = DuckDB{}
	}
	return &Handler{cfg: cfg, log: cfg.Logger, quota: &quota{limit: cfg.QuotaPerMinute, counts: map[string]int{}}}
}

// Patterns are the routes the Handler answers, for http.ServeMux.
func Patterns() []string {
	return []string{
		"GET /v1/o/{org}/environments/{env}/stats",
		"GET /v1/o/{org}/environments/{env}/stats/{dims...}",
		"GET /v1/o/{org}/e/{env}/stats",
		"GET /v1/o/{org}/e/{env}/stats/{dims...}",
	}
}

// Mux is where routes are registered; http.ServeMux and server.Server are.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register adds the Metrics API routes to mux.
func (h *Handler) Register(mux Mux) {
	for _, p := range Patterns() {
		mux.Handle(p, h)
	}
}

// ErrorBody is an error answer in Apigee's management API shape, plus the
// parameter at fault when there is one.
type ErrorBody struct {
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Contexts []string `json:"contexts"`
	// Parameter names the bad query parameter (or "dimension").
	Parameter string `json:"parameter,omitempty"`
}

// ServeHTTP answers one Metrics API request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	org, env := r.PathValue("org"), r.PathValue("env")
	if wait, ok := h.quota.take(org, h.cfg.Now()); !ok {
		secs := int(wait.Seconds() + 0.999)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, ErrorBody{
			Code:     "analytics.service.QuotaExceeded",
			Message:  fmt.Sprintf("Metrics API quota of %d calls per minute exceeded for organization %s; retry after %d s", h.quota.limit, org, secs),
			Contexts: []string{},
		})
		return
	}
	p, err := Parse(org, env, r.PathValue("dims"), r.URL.Query())
	if err != nil {
		var pe *ParamError
		if errors.As(err, &pe) {
			writeJSON(w, http.StatusBadRequest, ErrorBody{Code: "analytics.service.InvalidParameter", Message: pe.Error(), Contexts: []string{}, Parameter: pe.Param})
			return
		}
		h.fail(w, r, err)
		return
	}
	var res *Result
	if db, ok := h.cfg.DB.(*sql.DB); ok && h.cfg.DailyTable != "" {
		res, err = RunDaily(r.Context(), db, h.cfg.Dialect, p, h.cfg.DailyTable)
	} else {
		res, err = Run(r.Context(), h.cfg.DB, h.cfg.Dialect, p)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Render(p, h.cfg.Dialect, res))
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	h.log.Error("metrics api", "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
	writeJSON(w, http.StatusInternalServerError, ErrorBody{Code: "analytics.service.InternalError", Message: "internal error; see the server log", Contexts: []string{}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"code":"analytics.service.InternalError","message":"encode response","contexts":[]}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// quota counts calls per organization in fixed calendar minutes, as a
// calls-per-minute quota is usually stated.
type quota struct {
	limit  int
	mu     sync.Mutex
	minute int64
	counts map[string]int
}

// take counts one call of org at now; when the minute's quota is spent it
// says how long until the next minute starts.
func (q *quota) take(org string, now time.Time) (time.Duration, bool) {
	if q.limit < 0 {
		return 0, true
	}
	m := now.Unix() / 60
	q.mu.Lock()
	defer q.mu.Unlock()
	if m != q.minute {
		q.minute = m
		clear(q.counts)
	}
	if q.counts[org] >= q.limit {
		return time.Unix((m+1)*60, 0).Sub(now), false
	}
	q.counts[org]++
	return 0, true
}
