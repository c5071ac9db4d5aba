package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestSDKAccessLogs: access logs emitted through the OpenTelemetry Go SDK's
// log bridge API and its otlploghttp exporter (protobuf) become API calls:
// HTTP attributes on the record or in a map body; ordinary log lines are
// ignored; an access log written inside the SERVER span of the same call
// is counted once with the span; a resent export counts once.
func TestSDKAccessLogs(t *testing.T) {
	oerrs := catchOtelErrors(t)
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	var mu sync.Mutex
	var bodies [][]byte
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/logs" {
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		e.srv.ServeHTTP(w, r)
	}))
	defer front.Close()
	headers := map[string]string{"Authorization": "Bearer " + e.appID}
	res := resource.NewSchemaless(attribute.String("service.name", "edge"))

	lexp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(front.URL+"/v1/logs"), otlploghttp.WithHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp)), sdklog.WithResource(res))
	defer lp.Shutdown(ctx)
	texp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(front.URL+"/v1/traces"), otlptracehttp.WithHeaders(headers))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(texp), sdktrace.WithResource(res))
	defer tp.Shutdown(ctx)
	logger := lp.Logger("access")

	calls := plan(40)
	var spans []trace.Span
	for i, c := range calls {
		var rec otellog.Record
		now := time.Now()
		rec.SetTimestamp(now)
		kvs := []attribute.KeyValue{
			attribute.String("http.request.method", c.method), attribute.String("url.path", c.path),
			attribute.Int("http.response.status_code", c.status), attribute.String("http.route", c.route),
			attribute.String("user.id", c.user), attribute.Float64("http.server.request.duration", 0.012),
		}
		if i%2 == 0 {
			rec.AddAttributes(kvs...)
			rec.SetBody(attribute.StringValue(fmt.Sprintf("%s %s %d", c.method, c.path, c.status)))
		} else {
			rec.SetBody(attribute.MapValue(kvs...)) // a structured access log
		}
		logCtx := ctx
		if i%5 == 0 {
			// This call's server span is exported too; its access log is
			// written inside it and carries its ids.
			var span trace.Span
			logCtx, span = tp.Tracer("t").Start(ctx, c.method+" "+c.route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithTimestamp(now.Add(-12*time.Millisecond)),
				trace.WithAttributes(kvs[:5]...))
			spans = append(spans, span)
		}
		logger.Emit(logCtx, rec)
		// An ordinary log line of the same service.
		var plain otellog.Record
		plain.SetTimestamp(now)
		plain.SetBody(attribute.StringValue("cache warmed"))
		plain.AddAttributes(attribute.Int("entries", i))
		logger.Emit(ctx, plain)
	}
	// The spans end, and are exported at once (WithSyncer), before the
	// logs are.
	for _, sp := range spans {
		sp.End()
	}
	if err := lp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if errs := oerrs.all(); len(errs) > 0 {
		t.Fatalf("the SDK reported export errors: %v", errs)
	}
	check := func(when string) {
		t.Helper()
		got := e.metrics("user_id,route,response_status_code")
		if w := want(calls); !equalCounts(got, w) {
			t.Fatalf("%s: Metrics API by user, route, status:\n got  %v\n want %v", when, got, w)
		}
	}
	check("after the export")
	if n := e.counter("apimeter_otlp_log_records_total", map[string]string{"result": "ignored"}); n != float64(len(calls)) {
		t.Fatalf("plain log lines ignored: %v, want %d", n, len(calls))
	}
	if n := e.counter("apimeter_otlp_log_records_total", map[string]string{"result": "duplicate"}); n != float64(len(spans)) {
		t.Fatalf("access logs of exported spans: %v duplicates, want %d", n, len(spans))
	}
	if n := e.counter("apimeter_otlp_log_records_total", map[string]string{"result": "stored"}); n != float64(len(calls)-len(spans)) {
		t.Fatalf("access logs stored: %v, want %d", n, len(calls)-len(spans))
	}
	// Each export again, as an exporter's retry would send it.
	mu.Lock()
	resend := append([][]byte(nil), bodies...)
	mu.Unlock()
	if len(resend) == 0 {
		t.Fatal("no log export was seen")
	}
	for _, b := range resend {
		if a := e.post(t, "/v1/logs", bytes.NewReader(b)); a.status != 200 {
			t.Fatalf("resent export: %d %q", a.status, a.raw)
		}
	}
	check("after every log export was sent again")
}
