package portal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
)

// EventReader reads stored events; apimeter.Store is one.
type EventReader interface {
	Events(ctx context.Context, f apimeter.EventFilter) ([]apimeter.Event, error)
}

// Quotas reads the gateway's quota state; *gateway.Gateway is one.
type Quotas interface {
	Headroom(ctx context.Context, org, env, by, id string, now time.Time) ([]gateway.Headroom, error)
}

// Meters answers a customer's meters over [from, to): the seam a server
// with meters plugs in. names, when not empty, are the only meters to
// answer (the token's limit). The answer is written as JSON as it is.
type Meters interface {
	CustomerMeters(ctx context.Context, org, env string, c Customer, names []string, from, to time.Time) (any, error)
}

// Statements answers a customer's billing statements of a period (the
// request's period parameter as given): the seam a server with billing
// plugs in. names, when not empty, are the only meters to answer. The
// answer is written as JSON as it is.
type Statements interface {
	CustomerStatements(ctx context.Context, org, env string, c Customer, names []string, period string) (any, error)
}

// DefaultRatePerMinute is the calls a token may make per minute.
const DefaultRatePerMinute = 240

// Config configures a Handler. Tokens, DB and Events are required.
type Config struct {
	Tokens *Tokens
	// DB and Dialect run the usage queries (the Metrics API's SQL).
	DB      stats.Queryer
	Dialect stats.Dialect
	Events  EventReader
	// Periods are the billing periods usage is shown by.
	Periods identity.Periods
	// Quotas, Meters and Statements are optional: without one its page is
	// absent (the API answers 404 not_enabled).
	Quotas     Quotas
	Meters     Meters
	Statements Statements
	// FrameOrigins lists, per org, the origins whose pages may show the
	// portal in a frame (Content-Security-Policy frame-ancestors); an org
	// without any may not be framed at all.
	FrameOrigins map[string][]string
	// RatePerMinute bounds each token's API calls; 0 means
	// DefaultRatePerMinute, negative turns the bound off.
	RatePerMinute int
	// OnePassLimit bounds the groups of the embedded store's one-pass
	// usage query (see onepass.go); 0 means DefaultOnePassLimit.
	OnePassLimit int
	Logger       *slog.Logger
	// Now is the clock of periods and the rate bound; nil means time.Now.
	Now func() time.Time
}

// Handler serves the portal: the token admin routes, the token's JSON API
// and the page.
type Handler struct {
	cfg  Config
	log  *slog.Logger
	rate *stats.MinuteQuota // calls per token
	// quotas is cfg.Quotas, or what SetQuotas gave since.
	quotas atomic.Pointer[Quotas]
}

// SetQuotas gives the portal a quota state after it started serving (a
// gateway started later in the same process).
func (h *Handler) SetQuotas(q Quotas) { h.quotas.Store(&q) }

func (h *Handler) quotaState() Quotas {
	if q := h.quotas.Load(); q != nil {
		return *q
	}
	return nil
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dialect == nil {
		cfg.Dialect = stats.DuckDB{}
	}
	if cfg.RatePerMinute == 0 {
		cfg.RatePerMinute = DefaultRatePerMinute
	}
	if cfg.OnePassLimit <= 0 {
		cfg.OnePassLimit = DefaultOnePassLimit
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, rate: stats.NewMinuteQuota(cfg.RatePerMinute)}
	if cfg.Quotas != nil {
		h.SetQuotas(cfg.Quotas)
	}
	return h
}

// Mux is where the routes go: server.Server.
type Mux interface {
	HandleScope(pattern string, need server.Scope, h http.Handler)
}

// APIPrefix is where the token's JSON API is served.
const APIPrefix = "/portal/api/v1/"

