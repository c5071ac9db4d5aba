package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
)

// Defaults for Config.
const (
	DefaultMaxBodyBytes   = server.DefaultMaxBodyBytes
	DefaultMaxBatchEvents = server.DefaultMaxBatchEvents
	DefaultMaxInFlight    = 64
)

// Ingester stores events through the collector's path (identify, scrub,
// store, sinks); *server.Server is one.
type Ingester interface {
	Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error)
}

// AppLookup resolves an application id; *apps.Registry is one.
type AppLookup interface {
	Lookup(id string) (apps.App, bool)
}

// Config wires a Handler. Apps and Ingest are required.
type Config struct {
	Apps   AppLookup
	Ingest Ingester
	// Check, when set, refuses an event the collector would refuse
	// (server.Server.CheckEvent); that span or record is rejected alone.
	Check func(e *apimeter.Event, index int) error
	// MaxBodyBytes caps a request body after gzip decoding (413 past it).
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBatchEvents is the most events handed to Ingest at once; a larger
	// export is stored in several parts. Zero means DefaultMaxBatchEvents.
	MaxBatchEvents int
	// MaxInFlight bounds the exports decoded and stored at once, and so
	// the memory they hold; past it the answer is 429 with Retry-After,
	// which OTLP exporters honour. Zero means DefaultMaxInFlight.
	MaxInFlight int
	Logger      *slog.Logger
	// Registerer, when set, gets the OTLP metrics.
	Registerer prometheus.Registerer
}

// Handler serves POST /v1/traces and POST /v1/logs.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	slots    chan struct{}
	metrics  *metrics
	mappers  sync.Pool
	bufs     sync.Pool
	logEvery *logLimiter
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBatchEvents <= 0 {
		cfg.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, slots: make(chan struct{}, cfg.MaxInFlight),
		metrics: newMetrics(cfg.Registerer), logEvery: &logLimiter{seen: map[string]time.Time{}}}
	h.mappers.New = func() any {
		m := &Mapper{}
		if cfg.Check != nil {
			m.Check = func(e *apimeter.Event) error { return cfg.Check(e, -1) }
		}
		return m
	}
	h.bufs.New = func() any { return new(bytes.Buffer) }
	return h
}

// Mux is where the routes are registered; *server.Server is one (the
// paths are among its collector paths: no key, an application id).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register adds POST /v1/traces and POST /v1/logs to mux.
func (h *Handler) Register(mux Mux) {
	mux.Handle("POST /v1/traces", http.HandlerFunc(h.Traces))
	mux.Handle("POST /v1/logs", http.HandlerFunc(h.Logs))
}

// encoding is the body format of a request and of its answer.
type encoding int

const (
	encProto encoding = iota
	encJSON
)

func (e encoding) contentType() string {
	if e == encJSON {
		return "application/json"
	}
	return "application/x-protobuf"
}

// Traces handles an OTLP/HTTP trace export.
func (h *Handler) Traces(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, "traces")
}

// Logs handles an OTLP/HTTP log export.
func (h *Handler) Logs(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, "logs")
}

// rpcError is an answer other than 200: an HTTP status, the gRPC code of
// the google.rpc.Status body, and a message saying what is wrong.
type rpcError struct {
	status     int
	code       codes.Code
	msg        string
	retryAfter int // seconds, 0 for none
}

