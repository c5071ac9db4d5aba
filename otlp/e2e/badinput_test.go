package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/otlp"
)

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

var spanSeq byte

// serverSpan is an HTTP SERVER span of the current conventions with fresh
// ids, started a second ago.
func serverSpan(method, path string, status int64, extra ...*commonpb.KeyValue) *tracepb.Span {
	spanSeq++
	start := time.Now().Add(-time.Second)
	return &tracepb.Span{
		TraceId:           bytes.Repeat([]byte{spanSeq, 0xab}, 8),
		SpanId:            bytes.Repeat([]byte{spanSeq, 0xcd}, 4),
		Name:              method + " " + path,
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: uint64(start.UnixNano()),
		EndTimeUnixNano:   uint64(start.Add(25 * time.Millisecond).UnixNano()),
		Attributes: append([]*commonpb.KeyValue{strAttr("http.request.method", method), strAttr("url.path", path),
			intAttr("http.response.status_code", status), strAttr("http.route", path)}, extra...),
	}
}

func export(spans ...*tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", "svc")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
}

func mustProto(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer is a decoded OTLP answer.
type answer struct {
	status     int
	retryAfter string
	ctype      string
	rpc        *spb.Status                            // for errors
	ok         *coltracepb.ExportTraceServiceResponse // for 200
	raw        []byte
}

// post sends body to path with the headers given (name, value pairs; an
// empty value deletes) and decodes the answer as the protocol says it is
// encoded: like the request, protobuf or JSON.
func (e *env) post(t *testing.T, path string, body io.Reader, header ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+path, body)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Moesif-Application-Id", e.appID)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), ctype: resp.Header.Get("Content-Type"), raw: raw}
	unmarshal := proto.Unmarshal
	if a.ctype == "application/json" {
		unmarshal = protojson.Unmarshal
	} else if a.ctype != "application/x-protobuf" {
		t.Fatalf("answer %d has Content-Type %q: %q", a.status, a.ctype, raw)
	}
	if a.status == 200 {
		a.ok = &coltracepb.ExportTraceServiceResponse{}
		if err := unmarshal(raw, a.ok); err != nil {
			t.Fatalf("200 answer is no ExportTraceServiceResponse: %v: %q", err, raw)
		}
		return a
	}
	a.rpc = &spb.Status{}
	if err := unmarshal(raw, a.rpc); err != nil {
		t.Fatalf("%d answer is no google.rpc.Status: %v: %q", a.status, err, raw)
	}
	return a
}

