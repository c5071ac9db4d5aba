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

	"github.com/apimeter/apimeter/server"
)

// DefaultQuotaPerMinute is Apigee's documented Metrics API quota (Postgres
// backend): 40 calls per minute per organization.
const DefaultQuotaPerMinute = 40

// DefaultSessionQuotaPerMinute is the calls per minute of one signed-in
// dashboard key (its session cookie): a page makes up to a dozen calls, so
// this is some fifty pages a minute, more than a person browsing opens and
// still a bound on a script that borrows a browser's cookie.
const DefaultSessionQuotaPerMinute = 600

// Config configures the HTTP handler.
type Config struct {
	DB      Queryer
	Dialect Dialect
	// Rollups reads the store's rollup tables (see RunRollups) when the
	// query allows and DB is a *sql.DB; false reads the events table alone.
	Rollups bool
	// QuotaPerMinute is the calls per minute allowed per organization;
	// 0 means DefaultQuotaPerMinute, a negative value turns the quota off.
	QuotaPerMinute int
	// SessionQuotaPerMinute is the calls per minute allowed per signed-in
	// key on the dashboard (server.Grant.Session), counted apart from
	// QuotaPerMinute so that browsing never spends the API clients' quota
	// nor theirs it; 0 means DefaultSessionQuotaPerMinute, a negative value
	// turns it off.
	SessionQuotaPerMinute int
	// Envs lists the envs of an org, for GET /v1/organizations/{org} and
	// .../environments; nil lists none.
	Envs   func(org string) []string
	Logger *slog.Logger
	// Now is the clock of the quota; nil means time.Now.
	Now func() time.Time
	// Queries bounds each query: a deadline enforced inside the engine,
	// cancelled when the client goes away or the server shuts down (the
	// server's, server.Server.Queries). Nil means its own with
	// server.DefaultQueryTimeout.
	Queries *server.Queries
}

// Handler serves the Metrics API.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	quota *MinuteQuota
	// sessions counts dashboard reads per signed-in key.
	sessions *MinuteQuota
}

// NewHandler returns a Handler for cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.QuotaPerMinute == 0 {
		cfg.QuotaPerMinute = DefaultQuotaPerMinute
	}
	if cfg.SessionQuotaPerMinute == 0 {
		cfg.SessionQuotaPerMinute = DefaultSessionQuotaPerMinute
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
	if cfg.Queries == nil {
		cfg.Queries = server.NewQueries(0)
	}
	return &Handler{cfg: cfg, log: cfg.Logger, quota: NewMinuteQuota(cfg.QuotaPerMinute), sessions: NewMinuteQuota(cfg.SessionQuotaPerMinute)}
}

// Patterns are the routes the Handler answers, for http.ServeMux: every
// path form Apigee's clients use (/v1/o and /v1/organizations, each with
// /environments and /e).
func Patterns() []string {
	var ps []string
	for _, o := range []string{"/v1/o/{org}", "/v1/organizations/{org}"} {
		for _, e := range []string{"/environments/{env}", "/e/{env}"} {
			ps = append(ps, "GET "+o+e+"/stats", "GET "+o+e+"/stats/{dims...}")
		}
	}
	return ps
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
	o := orgHandler{h}
	for _, p := range []string{"/v1/o/{org}", "/v1/organizations/{org}"} {
		mux.Handle("GET "+p, o)
		mux.Handle("GET "+p+"/{$}", o) // apigee-edge-js reads the org with a trailing slash
		mux.Handle("GET "+p+"/environments", o)
		mux.Handle("GET "+p+"/environments/{env}", o)
		mux.Handle("GET "+p+"/e/{env}", o)
	}
}

// WriteAuthError answers the 401 and 403 of the key check in Apigee's
// error shape, as every other Metrics API error.
func (h *Handler) WriteAuthError(w http.ResponseWriter, r *http.Request, e *server.APIError) {
	writeAuthError(w, e)
}

func writeAuthError(w http.ResponseWriter, e *server.APIError) {
	code := "security.Forbidden"
	if e.Status == http.StatusUnauthorized {
		code = "security.Unauthorized"
	}
	writeJSON(w, e.Status, ErrorBody{Code: code, Message: e.Message, Contexts: []string{}})
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
	quota, caller, whose := h.quota, org, "organization "+org
	if g, ok := server.GrantFrom(r.Context()); ok && g.Session {
		quota, caller, whose = h.sessions, org+"\x00"+g.KeyID, "the dashboard session of key "+g.KeyID
	}
	if wait, ok := quota.Take(caller, h.cfg.Now()); !ok {
		secs := int(wait.Seconds() + 0.999)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, ErrorBody{
			Code:     "analytics.service.QuotaExceeded",
			Message:  fmt.Sprintf("Metrics API quota of %d calls per minute exceeded for %s; retry after %d s", quota.limit, whose, secs),
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
	ctx, cancel := h.cfg.Queries.Context(r.Context())
	defer cancel()
	var res *Result
	if db, ok := h.cfg.DB.(*sql.DB); ok && h.cfg.Rollups {
		res, err = RunRollups(ctx, db, h.cfg.Dialect, p)
	} else {
		res, err = Run(ctx, h.cfg.DB, h.cfg.Dialect, p)
	}
	if err = h.cfg.Queries.Err(ctx, err); err != nil {
		var ae *server.APIError
		if errors.As(err, &ae) {
			// Cut by the query timeout or the shutdown.
			code := "analytics.service.QueryTimeout"
			if ae.Code != "query_timeout" {
				code = "analytics.service.Unavailable"
			}
			writeJSON(w, ae.Status, ErrorBody{Code: code, Message: ae.Message, Contexts: []string{}})
			return
		}
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
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// MinuteQuota counts calls per caller (an org here, a portal token in
// package portal) in fixed calendar minutes, as a calls-per-minute quota
// is usually stated. A negative limit never refuses. It is safe for
// concurrent use.
type MinuteQuota struct {
	limit  int
	mu     sync.Mutex
	minute int64
	counts map[string]int
}

// NewMinuteQuota returns a quota of limit calls a minute per caller.
func NewMinuteQuota(limit int) *MinuteQuota {
	return &MinuteQuota{limit: limit, counts: map[string]int{}}
}

// Take counts one call of org at now; when the minute's quota is spent it
// says how long until the next minute starts.
func (q *MinuteQuota) Take(org string, now time.Time) (time.Duration, bool) {
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