func (e *rpcError) Error() string { return e.msg }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, signal string) {
	enc, encErr := requestEncoding(r.Header.Get("Content-Type"))
	status := http.StatusOK
	defer func() { h.metrics.request(signal, status) }()
	var app apps.App
	fail := func(e *rpcError) {
		status = e.status
		// A refused export is logged (once per sender, signal and status
		// every ten seconds), so that an operator sees what exporters
		// only report in their own logs.
		if h.logEvery.allow("fail\x00"+app.ID+"\x00"+signal+"\x00"+strconv.Itoa(e.status), time.Now()) {
			h.log.Warn("otlp export refused", "app", apps.ShortID(app.ID), "org", app.Org, "env", app.Env, "signal", signal,
				"status", e.status, "err", e.msg)
		}
		h.writeStatus(w, enc, e)
	}
	app, err := h.app(r)
	if err != nil {
		fail(err)
		return
	}
	if encErr != nil {
		fail(encErr)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		fail(&rpcError{status: http.StatusTooManyRequests, code: codes.ResourceExhausted, retryAfter: 1,
			msg: fmt.Sprintf("%d exports are being stored already; retry after the delay in Retry-After", h.cfg.MaxInFlight)})
		return
	}
	buf := h.bufs.Get().(*bytes.Buffer)
	defer h.bufs.Put(buf)
	buf.Reset()
	if e := h.readBody(w, r, buf); e != nil {
		fail(e)
		return
	}
	m := h.mappers.Get().(*Mapper)
	defer h.mappers.Put(m)
	var b Batch
	var what string
	switch signal {
	case "traces":
		what = "spans"
		req := &coltracepb.ExportTraceServiceRequest{}
		slow, e := decodeTraces(buf.Bytes(), enc, req)
		h.metrics.jsonDecoded(signal, enc, slow)
		if e != nil {
			fail(e)
			return
		}
		m.Traces(req, app.Org, app.Env, &b)
	default:
		what = "log records"
		req := &collogspb.ExportLogsServiceRequest{}
		slow, e := decodeLogs(buf.Bytes(), enc, req)
		h.metrics.jsonDecoded(signal, enc, slow)
		if e != nil {
			fail(e)
			return
		}
		m.Logs(req, app.Org, app.Env, &b)
	}
	stored, dups, e := h.ingest(r.Context(), app, b.Events)
	h.metrics.items(signal, &b, stored, dups)
	if e != nil {
		fail(e)
		return
	}
	if b.Rejected > 0 {
		if ok := h.logEvery.allow("reject\x00"+app.ID+"\x00"+signal, time.Now()); ok {
			h.log.Warn("otlp export partly rejected", "app", apps.ShortID(app.ID), "org", app.Org, "env", app.Env, "signal", signal,
				"rejected", b.Rejected, "stored", stored, "first", b.Messages[0])
		}
	}
	var resp proto.Message
	msg := b.Message(what)
	if signal == "traces" {
		out := &coltracepb.ExportTraceServiceResponse{}
		if b.Rejected > 0 {
			out.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: b.Rejected, ErrorMessage: msg}
		}
		resp = out
	} else {
		out := &collogspb.ExportLogsServiceResponse{}
		if b.Rejected > 0 {
			out.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: b.Rejected, ErrorMessage: msg}
		}
		resp = out
	}
	h.write(w, enc, http.StatusOK, resp)
}

// ingest hands events to the collector's path, at most MaxBatchEvents at
// a time. An error leaves the export unacknowledged: the exporter retries
// it whole, and the parts already stored are duplicates then.
func (h *Handler) ingest(ctx context.Context, app apps.App, events []apimeter.Event) (stored, dups int, e *rpcError) {
	for len(events) > 0 {
		n := min(len(events), h.cfg.MaxBatchEvents)
		res, err := h.cfg.Ingest.Ingest(ctx, events[:n])
		if err != nil {
			return stored, dups, ingestError(err)
		}
		stored += len(res.Stored)
		dups += res.Duplicates
		events = events[n:]
	}
	return stored, dups, nil
}

// ingestError answers a failed Ingest: the collector's own answer when it
// has one (503 when the store or the alias table is down), else 503, which
// exporters retry.
func ingestError(err error) *rpcError {
	var ae *server.APIError
	if errors.As(err, &ae) && ae.Status >= 400 {
		e := &rpcError{status: ae.Status, code: grpcCode(ae.Status), msg: ae.Message}
		if ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests {
			e.retryAfter = 5
		}
		return e
	}
	return &rpcError{status: http.StatusServiceUnavailable, code: codes.Unavailable, retryAfter: 5,
		msg: "the export could not be stored; nothing was acknowledged, retry later"}
}

func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	if status >= 500 {
		return codes.Internal
	}
	return codes.InvalidArgument
}

