package meter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
)

// EnvHeader chooses the env of an /api/v1/... request made with a key
// (the env query parameter does too); see Handler.
const EnvHeader = "X-Apimeter-Env"

// DefaultEnv is the env of a request that names none, made with a key
// that is not bound to exactly one env.
const DefaultEnv = "prod"

// Config wires a Handler. Store, Dialect, Auth and Apps are required.
type Config struct {
	Store   Store
	Dialect Dialect
	// Auth finds the grant of a key (package auth's Guard).
	Auth server.Authorizer
	// Apps are the collector's application ids, which may ingest.
	Apps   *apps.Registry
	Limits Limits
	// MaxBodyBytes caps an ingest body; zero means
	// server.DefaultMaxBodyBytes.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Handler serves OpenMeter's API under /api/v1: POST /api/v1/events,
// the meters (GET, POST /api/v1/meters; GET, DELETE
// /api/v1/meters/{idOrSlug}) and their queries (GET
// /api/v1/meters/{idOrSlug}/query).
//
// A request's org is its key's (OpenMeter's SDK sends one Bearer key for
// everything). Its env is the env query parameter, else the X-Apimeter-Env
// header, else the key's env when it is bound to exactly one, else
// DefaultEnv. An admin key ingests, creates and deletes meters; a read key
// lists and queries them; a collector application id (as Bearer or as
// X-Moesif-Application-Id) ingests into its own org and env.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// NewHandler returns a Handler for cfg.
func NewHandler(cfg Config) *Handler {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = server.DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Handler{cfg: cfg, log: cfg.Logger}
}

// Mux is where the handler's routes go (server.Server).
type Mux interface {
	HandleScope(pattern string, need server.Scope, h http.Handler)
}

// Register adds the routes to mux.
func (h *Handler) Register(mux Mux) {
	// Ingest checks its credential itself: an application id is welcome.
	mux.HandleScope("POST /api/v1/events", server.Public, http.HandlerFunc(h.ingest))
	mux.HandleScope("GET /api/v1/meters", server.Read, http.HandlerFunc(h.list))
	mux.HandleScope("POST /api/v1/meters", server.Admin, http.HandlerFunc(h.create))
	mux.HandleScope("GET /api/v1/meters/{idOrSlug}", server.Read, http.HandlerFunc(h.get))
	mux.HandleScope("DELETE /api/v1/meters/{idOrSlug}", server.Admin, http.HandlerFunc(h.delete))
	mux.HandleScope("GET /api/v1/meters/{idOrSlug}/query", server.Read, http.HandlerFunc(h.query))
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ee *EventError
	var fe *FieldError
	switch {
	case errors.As(err, &ee):
		status := http.StatusBadRequest
		if ee.TooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		i := ee.Index
		err = &server.APIError{Status: status, Code: "invalid_event", Index: &i, Field: ee.Field, Message: ee.Error()}
	case errors.As(err, &fe):
		err = &server.APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: fe.Field, Message: fe.Error()}
	case errors.Is(err, ErrContentType):
		err = &server.APIError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: err.Error()}
	}
	server.WriteError(w, r, h.log, err)
}

func apiErr(status int, code, msg string) *server.APIError {
	return &server.APIError{Status: status, Code: code, Message: msg}
}

// envOf is the env a request made with grant g names (see Handler).
func envOf(r *http.Request, g server.Grant) string {
	if e := r.URL.Query().Get("env"); e != "" {
		return e
	}
	if e := strings.TrimSpace(r.Header.Get(EnvHeader)); e != "" {
		return e
	}
	if len(g.Envs) == 1 {
		return g.Envs[0]
	}
	return DefaultEnv
}

// scope is the org and env of a guarded request.
func scope(r *http.Request) (string, string, error) {
	g, ok := server.GrantFrom(r.Context())
	if !ok {
		return "", "", apiErr(http.StatusUnauthorized, "unauthorized", "this route needs a key")
	}
	env := envOf(r, g)
	if err := server.CheckAccess(r, g.Org, env); err != nil {
		return "", "", err
	}
	return g.Org, env, nil
}

