// Package server is apimeter's HTTP API: the Moesif-compatible collector
// (/v1/events, /v1/users, /v1/companies, /v1/config, /v1/rules), the read
// API for recent events, and the health endpoint. Every error answer is
// JSON built in one place (errors.go). Read and admin routes sit behind a
// key check chosen by their pattern (auth.go); the keys themselves are
// package auth's.
package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// Defaults for Config's limits.
const (
	DefaultMaxBodyBytes        = 32 << 20
	DefaultMaxBatchEvents      = 10000
	DefaultMaxHeaderValueBytes = eventcap.DefaultMaxHeaderValueBytes
	DefaultMaxURIBytes         = eventcap.DefaultMaxURIBytes
	DefaultMaxMetadataBytes    = eventcap.DefaultMaxMetadataBytes
	DefaultMaxClockSkew        = 24 * time.Hour
)

// Config wires a Server. Store, Apps and Scrubber are required.
type Config struct {
	Store    apimeter.Store
	Apps     *apps.Registry
	Scrubber *scrub.Scrubber
	// Identifier, when set, resolves who made each call before scrubbing.
	Identifier apimeter.Identifier
	// Sinks are told about newly stored events (usage counters, streams).
	Sinks []apimeter.Sink
	// MaxBodyBytes caps a request body, after gzip decoding. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBatchEvents caps the events (or profiles) in one batch. Zero
	// means DefaultMaxBatchEvents. Decoding stops at the first event past
	// it, and a batch's decoded events may take at most twice MaxBodyBytes
	// as moesif.DecodedSize counts them, so that a request's memory is
	// bounded by the limits whatever its body holds.
	MaxBatchEvents int
	// Auth finds what the credential of a read or admin request allows
	// (see auth.go). Nil closes every read and admin route (401).
	Auth Authorizer
	// AuthLimiter, when set, throttles failed authentication per client
	// address on every route behind the key check (429 with Retry-After).
	AuthLimiter *AuthLimiter
	// MaxHeaderValueBytes caps each header value, MaxURIBytes an event's
	// request.uri and MaxMetadataBytes the JSON text of an event's or a
	// profile's metadata; an event over a cap is refused with a 400 naming
	// the field. Zero means the Default of each.
	MaxHeaderValueBytes int
	MaxURIBytes         int
	MaxMetadataBytes    int
	// MaxClockSkew is how far after this server's clock an event's
	// request.time may be; a later event is refused with a 400 naming it.
	// Zero means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// Stream bounds the live event stream (GET .../events/stream).
	Stream StreamConfig
	// QueryTimeout bounds each read query (events, profiles, and the
	// Metrics API given Queries()). Zero means DefaultQueryTimeout.
	QueryTimeout time.Duration
	Logger       *slog.Logger
	// Registerer, when set, gets the collector's Prometheus metrics.
	Registerer prometheus.Registerer
	// Ready are the checks /readyz runs.
	Ready []ReadyCheck
}

// Server serves apimeter's HTTP API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	// stream is told about stored events after the sinks.
	stream *Stream
	// guarded lists the patterns registered behind the key check.
	guarded []Route
	// patterns lists every pattern registered on mux, in order.
	patterns []string

	eventsStored     atomic.Int64
	eventsDuplicates atomic.Int64
	batchesRejected  atomic.Int64

	metrics *metrics
	// logLimit keeps one bad sender from flooding the log.
	logLimit *logLimiter
	queries  *Queries
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBatchEvents == 0 {
		cfg.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if cfg.MaxHeaderValueBytes == 0 {
		cfg.MaxHeaderValueBytes = DefaultMaxHeaderValueBytes
	}
	if cfg.MaxURIBytes == 0 {
		cfg.MaxURIBytes = DefaultMaxURIBytes
	}
	if cfg.MaxMetadataBytes == 0 {
		cfg.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), stream: NewStream(cfg.Stream),
		metrics: newMetrics(cfg.Registerer), logLimit: newLogLimiter(10 * time.Second),
		queries: NewQueries(cfg.QueryTimeout)}
	s.routes()
	return s
}