// requestEncoding reads Content-Type: OTLP/HTTP's two encodings, with or
// without parameters.
func requestEncoding(ct string) (encoding, *rpcError) {
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch strings.ToLower(mt) {
		case "application/x-protobuf", "application/protobuf":
			return encProto, nil
		case "application/json":
			return encJSON, nil
		}
	}
	// The answer's body is JSON then: it says what to send instead.
	return encJSON, &rpcError{status: http.StatusUnsupportedMediaType, code: codes.InvalidArgument,
		msg: fmt.Sprintf("Content-Type %q is not OTLP/HTTP: send application/x-protobuf or application/json", ct)}
}

// app finds the application of the request: X-Moesif-Application-Id, or
// Authorization: Bearer <application id> (what an exporter's headers
// setting is usually given).
func (h *Handler) app(r *http.Request) (apps.App, *rpcError) {
	id := strings.TrimSpace(r.Header.Get(server.AppIDHeader))
	if id == "" {
		if v, ok := cutPrefixFold(strings.TrimSpace(r.Header.Get("Authorization")), "bearer "); ok {
			id = strings.TrimSpace(v)
		}
	}
	if id == "" {
		return apps.App{}, &rpcError{status: http.StatusUnauthorized, code: codes.Unauthenticated,
			msg: "no application id: send it as " + server.AppIDHeader + " or Authorization: Bearer <application id>; create one with `apimeter apps create`"}
	}
	a, ok := h.cfg.Apps.Lookup(id)
	if !ok {
		return apps.App{}, &rpcError{status: http.StatusUnauthorized, code: codes.Unauthenticated,
			msg: "the application id names no known application"}
	}
	return a, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

// readBody reads the body, gzip-decoded when Content-Encoding says so,
// into buf, up to MaxBodyBytes after decoding.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) *rpcError {
	var rd io.Reader = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			if tooLarge(err) {
				return h.tooLarge()
			}
			return &rpcError{status: http.StatusBadRequest, code: codes.InvalidArgument, msg: "the body is not valid gzip: " + err.Error()}
		}
		defer zr.Close()
		rd = http.MaxBytesReader(w, zr, h.cfg.MaxBodyBytes)
	default:
		return &rpcError{status: http.StatusUnsupportedMediaType, code: codes.InvalidArgument,
			msg: fmt.Sprintf("Content-Encoding %q: send gzip or no encoding", r.Header.Get("Content-Encoding"))}
	}
	if _, err := buf.ReadFrom(rd); err != nil {
		if tooLarge(err) {
			return h.tooLarge()
		}
		return &rpcError{status: http.StatusBadRequest, code: codes.InvalidArgument, msg: "reading the body: " + err.Error()}
	}
	return nil
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

func (h *Handler) tooLarge() *rpcError {
	return &rpcError{status: http.StatusRequestEntityTooLarge, code: codes.InvalidArgument,
		msg: fmt.Sprintf("the body exceeds %d bytes (after gzip decoding); export smaller batches (the SDK's batch span processor: WithMaxExportBatchSize)", h.cfg.MaxBodyBytes)}
}

// jsonIn is OTLP/JSON's reading: names in lowerCamelCase or as in the
// proto, enums as names or numbers, and unknown fields ignored as the
// protocol asks of receivers.
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeTraces decodes a trace export: protobuf, or OTLP/JSON with
// jsonReader, or with protojson where jsonReader gives up (then with the
// ids fixed). protojson says whether OTLP/JSON was left to protojson.
func decodeTraces(body []byte, enc encoding, req *coltracepb.ExportTraceServiceRequest) (protojson bool, e *rpcError) {
	return decodeExport(body, enc, req, readTracesJSON, fixTraceIDs)
}

// decodeLogs is decodeTraces for log exports.
func decodeLogs(body []byte, enc encoding, req *collogspb.ExportLogsServiceRequest) (protojson bool, e *rpcError) {
	return decodeExport(body, enc, req, readLogsJSON, fixLogIDs)
}