func (e *env) stored(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.store.DB().QueryRow("SELECT count(*) FROM " + e.events).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBadInput: each fault is answered as the OTLP specification says (a
// google.rpc.Status body in the request's encoding, the status code that
// tells an exporter whether to retry), never a 500, and what else the
// export held is stored.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	good := func() []byte { return mustProto(t, export(serverSpan("GET", "/ok", 200))) }

	for _, c := range []struct {
		name    string
		body    func() io.Reader
		header  []string
		status  int
		message string // in the Status message
		stored  int    // events stored by this request
	}{
		{"malformed protobuf", func() io.Reader { return strings.NewReader("\x0a\xff\xff\xff\xff\x0fnot protobuf") }, nil,
			400, "not a valid protobuf ExportTraceServiceRequest", 0},
		{"malformed JSON", func() io.Reader { return strings.NewReader(`{"resourceSpans":[{`) }, []string{"Content-Type", "application/json"},
			400, "not a valid OTLP/JSON", 0},
		{"wrong content type", func() io.Reader { return bytes.NewReader(good()) }, []string{"Content-Type", "text/plain"},
			415, "send application/x-protobuf or application/json", 0},
		{"no content type", func() io.Reader { return bytes.NewReader(good()) }, []string{"Content-Type", ""},
			415, "is not OTLP/HTTP", 0},
		{"unknown content encoding", func() io.Reader { return bytes.NewReader(good()) }, []string{"Content-Encoding", "br"},
			415, "send gzip or no encoding", 0},
		{"gzip that is not", func() io.Reader { return bytes.NewReader(good()) }, []string{"Content-Encoding", "gzip"},
			400, "not valid gzip", 0},
		{"unknown app id", func() io.Reader { return bytes.NewReader(good()) }, []string{"X-Moesif-Application-Id", "not-an-app"},
			401, "names no known application", 0},
		{"unknown bearer app id", func() io.Reader { return bytes.NewReader(good()) }, []string{"X-Moesif-Application-Id", "", "Authorization", "Bearer nope"},
			401, "names no known application", 0},
		{"no app id", func() io.Reader { return bytes.NewReader(good()) }, []string{"X-Moesif-Application-Id", ""},
			401, "no application id", 0},
		{"50 MB body", func() io.Reader { return io.LimitReader(zeros{}, 50<<20) }, nil,
			413, "exceeds 33554432 bytes", 0},
		{"50 MB after gzip", func() io.Reader { return bytes.NewReader(gzipped(t, io.LimitReader(zeros{}, 50<<20))) }, []string{"Content-Encoding", "gzip"},
			413, "after gzip decoding", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.stored(t)
			a := e.post(t, "/v1/traces", c.body(), c.header...)
			if a.status != c.status {
				t.Fatalf("answer %d, want %d: %q", a.status, c.status, a.raw)
			}
			if a.rpc == nil || !strings.Contains(a.rpc.GetMessage(), c.message) {
				t.Fatalf("Status message %q does not say %q", a.rpc.GetMessage(), c.message)
			}
			if a.retryAfter != "" {
				t.Fatalf("Retry-After %q on a %d: the export will not get better", a.retryAfter, a.status)
			}
			if n := e.stored(t) - before; n != c.stored {
				t.Fatalf("%d events stored, want %d", n, c.stored)
			}
			// The receiver still works after it.
			if a := e.post(t, "/v1/traces", bytes.NewReader(good())); a.status != 200 || a.ok.GetPartialSuccess().GetRejectedSpans() != 0 {
				t.Fatalf("a good export after it: %d %q", a.status, a.raw)
			}
		})
	}

	t.Run("span without HTTP attributes", func(t *testing.T) {
		before := e.stored(t)
		grpcSpan := serverSpan("GET", "/x", 200)
		grpcSpan.Attributes = []*commonpb.KeyValue{strAttr("rpc.system", "grpc"), strAttr("rpc.method", "Get")}
		long := serverSpan("GET", "/long", 200, &commonpb.KeyValue{Key: "http.request.header.x-big",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("x", 20<<10)}}})
		req := export(serverSpan("GET", "/a", 200), grpcSpan, serverSpan("POST", "/b", 500), long)
		for _, enc := range []string{"protobuf", "json"} {
			var body []byte
			ct := "application/x-protobuf"
			if enc == "json" {
				body, ct = otlpJSON(t, req), "application/json"
			} else {
				body = mustProto(t, req)
			}
			a := e.post(t, "/v1/traces", bytes.NewReader(body), "Content-Type", ct)
			ps := a.ok.GetPartialSuccess()
			if a.status != 200 || ps.GetRejectedSpans() != 2 {
				t.Fatalf("%s: answer %d %q, want 200 with 2 rejected spans", enc, a.status, a.raw)
			}
			for _, want := range []string{"2 spans not stored", "spans[1] (span " + hex.EncodeToString(grpcSpan.SpanId) + "): a SERVER span without HTTP attributes",
				"spans[3]", "request.headers.x-big: is longer than 16384 bytes"} {
				if !strings.Contains(ps.GetErrorMessage(), want) {
					t.Fatalf("%s: partial success message %q does not say %q", enc, ps.GetErrorMessage(), want)
				}
			}
		}
		// The two good spans are stored, once although sent twice.
		if n := e.stored(t) - before; n != 2 {
			t.Fatalf("%d events stored, want the 2 good spans", n)
		}
	})

	t.Run("chunked JSON, enum names, snake_case", func(t *testing.T) {
		before := e.stored(t)
		tid, sid := "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
		start := time.Now().Add(-time.Minute).UnixNano()
		body := `{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"legacy"}}]},
		  "scope_spans":[{"spans":[{"trace_id":"` + tid + `","span_id":"` + sid + `","name":"HTTP GET","kind":"SPAN_KIND_SERVER",
		  "startTimeUnixNano":"` + itoa(start) + `","endTimeUnixNano":` + itoa(start+3e6) + `,
		  "attributes":[{"key":"http.method","value":{"stringValue":"get"}},{"key":"http.target","value":{"stringValue":"/v2/items?id=7"}},
		    {"key":"http.status_code","value":{"stringValue":"503"}},{"key":"http.host","value":{"stringValue":"api.example.com"}},
		    {"key":"http.scheme","value":{"stringValue":"https"}},{"key":"net.sock.peer.addr","value":{"stringValue":"203.0.113.9"}},
		    {"key":"enduser.id","value":{"stringValue":"dave"}},{"key":"some.future.field","value":{"stringValue":"x"}}],
		  "futureField":{"traceId":"zz"}}]}]}]}`
		pr, pw := io.Pipe()
		go func() {
			for _, part := range strings.SplitAfter(body, ",") {
				pw.Write([]byte(part))
			}
			pw.Close()
		}()
		a := e.post(t, "/v1/traces", pr, "Content-Type", "application/json; charset=utf-8")
		if a.status != 200 || a.ctype != "application/json" || a.ok.GetPartialSuccess().GetRejectedSpans() != 0 {
			t.Fatalf("answer %d %s %q", a.status, a.ctype, a.raw)
		}
		if n := e.stored(t) - before; n != 1 {
			t.Fatalf("%d stored, want 1", n)
		}
		evs, err := e.store.Events(context.Background(), apimeter.EventFilter{Org: "acme", Env: "prod", UserID: "dave", Limit: 10})
		if err != nil || len(evs) != 1 {
			t.Fatalf("events of dave: %v %v", evs, err)
		}
		ev := evs[0]
		if ev.ID != tid+sid || ev.Method != "GET" || ev.Path != "/v2/items" || ev.Query != "id=7" || ev.URI != "https://api.example.com/v2/items?id=7" ||
			ev.Status != 503 || ev.ClientIP != "203.0.113.9" || ev.APIName != "legacy" || ev.LatencyMs != 3 {
			t.Fatalf("stored %+v", ev)
		}
	})
}