// Handle adds a handler to the server's mux (for parts wired in cmd/),
// behind the key check its pattern calls for (RouteScope): every route
// under /v1/o/{org}/... needs a key of that org without more being done.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.HandleScope(pattern, RouteScope(pattern), h)
}

// HandleScope adds a handler that needs a key of the given scope (Public:
// none). A Read route registered without a method needs Admin for methods
// other than GET and HEAD.
func (s *Server) HandleScope(pattern string, need Scope, h http.Handler) {
	if need == Public {
		s.handle(pattern, h)
		return
	}
	method, path := splitPattern(pattern)
	s.handle(pattern, s.guard(need, method == "", strings.Contains(path, "{org}"), h))
	s.guarded = append(s.guarded, Route{Pattern: pattern, Scope: need})
}

// handle registers h on the mux and keeps its pattern for Patterns.
func (s *Server) handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.patterns = append(s.patterns, pattern)
}

// Route is a registered pattern and the scope it needs.
type Route struct {
	Pattern string
	Scope   Scope
}

// Routes lists the routes registered behind the key check, in order (tests
// walk them all).
func (s *Server) Routes() []Route { return append([]Route(nil), s.guarded...) }

// Patterns lists every pattern registered on the server's mux, with or
// without the key check, in order: what docs/openapi.yaml must describe.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }

// Queries bounds the server's read queries; the Metrics API runs its own
// under it, and cmd/ stops it on shutdown (http.Server.RegisterOnShutdown)
// so that no query holds the shutdown up.
func (s *Server) Queries() *Queries { return s.queries }

// Stream returns the live event stream; cmd/ closes it on shutdown
// (http.Server.RegisterOnShutdown) so open streams do not hold the
// server up.
func (s *Server) Stream() *Stream { return s.stream }

// streamEvents serves the live stream. Its routes always carry the grant
// (handleStream): the stream is counted against the key, and the key is
// checked again every StreamConfig.Recheck, so that a revoked key stops
// streaming as it stops everything else.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) {
	g, ok := GrantFrom(r.Context())
	if !ok {
		s.writeError(w, r, newError(http.StatusUnauthorized, "unauthorized", "this route needs a key"))
		return
	}
	recheck := func() error {
		_, err := s.authorize(r, Read)
		return err
	}
	s.stream.serve(w, r, s.writeError, g.KeyID, recheck)
}

// handleStream registers a stream route behind the key check with the
// grant always carried in the request.
func (s *Server) handleStream(pattern string) {
	s.handle(pattern, s.guard(Read, false, false, http.HandlerFunc(s.streamEvents)))
	s.guarded = append(s.guarded, Route{Pattern: pattern, Scope: Read})
}

// ServeHTTP implements http.Handler.
// Every answer says nosniff: JSON (which may echo what a client sent) and
// the dashboard's files are never to be read as anything but their type.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := pathError(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	s.handle("POST /v1/events", http.HandlerFunc(s.counted("events", s.collect(false))))
	s.handle("POST /v1/events/batch", http.HandlerFunc(s.counted("events_batch", s.collect(true))))
	for _, kind := range []string{"user", "company", "subscription", "action"} {
		plural := map[string]string{"user": "users", "company": "companies", "subscription": "subscriptions", "action": "actions"}[kind]
		s.handle("POST /v1/"+plural, http.HandlerFunc(s.counted(plural, s.profiles(kind, false))))
		s.handle("POST /v1/"+plural+"/batch", http.HandlerFunc(s.counted(plural+"_batch", s.profiles(kind, true))))
	}
	s.handle("GET /v1/config", http.HandlerFunc(s.config))
	s.handle("GET /v1/rules", http.HandlerFunc(s.rules))
	s.handle("GET /health/probe", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]any{"status": true, "region": "apimeter"})
	}))
	s.Handle("GET /v1/o/{org}/environments/{env}/events", http.HandlerFunc(s.listEvents))
	s.Handle("GET /v1/o/{org}/e/{env}/events", http.HandlerFunc(s.listEvents))
	s.handleStream("GET /v1/o/{org}/environments/{env}/events/stream")
	s.handleStream("GET /v1/o/{org}/e/{env}/events/stream")
	s.Handle("GET /v1/o/{org}/environments/{env}/users/{id}", s.getProfile("user"))
	s.Handle("GET /v1/o/{org}/environments/{env}/companies/{id}", s.getProfile("company"))
	s.handle("GET /readyz", http.HandlerFunc(s.readyz))
	// /healthz says the process is up and answering; whether it can store
	// events is /readyz's question.
	s.handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]any{
			"status": "ok",
			"events": map[string]int64{
				"stored":           s.eventsStored.Load(),
				"duplicates":       s.eventsDuplicates.Load(),
				"batches_rejected": s.batchesRejected.Load(),
			},
		})
	}))
	s.handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, newError(http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
	}))
}

