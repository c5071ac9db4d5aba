package capture

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/scrub"
)

// Defaults for Options.
const (
	DefaultMaxBodyBytes  = scrub.DefaultBodyCap
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 500
	DefaultFlushInterval = time.Second
)

// Response is what the middleware saw of the response, given to the
// callbacks of Options after the wrapped handler has returned.
type Response struct {
	// Status is the status written (200 when the handler wrote nothing,
	// 101 after a hijack without a status).
	Status int
	// Header is the handler's response header map. Do not modify it.
	Header http.Header
	// Size is the number of response body bytes written.
	Size int64
}

// Target is where a proxy sent a call: the upstream URL and the time the
// upstream took. A zero Target means the call was not forwarded.
type Target struct {
	URL     string
	Latency time.Duration
}

// Options configure a Capture. Only Sink is required; every other zero value
// is a working default. The callbacks run on the request's goroutine after
// the wrapped handler returned; a panic in one is recovered, counted in
// Stats.Panics and treated as if it had returned the zero value.
type Options struct {
	// Sink receives batches of scrubbed events. Required.
	Sink Sink

	// IdentifyUser returns the user id of a call. When nil or when it
	// returns "", the user is the "sub" claim of an "Authorization: Bearer"
	// JWT (verified only when JWTKey is set).
	IdentifyUser func(r *http.Request, res Response) string
	// IdentifyCompany returns the company id of a call. Nil means none.
	IdentifyCompany func(r *http.Request, res Response) string
	// SessionToken returns the session token or API key of a call; it
	// leaves the process only as a fingerprint.
	SessionToken func(r *http.Request, res Response) string
	// Metadata returns extra fields stored with the event (a JSON object).
	Metadata func(r *http.Request, res Response) map[string]any
	// Skip reports whether a call is not recorded at all.
	Skip func(r *http.Request, res Response) bool
	// Mask is the last chance to edit an event before it is sent. It runs
	// on the sending goroutine and sees the event already scrubbed; the
	// event is scrubbed again after it, so Mask cannot leak a secret header.
	// The event and its strings may point into reused buffers: do not keep
	// them after Mask returns (copy what you need).
	Mask func(e *apimeter.Event)

	// ClientIP returns the caller's address. Nil means the host of
	// r.RemoteAddr; behind a proxy you run, ForwardedFor takes the address
	// it appended to X-Forwarded-For. A result that is not an IP address
	// is ignored (the peer's is kept).
	ClientIP func(r *http.Request) string

	// RouteFunc returns the route template of a call (e.g.
	// "/accounts/{id}/message"). Nil means Go's ServeMux pattern
	// (r.Pattern without its method and host). See docs/capture.md for chi
	// and gorilla/mux.
	RouteFunc func(r *http.Request) string

	// Routes is the ServeMux the wrapped handler dispatches with, when
	// something between the middleware and it may answer first: an auth
	// check's 401 never reaches the mux, so r.Pattern stays empty and the
	// call would have no route. With Routes, such a call gets the pattern
	// the mux would have chosen (Routes.Handler(r), which matches without
	// running anything). Unused when RouteFunc is set.
	Routes RouteMatcher

	// Target returns where a proxy forwarded the call and how long the
	// upstream took (the event's TargetURL and TargetLatencyMs, Apigee's
	// target_url and target_response_time). Nil means the calls are not
	// forwarded; the gateway package sets it.
	Target func(r *http.Request, res Response) Target

	// LogBody turns body capture on. Bodies can hold personal data, so it
	// is off unless asked for.
	LogBody bool
	// MaxBodyBytes is how many bytes of each body are kept. Zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int

	// SampleRate is the share of calls recorded, in (0, 1]. Zero means 1.
	// Each recorded event carries weight round(1/SampleRate), so counts
	// stay right.
	SampleRate float64

	// TrustTransactionID takes the caller's X-Moesif-Transaction-Id
	// request header as the event id. Ingest is idempotent on the id, so a
	// caller who can choose it can make its own calls count once: set it
	// only behind a gateway you run that sets the header. By default every
	// call gets a new id.
	TrustTransactionID bool

	// DisableTransactionID leaves out the X-Moesif-Transaction-Id response
	// header (Moesif's disableTransactionId); events keep their ids. The
	// header lets a caller quote the id of a call to you; it costs the
	// server and every client a header per response.
	DisableTransactionID bool

	// APIName names the API. Empty means the request's host, without port.
	APIName string

	// JWTKey, when set, makes the default user identification verify the
	// Bearer JWT's signature with this key ([]byte for HMAC, *rsa.PublicKey,
	// *ecdsa.PublicKey or ed25519.PublicKey); a token that fails
	// verification identifies nobody. Nil means decode without verifying.
	JWTKey any
	// JWTMethods are the accepted signing algorithms ("HS256", ...). Empty
	// means those that fit JWTKey's type.
	JWTMethods []string

	// SecretHeaders are header names scrubbed besides
	// scrub.DefaultSecretHeaders; SecretParams likewise for query
	// parameters.
	SecretHeaders []string
	SecretParams  []string

	// Caps are the collector's per-event caps (header count, header
	// value, URI and metadata sizes) that every event is cut to before it
	// leaves, so that the collector never refuses one. Zero fields mean
	// apimeter's defaults, which an apimeter collector uses unless its
	// --max-*-bytes flags say otherwise: set the same here if they do.
	Caps eventcap.Limits

	// QueueSize bounds the events waiting to be sent. Zero means
	// DefaultQueueSize.
	QueueSize int
	// BatchSize is the most events handed to the Sink at once. Zero means
	// DefaultBatchSize: 500, because each batch has a fixed cost (an HTTP
	// request, a gzip stream), which at 100 events was a quarter of the
	// HTTP sink's CPU per event. A batch also ends when its bodies reach
	// 8 MiB.
	BatchSize int
	// FlushInterval is the longest an event waits for its batch to fill.
	// Zero means DefaultFlushInterval.
	FlushInterval time.Duration

	Logger *slog.Logger
}

// RouteMatcher finds the pattern a request matches without serving it;
// *http.ServeMux is one.
type RouteMatcher interface {
	Handler(r *http.Request) (h http.Handler, pattern string)
}