// Register adds the portal's routes:
//
//	POST   /v1/portal/tokens          admin key: mint a token (shown once)
//	GET    /v1/portal/tokens          admin key: the org's tokens (never a token)
//	DELETE /v1/portal/tokens/{id}     admin key: revoke
//	GET    /portal/api/v1/...         portal token: me, view, usage, stats, events, quota, meters, statements
//	GET    /portal/{org}/             the page (and its script and style)
func (h *Handler) Register(mux Mux) {
	mux.HandleScope("POST /v1/portal/tokens", server.Admin, http.HandlerFunc(h.createToken))
	mux.HandleScope("GET /v1/portal/tokens", server.Admin, http.HandlerFunc(h.listTokens))
	mux.HandleScope("DELETE /v1/portal/tokens/{id}", server.Admin, http.HandlerFunc(h.revokeToken))
	h.registerQuotaRead(mux)
	api := map[string]func(http.ResponseWriter, *http.Request, *Token){
		"me":           h.me,
		"view":         h.view,
		"usage":        h.usage,
		"stats":        h.stats,
		"stats/{dims}": h.stats,
		"events":       h.events,
		"quota":        h.quota,
		"meters":       h.meters,
		"statements":   h.statements,
	}
	for path, f := range api {
		mux.HandleScope("GET "+APIPrefix+path, server.Public, h.withToken(f))
	}
	mux.HandleScope(APIPrefix+"{rest...}", server.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", fmt.Sprintf("no portal route for %s %s", r.Method, r.URL.Path)))
	}))
	mux.HandleScope("GET /portal/{org}/{file}", server.Public, http.HandlerFunc(h.page))
	mux.HandleScope("GET /portal/{org}/{$}", server.Public, http.HandlerFunc(h.page))
	// Browsers keep the #token=... fragment across the redirect.
	mux.HandleScope("GET /portal/{org}", server.Public, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/portal/"+url.PathEscape(r.PathValue("org"))+"/", http.StatusMovedPermanently)
	}))
}

func apiErr(status int, code, msg string) *server.APIError {
	return &server.APIError{Status: status, Code: code, Message: msg}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	server.WriteError(w, r, h.log, err)
}

// withToken runs f for a valid token of the request: Authorization:
// Bearer apmp_.... Nothing else is a credential here: a read key, a
// cookie or a query parameter is not.
func (h *Handler) withToken(f func(http.ResponseWriter, *http.Request, *Token)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		cred = strings.TrimSpace(cred)
		if !strings.EqualFold(scheme, "Bearer") || cred == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="apimeter portal"`)
			h.fail(w, r, apiErr(http.StatusUnauthorized, "unauthorized", "a portal token is required: send Authorization: Bearer apmp_..."))
			return
		}
		tok, ok := h.cfg.Tokens.Lookup(cred)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="apimeter portal", error="invalid_token"`)
			h.fail(w, r, apiErr(http.StatusUnauthorized, "invalid_token", "the portal token is not valid (unknown, expired or revoked); ask the provider's site for a new one"))
			return
		}
		q := r.URL.Query()
		// The org and env are the token's; a request naming others is
		// refused rather than silently answered for the token's.
		if o := q.Get("org"); o != "" && o != tok.Org {
			h.fail(w, r, apiErr(http.StatusForbidden, "forbidden", "the token reads org "+tok.Org+" only"))
			return
		}
		if e := q.Get("env"); e != "" && e != tok.Env {
			h.fail(w, r, apiErr(http.StatusForbidden, "forbidden", "the token reads env "+tok.Env+" only"))
			return
		}
		if wait, ok := h.rate.Take(tok.ID, h.cfg.Now()); !ok {
			w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds()+0.999)))
			h.fail(w, r, apiErr(http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("a portal token may make %d calls a minute", h.cfg.RatePerMinute)))
			return
		}
		f(w, r, &tok)
	})
}

// allowed reports whether the token reads page, answering 403 or 404 when
// not.
func (h *Handler) allowed(w http.ResponseWriter, r *http.Request, t *Token, page string) bool {
	if !t.Allows(page) {
		h.fail(w, r, apiErr(http.StatusForbidden, "forbidden", "the token does not read "+page))
		return false
	}
	if !h.enabled(page) {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_enabled", "this server does not keep "+page+" (the "+page+" page is off)"))
		return false
	}
	return true
}

func (h *Handler) enabled(page string) bool {
	switch page {
	case PageQuota:
		return h.quotaState() != nil
	case PageMeters:
		return h.cfg.Meters != nil
	case PageStatements:
		return h.cfg.Statements != nil
	}
	return true
}