// AppIDHeader carries the application id (write key) of a sender.
const AppIDHeader = "X-Moesif-Application-Id"

// Tags Moesif's SDKs compare between /v1/config, /v1/rules and collector
// answers; a change would make them fetch the configuration again.
const (
	configETag = "apimeter-config-1"
	rulesTag   = "apimeter-rules-1"
)

func (s *Server) app(w http.ResponseWriter, r *http.Request) (apps.App, error) {
	w.Header().Set("X-Moesif-Config-ETag", configETag)
	w.Header().Set("X-Moesif-Rules-Tag", rulesTag)
	id := strings.TrimSpace(r.Header.Get(AppIDHeader))
	if id == "" {
		return apps.App{}, newError(http.StatusUnauthorized, "missing_application_id", "the "+AppIDHeader+" header is required; create an id with `apimeter apps create`")
	}
	a, ok := s.cfg.Apps.Lookup(id)
	if !ok {
		return apps.App{}, newError(http.StatusUnauthorized, "unknown_application_id", "the "+AppIDHeader+" header names no known application")
	}
	return a, nil
}

// body returns the request body, gzip-decoded when the sender says so,
// limited to MaxBodyBytes after decoding.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (io.Reader, func(), error) {
	var rd io.Reader = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	done := func() {}
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			if tooLarge(err) {
				return nil, done, s.tooLarge()
			}
			return nil, done, newError(http.StatusBadRequest, "invalid_gzip", "body is not valid gzip: "+err.Error())
		}
		done = func() { zr.Close() }
		rd = http.MaxBytesReader(w, zr, s.cfg.MaxBodyBytes)
	default:
		return nil, done, newError(http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding must be gzip or absent")
	}
	return rd, done, nil
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

func (s *Server) tooLarge() error {
	return newError(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes (after gzip decoding)", s.cfg.MaxBodyBytes))
}

// decodeErr turns a JSON decoding error for event index (or -1) into an
// APIError that says where and what.
func (s *Server) decodeErr(err error, index int) error {
	if tooLarge(err) {
		return s.tooLarge()
	}
	at := ""
	var idx *int
	if index >= 0 {
		at = fmt.Sprintf("event %d: ", index)
		idx = &index
	}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var le *moesif.LimitError
	switch {
	case errors.As(err, &le):
		return s.limitErr(le)
	case errors.Is(err, jsontext.ErrTooManyHeaders):
		return &APIError{Status: http.StatusRequestEntityTooLarge, Code: "too_many_headers", Index: idx,
			Message: fmt.Sprintf("%sa request or response may carry at most %d headers", at, jsontext.MaxHeaders)}
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return &APIError{Status: http.StatusBadRequest, Code: "invalid_type", Index: idx, Field: te.Field,
			Message: fmt.Sprintf("%s%s: must be %s, got JSON %s", at, field, jsonKind(te.Type.Kind().String()), te.Value)}
	case errors.As(err, &se):
		return &APIError{Status: http.StatusBadRequest, Code: "malformed_json", Index: idx,
			Message: fmt.Sprintf("%smalformed JSON at byte %d: %v", at, se.Offset, se)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &APIError{Status: http.StatusBadRequest, Code: "malformed_json", Index: idx, Message: at + "malformed JSON: unexpected end of body"}
	}
	return &APIError{Status: http.StatusBadRequest, Code: "invalid_json", Index: idx, Message: at + err.Error()}
}

// limits are the bounds of one batch's decoding.
func (s *Server) limits() moesif.Limits {
	return moesif.Limits{MaxEvents: s.cfg.MaxBatchEvents, MaxDecoded: 2 * s.cfg.MaxBodyBytes}
}

func (s *Server) limitErr(le *moesif.LimitError) *APIError {
	if le.Events {
		return newError(http.StatusRequestEntityTooLarge, "batch_too_large", fmt.Sprintf("a batch may hold at most %d events", s.cfg.MaxBatchEvents))
	}
	i := le.Index
	return &APIError{Status: http.StatusRequestEntityTooLarge, Code: "batch_too_large", Index: &i,
		Message: fmt.Sprintf("event %d: the batch's events take more than %d bytes decoded (twice the body limit); send smaller batches", i, le.Limit)}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int32", "float64":
		return "a number"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return k
}

// collect handles /v1/events (one event) and /v1/events/batch (an array).
// A batch is atomic: if any event is invalid, none is stored and the answer
// names the first bad event's index and field.
func (s *Server) collect(batch bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.app(w, r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		events, err := s.decodeEvents(w, r, a, batch)
		if err != nil {
			s.batchesRejected.Add(1)
			s.logRejected(r, a, err)
			s.writeError(w, r, err)
			return
		}
		res, err := s.ingest(r.Context(), events)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]int{"stored": len(res.Stored), "duplicates": res.Duplicates})
	}
}