// ingestScope is the org and env a POST /api/v1/events writes to: an
// application id's, or an admin key's org and the env it names.
func (h *Handler) ingestScope(r *http.Request) (string, string, error) {
	if id := strings.TrimSpace(r.Header.Get(server.AppIDHeader)); id != "" {
		a, ok := h.cfg.Apps.Lookup(id)
		if !ok {
			return "", "", apiErr(http.StatusUnauthorized, "unknown_application_id", "the "+server.AppIDHeader+" header names no known application")
		}
		return a.Org, a.Env, nil
	}
	if scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if a, ok := h.cfg.Apps.Lookup(strings.TrimSpace(cred)); ok {
			return a.Org, a.Env, nil
		}
	}
	if h.cfg.Auth == nil {
		return "", "", apiErr(http.StatusUnauthorized, "unauthorized", "this server has no keys configured")
	}
	g, err := h.cfg.Auth.Authenticate(r)
	switch {
	case err == nil:
	case errors.Is(err, server.ErrNoCredential):
		return "", "", apiErr(http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer KEY (an admin key, or a collector application id)")
	case errors.Is(err, server.ErrBadCredential):
		return "", "", apiErr(http.StatusUnauthorized, "invalid_key", err.Error())
	default:
		return "", "", err
	}
	if g.Scope < server.Admin {
		return "", "", apiErr(http.StatusForbidden, "forbidden", "ingesting usage events needs an admin key or an application id; the key is "+g.Scope.String())
	}
	env := envOf(r, *g)
	if !g.AllowsEnv(env) {
		return "", "", apiErr(http.StatusForbidden, "forbidden", "the key does not cover env "+env)
	}
	return g.Org, env, nil
}

// ingest handles POST /api/v1/events: answered 204 once every new event of
// the request is durable; a resent event is answered alike and not stored
// again.
func (h *Handler) ingest(w http.ResponseWriter, r *http.Request) {
	org, env, err := h.ingestScope(r)
	if err != nil {
		if ae, ok := err.(*server.APIError); ok && ae.Status == http.StatusUnauthorized {
			w.Header().Add("WWW-Authenticate", `Bearer realm="apimeter"`)
		}
		h.fail(w, r, err)
		return
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	default:
		h.fail(w, r, apiErr(http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding must be absent"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			h.fail(w, r, apiErr(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", h.cfg.MaxBodyBytes)))
			return
		}
		h.fail(w, r, apiErr(http.StatusBadRequest, "bad_body", "reading the body: "+err.Error()))
		return
	}
	events, err := Decode(r.Header.Get("Content-Type"), body, org, env, h.cfg.Now(), h.cfg.Limits)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for i := range events {
		if strings.HasPrefix(events[i].Type, ReservedTypePrefix) {
			// Such events are apimeter's own records (the billing ledger):
			// a sender must not be able to forge them.
			h.fail(w, r, &EventError{Index: i, Field: "type", Message: fmt.Sprintf("%q: types starting with %q are apimeter's own", events[i].Type, ReservedTypePrefix)})
			return
		}
	}
	if _, err := h.cfg.Store.AppendUsage(r.Context(), events); err != nil {
		h.log.Error("store usage events", "org", org, "env", env, "events", len(events), "err", err)
		h.fail(w, r, apiErr(http.StatusServiceUnavailable, "store_unavailable", "the events could not be stored; send them again"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ms, err := h.cfg.Store.Meters(r.Context(), org, env)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ms == nil {
		ms = []Meter{}
	}
	server.WriteJSON(w, http.StatusOK, ms)
}

// find returns the meter of the request's {idOrSlug}.
func (h *Handler) find(r *http.Request) (*Meter, error) {
	org, env, err := scope(r)
	if err != nil {
		return nil, err
	}
	ms, err := h.cfg.Store.Meters(r.Context(), org, env)
	if err != nil {
		return nil, err
	}
	key := r.PathValue("idOrSlug")
	for i := range ms {
		if ms[i].ID == key || ms[i].Slug == key {
			return &ms[i], nil
		}
	}
	return nil, apiErr(http.StatusNotFound, "not_found", fmt.Sprintf("no meter %q in org %s env %s", key, org, env))
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	m, err := h.find(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, m)
}

// maxMeterBytes caps a meter definition's body.
const maxMeterBytes = 64 << 10

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var m Meter
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMeterBytes))
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			h.fail(w, r, &FieldError{te.Field, "must be " + te.Type.String() + ", got JSON " + te.Value})
			return
		}
		h.fail(w, r, apiErr(http.StatusBadRequest, "malformed_json", "the meter is not valid JSON: "+err.Error()))
		return
	}
	m.Org, m.Env = org, env
	m.ID = NewID()
	m.CreatedAt = h.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := m.Validate(); err != nil {
		h.fail(w, r, err)
		return
	}
	ms, err := h.cfg.Store.Meters(r.Context(), org, env)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for _, o := range ms {
		if o.Slug == m.Slug {
			h.fail(w, r, apiErr(http.StatusConflict, "conflict", fmt.Sprintf("meter %q exists; delete it first", m.Slug)))
			return
		}
	}
	if err := h.cfg.Store.PutMeter(r.Context(), m); err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusCreated, m)
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	m, err := h.find(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.Store.DeleteMeter(r.Context(), m.Org, m.Env, m.Slug); err != nil {
		if errors.Is(err, ErrNotFound) {
			err = apiErr(http.StatusNotFound, "not_found", "no meter "+m.Slug)
		}
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	m, err := h.find(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := ParseParams(r.URL.Query(), m, h.cfg.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := Query(r.Context(), h.cfg.Store.DB(), h.cfg.Dialect, m, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, res)
}
