package otlp

import (
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter/scrub"
)

func kv(k string, v any) *commonpb.KeyValue {
	av := &commonpb.AnyValue{}
	switch x := v.(type) {
	case string:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: x}
	case int:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: int64(x)}
	case float64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: x}
	case []string:
		arr := &commonpb.ArrayValue{}
		for _, s := range x {
			arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}})
		}
		av.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
	}
	return &commonpb.KeyValue{Key: k, Value: av}
}

func seedTraces() []*coltracepb.ExportTraceServiceRequest {
	t0 := uint64(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).UnixNano())
	span := func(kind tracepb.Span_SpanKind, attrs ...*commonpb.KeyValue) *tracepb.Span {
		return &tracepb.Span{TraceId: []byte("0123456789abcdef"), SpanId: []byte("spanid01"), Name: "GET /users/{id}", Kind: kind,
			StartTimeUnixNano: t0, EndTimeUnixNano: t0 + 2e6, Attributes: attrs}
	}
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "svc"), kv("service.version", "1")}}
	return []*coltracepb.ExportTraceServiceRequest{
		{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			span(tracepb.Span_SPAN_KIND_SERVER, kv("http.request.method", "GET"), kv("url.path", "/users/7"), kv("url.query", "a=1&token=s3cret"),
				kv("http.response.status_code", 200), kv("client.address", "198.51.100.1"), kv("user.id", "u1"),
				kv("http.request.header.authorization", []string{"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig"})),
			span(tracepb.Span_SPAN_KIND_CLIENT, kv("http.request.method", "GET"), kv("url.full", "https://x.example/y")),
		}}}}}},
		{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			span(tracepb.Span_SPAN_KIND_SERVER, kv("http.method", "post"), kv("http.url", "http://[::1]:8080/o?x=1"), kv("http.status_code", "500"),
				kv("net.sock.peer.addr", "10.0.0.1:99"), kv("enduser.id", "u2"), kv("http.request_content_length", 3.0)),
			span(tracepb.Span_SPAN_KIND_SERVER, kv("rpc.system", "grpc")),
		}}}}}},
	}
}

func seedLogs() []*collogspb.ExportLogsServiceRequest {
	t0 := uint64(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).UnixNano())
	body := &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
		kv("http.request.method", "GET"), kv("url.path", "/m"), kv("http.response.status_code", 201)}}}}
	return []*collogspb.ExportLogsServiceRequest{{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
		{TimeUnixNano: t0, Attributes: []*commonpb.KeyValue{kv("http.request.method", "GET"), kv("url.path", "/a"), kv("http.server.request.duration", 0.5)}},
		{ObservedTimeUnixNano: t0, Body: body, TraceId: []byte("0123456789abcdef"), SpanId: []byte("spanid01")},
		{TimeUnixNano: t0, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "plain"}}},
	}}}}}}}
}

// checkBatch holds what every mapping must give, whatever the input:
// each item accounted for once, and every event a call the store can take.
func checkBatch(t *testing.T, b *Batch, total int, scrub *scrub.Scrubber) {
	t.Helper()
	n := int64(len(b.Events)) + b.Rejected
	for _, x := range b.Ignored {
		n += x
	}
	if n != int64(total) {
		t.Fatalf("%d items in, %d accounted for (%d events, %d rejected, ignored %v)", total, n, len(b.Events), b.Rejected, b.Ignored)
	}
	if b.Rejected > 0 && b.Message("spans") == "" {
		t.Fatal("rejected without a message")
	}
	for i := range b.Events {
		e := &b.Events[i]
		if e.ID == "" || len(e.ID) > 256 || e.Method == "" || e.Path == "" || e.URI == "" || e.Org != "acme" || e.Env != "prod" ||
			e.Weight != 1 || e.Status < 0 || e.Status > 999 || e.ResponseTime.Before(e.RequestTime) || e.RequestTime.IsZero() {
			t.Fatalf("event %d is not a storable call: %+v", i, e)
		}
		if e.Metadata != nil && !json.Valid(e.Metadata) {
			t.Fatalf("event %d metadata is not JSON: %s", i, e.Metadata)
		}
		if len(e.RequestHeaders) > maxHeaders || len(e.ResponseHeaders) > maxHeaders {
			t.Fatalf("event %d holds %d+%d headers", i, len(e.RequestHeaders), len(e.ResponseHeaders))
		}
		scrub.Scrub(e)
	}
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

func countRecords(req *collogspb.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

// FuzzTraces decodes an export as the receiver does (protobuf, or
// OTLP/JSON with its hex ids, by jsonReader or protojson) and maps it
// twice: every span is accounted
// for, every event is storable and passes the scrubber, and the mapping is
// deterministic (same ids: a retry counts once).
func FuzzTraces(f *testing.F) {
	for _, req := range seedTraces() {
		b, _ := proto.Marshal(req)
		f.Add(b, false)
		j, _ := protojson.Marshal(req)
		f.Add(j, true)
	}
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","kind":2,`+
		`"startTimeUnixNano":"1","attributes":[{"key":"http.method","value":{"stringValue":"GET"}},{"key":"http.target","value":{"stringValue":"/?q"}}]}]}]}]}`), true)
	scrub := scrub.New(nil, nil, 1024)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		enc := encProto
		if asJSON {
			enc = encJSON
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		if _, e := decodeTraces(data, enc, req); e != nil {
			if e.status != 400 {
				t.Fatalf("decode error answered %d", e.status)
			}
			return
		}
		var m Mapper
		var b1, b2 Batch
		m.Traces(req, "acme", "prod", &b1)
		m.Traces(req, "acme", "prod", &b2)
		if len(b1.Events) != len(b2.Events) {
			t.Fatalf("mapped twice: %d then %d events", len(b1.Events), len(b2.Events))
		}
		for i := range b1.Events {
			if b1.Events[i].ID != b2.Events[i].ID {
				t.Fatalf("event %d: id %q then %q", i, b1.Events[i].ID, b2.Events[i].ID)
			}
			if _, err := hex.DecodeString(b1.Events[i].ID); err != nil || len(b1.Events[i].ID) != 48 {
				t.Fatalf("span event id %q is not trace id + span id in hex", b1.Events[i].ID)
			}
		}
		checkBatch(t, &b1, countSpans(req), scrub)
	})
}

// FuzzLogs is FuzzTraces for log exports.
func FuzzLogs(f *testing.F) {
	for _, req := range seedLogs() {
		b, _ := proto.Marshal(req)
		f.Add(b, false)
		j, _ := protojson.Marshal(req)
		f.Add(j, true)
	}
	scrub := scrub.New(nil, nil, 1024)
	f.Fuzz(func(t *testing.T, data []byte, asJSON bool) {
		enc := encProto
		if asJSON {
			enc = encJSON
		}
		req := &collogspb.ExportLogsServiceRequest{}
		if _, e := decodeLogs(data, enc, req); e != nil {
			if e.status != 400 {
				t.Fatalf("decode error answered %d", e.status)
			}
			return
		}
		var m Mapper
		var b1, b2 Batch
		m.Logs(req, "acme", "prod", &b1)
		m.Logs(req, "acme", "prod", &b2)
		if len(b1.Events) != len(b2.Events) {
			t.Fatalf("mapped twice: %d then %d events", len(b1.Events), len(b2.Events))
		}
		for i := range b1.Events {
			if b1.Events[i].ID != b2.Events[i].ID {
				t.Fatalf("event %d: id %q then %q", i, b1.Events[i].ID, b2.Events[i].ID)
			}
		}
		checkBatch(t, &b1, countRecords(req), scrub)
	})
}