func (s *Server) decodeEvents(w http.ResponseWriter, r *http.Request, a apps.App, batch bool) ([]apimeter.Event, error) {
	rd, done, err := s.body(w, r)
	defer done()
	if err != nil {
		return nil, err
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(rd); err != nil {
		if tooLarge(err) {
			return nil, s.tooLarge()
		}
		return nil, newError(http.StatusBadRequest, "read_body", "reading the body: "+err.Error())
	}
	body := buf.Bytes()
	var ms []moesif.Event
	if batch {
		// The fast decoder takes the whole batch at once; when it declines,
		// the standard one walks the batch to say which event is bad. Both
		// stop where the batch passes a limit.
		var le *moesif.LimitError
		if ms, err = moesif.DecodeBatch(body, s.limits()); errors.As(err, &le) {
			return nil, s.limitErr(le)
		} else if err != nil {
			if ms, err = s.decodeBatchSlow(body); err != nil {
				return nil, err
			}
		}
		if len(ms) == 0 {
			return nil, newError(http.StatusBadRequest, "empty_batch", "the batch holds no events")
		}
	} else {
		ms = make([]moesif.Event, 1)
		if err := json.Unmarshal(body, &ms[0]); err != nil {
			return nil, s.decodeErr(err, -1)
		}
	}
	events := make([]apimeter.Event, len(ms))
	latest := time.Now().Add(s.cfg.MaxClockSkew)
	for i := range ms {
		index := i
		if !batch {
			index = -1
		}
		if events[i], err = ms[i].ToEvent(a.Org, a.Env, index); err != nil {
			return nil, err
		}
		if err := s.checkCaps(&events[i], index); err != nil {
			return nil, err
		}
		if events[i].RequestTime.After(latest) {
			return nil, &moesif.FieldError{Index: index, Field: "request.time", Msg: fmt.Sprintf(
				"is %s, more than %s after this server's clock (%s): fix the sender's clock, or raise --max-clock-skew",
				events[i].RequestTime.Format(time.RFC3339), s.cfg.MaxClockSkew, time.Now().UTC().Format(time.RFC3339))}
		}
	}
	moesif.NumberRepeats(ms, events)
	return events, nil
}

// checkCaps refuses an event whose URI, a header value or metadata is
// longer than its cap.
func (s *Server) checkCaps(e *apimeter.Event, index int) error {
	return s.EventLimits().Check(e, index)
}

// EventLimits are the per-event caps of this server's collector, for the
// entry points that store through other paths (package eventcap).
func (s *Server) EventLimits() eventcap.Limits {
	return eventcap.Limits{MaxHeaderValueBytes: s.cfg.MaxHeaderValueBytes, MaxURIBytes: s.cfg.MaxURIBytes, MaxMetadataBytes: s.cfg.MaxMetadataBytes}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeBatchSlow decodes a batch with encoding/json, event by event, so
// that a bad event is named by its index. It runs when the fast decoder
// refused the batch.
func (s *Server) decodeBatchSlow(body []byte) ([]moesif.Event, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, s.decodeErr(err, -1)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, newError(http.StatusBadRequest, "invalid_batch", "a batch must be a JSON array of events")
	}
	var ms []moesif.Event
	lim := s.limits()
	var used int64
	for i := 0; dec.More(); i++ {
		if i >= lim.MaxEvents {
			return nil, s.limitErr(&moesif.LimitError{Index: i, Events: true, Limit: int64(lim.MaxEvents)})
		}
		var m moesif.Event
		if err := dec.Decode(&m); err != nil {
			return nil, s.decodeErr(err, i)
		}
		if err := lim.Check(i, &m, &used); err != nil {
			return nil, s.decodeErr(err, i)
		}
		ms = append(ms, m)
	}
	if _, err := dec.Token(); err != nil {
		return nil, s.decodeErr(err, -1)
	}
	if dec.More() {
		return nil, newError(http.StatusBadRequest, "malformed_json", "malformed JSON: data after the batch array")
	}
	return ms, nil
}

// ingest identifies, scrubs and stores events, then tells the sinks.
func (s *Server) ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	if s.cfg.Identifier != nil {
		if err := s.cfg.Identifier.Identify(ctx, events); err != nil {
			// The alias table (Redis, or the embedded store) did not
			// answer: nothing is stored, and the sender may retry.
			org, env := events[0].Org, events[0].Env
			if ok, held := s.logLimit.allow("identify\x00"+org+"\x00"+env, time.Now()); ok {
				s.log.Error("identify events", "org", org, "env", env, "events", len(events), "err", err, "similar_lines_held_back", held)
			}
			return apimeter.AppendResult{}, &APIError{Status: http.StatusServiceUnavailable, Code: "identity_unavailable",
				Message: "the alias table could not be read; nothing was acknowledged, retry later"}
		}
	}
	// Entry points other than the collector (which refuses an event over
	// a cap) cannot send a call back: it is cut to the caps and marked, so
	// that nothing is stored that a read cannot serve.
	lim := s.EventLimits()
	for i := range events {
		if lim.Truncate(&events[i]) {
			s.metrics.events.WithLabelValues("truncated").Inc()
		}
		s.cfg.Scrubber.Scrub(&events[i])
	}
	res, err := s.cfg.Store.Append(ctx, events)
	if err != nil {
		// Nothing of the batch is acknowledged: the sender keeps it and may
		// retry, which is safe because ingest is idempotent.
		org, env := events[0].Org, events[0].Env
		if ok, held := s.logLimit.allow("store\x00"+org+"\x00"+env, time.Now()); ok {
			s.log.Error("store events", "org", org, "env", env, "events", len(events), "err", err, "similar_lines_held_back", held)
		}
		return res, &APIError{Status: http.StatusServiceUnavailable, Code: "store_unavailable",
			Message: "the events could not be stored; nothing was acknowledged, retry later"}
	}
	s.eventsStored.Add(int64(len(res.Stored)))
	s.eventsDuplicates.Add(int64(res.Duplicates))
	s.metrics.events.WithLabelValues("stored").Add(float64(len(res.Stored)))
	s.metrics.events.WithLabelValues("duplicate").Add(float64(res.Duplicates))
	for _, sink := range s.cfg.Sinks {
		if err := sink.Stored(ctx, res.Stored); err != nil {
			s.log.Error("sink", "err", err)
		}
	}
	if err := s.stream.Stored(ctx, res.Stored); err != nil {
		s.log.Error("event stream", "err", err)
	}
	return res, nil
}

// Ingest runs events through the same path as the collector (identify,
// scrub, store, sinks). Other entry points (gateway, Kafka consumer, demo)
// use it.
func (s *Server) Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	return s.ingest(ctx, events)
}
