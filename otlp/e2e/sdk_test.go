package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// The sample API the tests instrument with otelhttp: three routes; the
// status comes from the query, the user from X-User (set on the span as
// user.id, as an app does) or from a bearer JWT (captured as the
// http.request.header.authorization attribute, as header capture does).
func sampleAPI() http.Handler {
	mux := http.NewServeMux()
	h := func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		// GET /users/{id} leaves the route to otelhttp's span name
		// ("GET /users/{id}", from the ServeMux pattern); the others set
		// http.route as the conventions ask.
		if _, route, _ := strings.Cut(r.Pattern, " "); !strings.Contains(route, "{") {
			span.SetAttributes(attribute.String("http.route", route))
		}
		if u := r.Header.Get("X-User"); u != "" {
			span.SetAttributes(attribute.String("user.id", u))
		}
		if a := r.Header.Get("Authorization"); a != "" {
			span.SetAttributes(attribute.StringSlice("http.request.header.authorization", []string{a}))
		}
		status, _ := strconv.Atoi(r.URL.Query().Get("status"))
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"ok":%t}`, status < 400)
	}
	for _, p := range []string{"GET /users/{id}", "POST /orders", "GET /health"} {
		mux.HandleFunc(p, h)
	}
	return mux
}

// call is one planned call to the sample API and what the Metrics API
// must then count it under.
type call struct {
	user, method, path, route string
	status                    int
}

var carolJWT = func() string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "carol", "tenant": "globex"}).SignedString([]byte("sample-secret"))
	if err != nil {
		panic(err)
	}
	return s
}()

// plan returns n calls spread over three users, three routes and five
// statuses.
func plan(n int) []call {
	routes := []struct{ method, path, route string }{
		{"GET", "/users/%d", "/users/{id}"},
		{"POST", "/orders", "/orders"},
		{"GET", "/health", "/health"},
	}
	statuses := []int{200, 201, 404, 500, 400}
	users := []string{"alice", "bob", "carol"}
	out := make([]call, n)
	for i := range out {
		r := routes[(i/3)%len(routes)]
		path := r.path
		if strings.Contains(path, "%d") {
			path = fmt.Sprintf(path, i)
		}
		out[i] = call{user: users[i%len(users)], method: r.method, path: path, route: r.route, status: statuses[(i/7)%len(statuses)]}
	}
	return out
}

func want(calls []call) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		m[fmt.Sprintf("%s,%s,%d", c.user, c.route, c.status)]++
	}
	return m
}

// errs collects what the SDK reports through otel.Handle (failed exports,
// partial-success answers).
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) Handle(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) all() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.list...)
}

func catchOtelErrors(t *testing.T) *errs {
	e := &errs{}
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(e)
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	return e
}

// runSample instruments the sample API and a client of it with one SDK
// tracer provider exporting to endpoint, makes the calls, and flushes.
func runSample(t *testing.T, endpoint string, calls []call, opts ...otlptracehttp.Option) {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, append([]otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(16), sdktrace.WithBatchTimeout(time.Hour)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "orders-api"), attribute.String("service.version", "2.1.0"))),
	)
	defer tp.Shutdown(ctx)
	api := httptest.NewServer(otelhttp.NewHandler(sampleAPI(), "sample", otelhttp.WithTracerProvider(tp)))
	defer api.Close()
	// The client's calls are traced too: CLIENT spans in the same exports.
	client := &http.Client{Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tp))}
	for _, c := range calls {
		var body io.Reader
		if c.method == "POST" {
			body = strings.NewReader(`{"item":"book","qty":1}`)
		}
		req, _ := http.NewRequest(c.method, api.URL+c.path+"?status="+strconv.Itoa(c.status), body)
		if c.user == "carol" {
			req.Header.Set("Authorization", "Bearer "+carolJWT)
		} else {
			req.Header.Set("X-User", c.user)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("sample API answered %d, want %d", resp.StatusCode, c.status)
		}
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// TestSDKExport: the OpenTelemetry Go SDK's own exporter, over protobuf
// and over JSON, gzip or not, with the application id as a bearer token or
// in X-Moesif-Application-Id: the Metrics API counts exactly the calls made,
// by user, route and status; the CLIENT spans of the same exports are not
// counted; the JWT identifies its user and company and is stored only as a
// fingerprint.
func TestSDKExport(t *testing.T) {
	for _, c := range []struct {
		name string
		opts func(appID string) []otlptracehttp.Option
	}{
		{"protobuf", func(id string) []otlptracehttp.Option {
			return []otlptracehttp.Option{otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + id})}
		}},
		{"protobuf-gzip", func(id string) []otlptracehttp.Option {
			return []otlptracehttp.Option{otlptracehttp.WithHeaders(map[string]string{"X-Moesif-Application-Id": id}),
				otlptracehttp.WithCompression(otlptracehttp.GzipCompression)}
		}},
		{"json", func(id string) []otlptracehttp.Option {
			return []otlptracehttp.Option{otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + id}),
				otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON)}
		}},
		{"json-gzip", func(id string) []otlptracehttp.Option {
			return []otlptracehttp.Option{otlptracehttp.WithHeaders(map[string]string{"X-Moesif-Application-Id": id}),
				otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON), otlptracehttp.WithCompression(otlptracehttp.GzipCompression)}
		}},
	} {
		for _, engine := range []string{"duckdb", "clickhouse"} {
			if engine == "clickhouse" && strings.HasSuffix(c.name, "gzip") {
				continue // gzip is the receiver's, not the store's: DuckDB alone
			}
			t.Run(c.name+"/"+engine, func(t *testing.T) {
				oerrs := catchOtelErrors(t)
				e := newEnv(t, envOptions{clickhouse: engine == "clickhouse"})
				calls := plan(75)
				// The exporter's requests are counted on their way in, to be
				// sure of the encoding they used.
				var contentTypes sync.Map
				front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					contentTypes.Store(r.Header.Get("Content-Type")+" "+r.Header.Get("Content-Encoding"), true)
					e.srv.ServeHTTP(w, r)
				}))
				defer front.Close()
				runSample(t, front.URL+"/v1/traces", calls, c.opts(e.appID)...)
				if errs := oerrs.all(); len(errs) > 0 {
					t.Fatalf("the SDK reported export errors: %v", errs)
				}
				var seen []string
				contentTypes.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
				wantCT := "application/x-protobuf"
				if strings.HasPrefix(c.name, "json") {
					wantCT = "application/json"
				}
				if len(seen) != 1 || !strings.HasPrefix(seen[0], wantCT) || strings.HasSuffix(c.name, "gzip") != strings.HasSuffix(seen[0], "gzip") {
					t.Fatalf("exporter sent %q, want %s (gzip: %v)", seen, wantCT, strings.HasSuffix(c.name, "gzip"))
				}

				if strings.HasPrefix(c.name, "json") {
					// The SDK's OTLP/JSON is read by the fast reader, none of
					// it left to protojson.
					fast := e.counter("apimeter_otlp_json_exports_total", map[string]string{"signal": "traces", "decoder": "fast"})
					slow := e.counter("apimeter_otlp_json_exports_total", map[string]string{"signal": "traces", "decoder": "protojson"})
					if fast == 0 || slow != 0 {
						t.Fatalf("OTLP/JSON exports read by the fast reader %v, by protojson %v", fast, slow)
					}
				}
				got := e.metrics("user_id,route,response_status_code")
				if w := want(calls); !equalCounts(got, w) {
					t.Fatalf("Metrics API by user, route, status:\n got  %v\n want %v", got, w)
				}
				total := 0
				for _, n := range got {
					total += n
				}
				if total != len(calls) {
					t.Fatalf("Metrics API counts %d calls, %d were made (client spans counted?)", total, len(calls))
				}
				if n := e.counter("apimeter_otlp_spans_total", map[string]string{"kind": "client", "result": "ignored"}); n != float64(len(calls)) {
					t.Fatalf("client spans ignored: %v, want %d", n, len(calls))
				}
				if got := e.metrics("apiproxy"); got["orders-api"] != len(calls) {
					t.Fatalf("by apiproxy (service.name): %v", got)
				}
				if got := e.metrics("company_id"); got["globex"] != len(calls)/3 {
					t.Fatalf("by company (the JWT's tenant claim through the company rule): %v, want globex=%d", got, len(calls)/3)
				}
				// The JWT reached identity (carol is counted) and then the
				// scrubber: no stored column holds it, or its signature.
				sig := carolJWT[strings.LastIndexByte(carolJWT, '.')+1:]
				rows := e.rows()
				if len(rows) != len(calls) {
					t.Fatalf("%d rows stored, want %d", len(rows), len(calls))
				}
				for _, r := range rows {
					if strings.Contains(r, sig) || strings.Contains(r, carolJWT) {
						t.Fatalf("a stored row holds the bearer token: %s", r)
					}
					if !strings.Contains(r, `"trace_id":"`) {
						t.Fatalf("a stored row lacks its trace id: %s", r)
					}
				}
			})
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSDKRetryCountedOnce: the answer to the first export is lost (a
// proxy in front answers 503 after apimeter stored it); the SDK's exporter
// retries the same spans, which are counted once.
func TestSDKRetryCountedOnce(t *testing.T) {
	for _, engine := range []string{"duckdb", "clickhouse"} {
		t.Run(engine, func(t *testing.T) { testRetry(t, envOptions{clickhouse: engine == "clickhouse"}) })
	}
}

func testRetry(t *testing.T, opts envOptions) {
	oerrs := catchOtelErrors(t)
	e := newEnv(t, opts)
	var forwarded, lost atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, r)
		forwarded.Add(1)
		if rec.Code == 200 && lost.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // stored, but the exporter hears otherwise
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer front.Close()
	calls := plan(30)
	runSample(t, front.URL+"/v1/traces", calls,
		otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer " + e.appID}),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: time.Millisecond, MaxInterval: 10 * time.Millisecond, MaxElapsedTime: time.Minute}))
	if errs := oerrs.all(); len(errs) > 0 {
		t.Fatalf("the SDK reported export errors: %v", errs)
	}
	if lost.Load() < 2 {
		t.Fatalf("the exporter did not retry (%d exports reached apimeter)", forwarded.Load())
	}
	dups := e.counter("apimeter_otlp_spans_total", map[string]string{"kind": "server", "result": "duplicate"})
	if dups == 0 {
		t.Fatal("the retried export's spans were not seen as duplicates")
	}
	got := e.metrics("user_id,route,response_status_code")
	if w := want(calls); !equalCounts(got, w) {
		t.Fatalf("after a retried export, Metrics API:\n got  %v\n want %v", got, w)
	}
	t.Logf("%d exports reached apimeter for %d calls; %v spans were duplicates of the lost answer's", forwarded.Load(), len(calls), dups)
}