// TestBusyAndStoreDown: the answers an exporter retries. With one export
// in flight and room for one, another is answered 429 with Retry-After;
// with the store closed, 503 with Retry-After; neither stores anything.
func TestBusyAndStoreDown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, envOptions{maxInFlight: 1, wrap: func(in otlp.Ingester) otlp.Ingester {
		return &gate{Ingester: in, entered: entered, release: release}
	}})
	first := make(chan answer, 1)
	go func() {
		first <- e.post(t, "/v1/traces", bytes.NewReader(mustProto(t, export(serverSpan("GET", "/held", 200)))))
	}()
	<-entered
	a := e.post(t, "/v1/traces", bytes.NewReader(mustProto(t, export(serverSpan("GET", "/second", 200)))))
	if a.status != 429 || a.retryAfter == "" || !strings.Contains(a.rpc.GetMessage(), "retry after") {
		t.Fatalf("while busy: %d Retry-After %q %q", a.status, a.retryAfter, a.rpc.GetMessage())
	}
	close(release)
	if a := <-first; a.status != 200 {
		t.Fatalf("the held export: %d %q", a.status, a.raw)
	}
	if n := e.stored(t); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}

	e.store.Close()
	a = e.post(t, "/v1/traces", bytes.NewReader(otlpJSON(t, export(serverSpan("GET", "/down", 200)))), "Content-Type", "application/json")
	if a.status != 503 || a.retryAfter == "" || a.ctype != "application/json" || !strings.Contains(a.rpc.GetMessage(), "retry later") {
		t.Fatalf("store down: %d Retry-After %q %s %q", a.status, a.retryAfter, a.ctype, a.raw)
	}
}

// gate holds the first Ingest until release is closed.
type gate struct {
	otlp.Ingester
	entered, release chan struct{}
	n                int
}

func (g *gate) Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	g.n++
	if g.n == 1 {
		close(g.entered)
		<-g.release
	}
	return g.Ingester.Ingest(ctx, events)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func gzipped(t *testing.T, r io.Reader) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.Copy(zw, r); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return b.Bytes()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestSpanSecrets: credentials a span carries, in captured headers, the
// query or the full URL, reach no stored column; the ones that identify a
// caller are kept as fingerprints.
func TestSpanSecrets(t *testing.T) {
	e := newEnv(t, envOptions{})
	secrets := []string{"dXNlcjpodW50ZXIy", "sess-9f8e7d6c5b4a", "sk_live_SECRETKEY42", "qtok-SECRET-77", "pw-SECRET-88"}
	sp := serverSpan("GET", "/v1/charges", 200,
		arrAttr("http.request.header.authorization", "Basic "+secrets[0]),
		arrAttr("http.request.header.cookie", "session="+secrets[1]),
		arrAttr("http.request.header.x-api-key", secrets[2]),
		strAttr("url.query", "limit=5&access_token="+secrets[3]),
		strAttr("url.full", "https://svc:"+secrets[4]+"@api.example.com/v1/charges?limit=5&access_token="+secrets[3]),
	)
	if a := e.post(t, "/v1/traces", bytes.NewReader(mustProto(t, export(sp)))); a.status != 200 || a.ok.GetPartialSuccess() != nil {
		t.Fatalf("answer %d %q", a.status, a.raw)
	}
	rows := e.rows()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	for _, s := range secrets {
		if strings.Contains(rows[0], s) {
			t.Fatalf("the stored row holds %q: %s", s, rows[0])
		}
	}
	if !strings.Contains(rows[0], "limit=5") {
		t.Fatalf("the query's other parameters were lost: %s", rows[0])
	}
}