func decodeExport[M proto.Message](body []byte, enc encoding, req M, readJSON func([]byte, M) bool, fixIDs func(M)) (bool, *rpcError) {
	if enc == encJSON {
		if readJSON(body, req) {
			return false, nil
		}
		proto.Reset(req)
	}
	if e := decode(body, enc, req); e != nil {
		return enc == encJSON, e
	}
	if enc == encJSON {
		fixIDs(req)
	}
	return enc == encJSON, nil
}

func decode(body []byte, enc encoding, m proto.Message) *rpcError {
	var err error
	what := "protobuf"
	if enc == encJSON {
		what = "OTLP/JSON"
		err = jsonIn.Unmarshal(body, m)
	} else {
		err = proto.Unmarshal(body, m)
	}
	if err != nil {
		return &rpcError{status: http.StatusBadRequest, code: codes.InvalidArgument,
			msg: fmt.Sprintf("the body is not a valid %s %s: %v", what, proto.MessageName(m).Name(), err)}
	}
	return nil
}

// OTLP/JSON writes trace and span ids as hex, where the protobuf JSON
// mapping that protojson reads expects base64. Hex digits are base64
// digits too, so protojson has read a 32-digit hex trace id as 24 bytes and
// a 16-digit span id as 12: fixID turns those back into the hex digits and
// decodes them. Ids of the right length already (a sender writing base64)
// are kept.
func fixID(id []byte, n int) []byte {
	if len(id) != n*3/2 {
		return id
	}
	text := base64.StdEncoding.EncodeToString(id)
	out := make([]byte, n)
	if _, err := hex.Decode(out, []byte(text)); err != nil {
		return id // not hex: left as it is, and refused as an id of the wrong length
	}
	return out
}

func fixTraceIDs(req *coltracepb.ExportTraceServiceRequest) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				sp.TraceId = fixID(sp.TraceId, 16)
				sp.SpanId = fixID(sp.SpanId, 8)
				sp.ParentSpanId = fixID(sp.ParentSpanId, 8)
				for _, l := range sp.GetLinks() {
					l.TraceId = fixID(l.TraceId, 16)
					l.SpanId = fixID(l.SpanId, 8)
				}
			}
		}
	}
}

func fixLogIDs(req *collogspb.ExportLogsServiceRequest) {
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				lr.TraceId = fixID(lr.TraceId, 16)
				lr.SpanId = fixID(lr.SpanId, 8)
			}
		}
	}
}

// write answers with m in the request's encoding.
func (h *Handler) write(w http.ResponseWriter, enc encoding, status int, m proto.Message) {
	var b []byte
	var err error
	if enc == encJSON {
		b, err = protojson.Marshal(m)
	} else {
		b, err = proto.Marshal(m)
	}
	if err != nil {
		// Nothing of ours fails to encode; say so plainly if it ever does.
		h.log.Error("otlp: encode answer", "err", err)
		status, b = http.StatusInternalServerError, nil
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// writeStatus answers a failed export with a google.rpc.Status body, as
// the protocol asks, and Retry-After when a retry may succeed later.
func (h *Handler) writeStatus(w http.ResponseWriter, enc encoding, e *rpcError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	h.write(w, enc, e.status, &spb.Status{Code: int32(e.code), Message: e.msg})
}

// logLimiter lets one log line per key through every ten seconds, so that
// one exporter repeating a bad export cannot flood the log.
type logLimiter struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (l *logLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.seen[key]; ok && now.Sub(t) < 10*time.Second {
		return false
	}
	if len(l.seen) >= 4096 {
		clear(l.seen)
	}
	l.seen[key] = now
	return true
}

// DecodeTraces decodes a trace export body of the given Content-Type as the
// receiver does and maps its spans into b (for benchmarks and tools).
func DecodeTraces(body []byte, contentType string, m *Mapper, org, env string, b *Batch) error {
	enc, e := requestEncoding(contentType)
	if e != nil {
		return e
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if _, e := decodeTraces(body, enc, req); e != nil {
		return e
	}
	m.Traces(req, org, env, b)
	return nil
}