// MeJSON is the answer of GET /portal/api/v1/me.
type MeJSON struct {
	Org      string      `json:"org"`
	Env      string      `json:"env"`
	Customer Customer    `json:"customer"`
	Expires  time.Time   `json:"expires"`
	Pages    []string    `json:"pages"`
	Period   PeriodJSON  `json:"period"`
	Periods  []PeriodRef `json:"periods"`
}

// PeriodJSON is a billing period.
type PeriodJSON struct {
	Label string    `json:"label"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// PeriodRef names a period the usage route answers.
type PeriodRef struct {
	Label string `json:"label"`
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request, t *Token) {
	server.WriteJSON(w, http.StatusOK, h.meOf(t))
}

// meOf is who t reads for, the pages it opens on this server and the
// periods it may choose.
func (h *Handler) meOf(t *Token) MeJSON {
	now := h.cfg.Now()
	cur := h.cfg.Periods.Of(now)
	out := MeJSON{Org: t.Org, Env: t.Env, Customer: t.Customer, Expires: t.Expires, Pages: []string{},
		Period: PeriodJSON{Label: cur.Label, Start: cur.Start.UTC(), End: cur.End.UTC()}}
	for _, p := range Pages() {
		if t.Allows(p) && h.enabled(p) {
			out.Pages = append(out.Pages, p)
		}
	}
	// The current period and the eleven before it.
	p := cur
	for range 12 {
		out.Periods = append(out.Periods, PeriodRef{Label: p.Label})
		p = h.cfg.Periods.Of(p.Start.Add(-time.Nanosecond))
	}
	return out
}

// stats answers the Metrics API's query language for the token's
// customer: the plan is parsed as /stats parses it, then restricted to
// the customer's rows before any SQL is rendered.
func (h *Handler) stats(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageUsage) {
		return
	}
	p, err := stats.Parse(t.Org, t.Env, r.PathValue("dims"), r.URL.Query())
	if err != nil {
		var pe *stats.ParamError
		if errors.As(err, &pe) {
			h.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: pe.Param, Message: pe.Error()})
			return
		}
		h.fail(w, r, err)
		return
	}
	res, err := h.run(r.Context(), t, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, stats.Render(p, h.cfg.Dialect, res))
}

// run restricts p to t's customer and runs it.
func (h *Handler) run(ctx context.Context, t *Token, p *stats.Plan) (*stats.Result, error) {
	p.Org, p.Env = t.Org, t.Env
	if err := p.Restrict(t.Customer.Column(), t.Customer.ID); err != nil {
		return nil, err
	}
	return stats.Run(ctx, h.cfg.DB, h.cfg.Dialect, p)
}

// EventsLimit bounds the recent calls one request returns.
const EventsLimit = 100

// events answers the customer's recent calls, newest first, as the read
// API shows stored events (secrets were scrubbed before they were
// stored). The customer's id is forced into the filter; user_id and
// company_id given as parameters only narrow it further.
func (h *Handler) events(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageCalls) {
		return
	}
	q := r.URL.Query()
	f := apimeter.EventFilter{Org: t.Org, Env: t.Env, UserID: q.Get("user_id"), CompanyID: q.Get("company_id"),
		APIName: q.Get("api_name"), Route: q.Get("route"), Limit: 50}
	want := &f.UserID
	if t.Customer.Kind == KindCompany {
		want = &f.CompanyID
	}
	if *want != "" && *want != t.Customer.ID {
		// Another customer's calls: none of them are this token's.
		server.WriteJSON(w, http.StatusOK, map[string]any{"events": []moesif.Event{}})
		return
	}
	*want = t.Customer.ID
	bad := func(param, msg string) {
		h.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: param, Message: param + ": " + msg})
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > EventsLimit {
			bad("limit", fmt.Sprintf("must be a whole number from 1 to %d", EventsLimit))
			return
		}
		f.Limit = n
	}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 999 {
			bad("status", "must be an HTTP status code, or 0 for calls that got no response")
			return
		}
		f.Status = &n
	}
	switch v := q.Get("errors"); v {
	case "":
	case "true", "1":
		f.Errors = true
	case "false", "0":
	default:
		bad("errors", "must be true or false")
		return
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			ts, err := time.Parse(time.RFC3339, v)
			if err != nil {
				bad(p.name, "must be an RFC 3339 time")
				return
			}
			*p.dst = ts
		}
	}
	out, err := h.eventsOf(r.Context(), t, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"events": out})
}

// eventsOf reads t's calls by f (already narrowed to t's customer), in
// the collector's event shape.
func (h *Handler) eventsOf(ctx context.Context, t *Token, f apimeter.EventFilter) ([]moesif.Event, error) {
	events, err := h.recent(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]moesif.Event, 0, len(events))
	for i := range events {
		// The store answered by the filter; this check keeps a store's
		// mistake from ever showing another customer's call.
		if events[i].Org != t.Org || events[i].Env != t.Env || customerOf(&events[i], t.Customer.Kind) != t.Customer.ID {
			h.log.Error("portal: the store answered an event outside the filter", "org", t.Org, "env", t.Env, "event", events[i].ID)
			continue
		}
		out = append(out, moesif.FromEvent(&events[i]))
	}
	return out, nil
}

// recentWindows are how far back recent calls are first looked for when
// the request gives no from: a store scans the customer's column over
// the window, so the last day is read first and the whole store last,
// only while fewer calls than asked for are found.
var recentWindows = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 35 * 24 * time.Hour, 0}

func (h *Handler) recent(ctx context.Context, f apimeter.EventFilter) ([]apimeter.Event, error) {
	if !f.From.IsZero() {
		return h.cfg.Events.Events(ctx, f)
	}
	now := h.cfg.Now()
	for _, d := range recentWindows {
		g := f
		if d > 0 {
			g.From = now.Add(-d)
		}
		events, err := h.cfg.Events.Events(ctx, g)
		if err != nil || len(events) >= f.Limit || d == 0 {
			return events, err
		}
	}
	return nil, nil
}

func customerOf(e *apimeter.Event, kind string) string {
	if kind == KindCompany {
		return e.CompanyID
	}
	return e.UserID
}

func (h *Handler) quota(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageQuota) {
		return
	}
	qs, err := h.quotaState().Headroom(r.Context(), t.Org, t.Env, t.Customer.Kind, t.Customer.ID, h.cfg.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"customer": t.Customer, "quotas": qs})
}

func (h *Handler) meters(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageMeters) {
		return
	}
	p, err := h.period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := h.cfg.Meters.CustomerMeters(r.Context(), t.Org, t.Env, t.Customer, t.Meters, p.Start, p.End)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, v)
}

func (h *Handler) statements(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageStatements) {
		return
	}
	v, err := h.cfg.Statements.CustomerStatements(r.Context(), t.Org, t.Env, t.Customer, t.Meters, r.URL.Query().Get("period"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, v)
}

// period reads the period parameter: current (default), previous or
// YYYY-MM.
func (h *Handler) period(r *http.Request) (identity.Period, error) {
	p, err := h.cfg.Periods.Parse(r.URL.Query().Get("period"), h.cfg.Now())
	if err != nil {
		return p, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: "period", Message: "period: " + err.Error()}
	}
	return p, nil
}

// validOrigin reports whether s is an origin a frame-ancestors source may
// name: http or https, a host, an optional port, nothing else.
func validOrigin(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	return !strings.ContainsAny(s, " ;,'\"*")
}

// ParseFrameOrigins reads ORG=ORIGIN[,ORIGIN...] entries (the
// --portal-frame-origin flag) into FrameOrigins.
func ParseFrameOrigins(entries []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, e := range entries {
		org, list, ok := strings.Cut(e, "=")
		org = strings.TrimSpace(org)
		if !ok || org == "" {
			return nil, fmt.Errorf("%q: want ORG=https://site.example[,https://other.example]", e)
		}
		for _, o := range strings.Split(list, ",") {
			o = strings.TrimRight(strings.TrimSpace(o), "/")
			if !validOrigin(o) {
				return nil, fmt.Errorf("%q: %q is not an origin (http or https://host[:port], no path)", e, o)
			}
			if !slices.Contains(out[org], o) {
				out[org] = append(out[org], o)
			}
		}
	}
	return out, nil
}
