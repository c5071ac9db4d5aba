package e2e_test

import (
	"strings"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/otlp"
)

func arrAttr(k string, vs ...string) *commonpb.KeyValue {
	arr := &commonpb.ArrayValue{}
	for _, v := range vs {
		arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}})
	}
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}}
}

// TestSpanMapping: the current and the older HTTP semantic conventions give
// the same call; where both are present the current one wins, whatever the
// order.
func TestSpanMapping(t *testing.T) {
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		attrs []*commonpb.KeyValue
		span  string // span name
		want  apimeter.Event
		msg   string // rejection, when not ""
	}{
		{"current conventions", []*commonpb.KeyValue{
			strAttr("http.request.method", "POST"), strAttr("url.path", "/orders"), strAttr("url.query", "dry=1"),
			strAttr("url.scheme", "https"), strAttr("server.address", "api.example.com"), intAttr("server.port", 8443),
			strAttr("http.route", "/orders"), intAttr("http.response.status_code", 201), strAttr("client.address", "198.51.100.7"),
			strAttr("network.peer.address", "10.0.0.2"), intAttr("http.request.body.size", 42), intAttr("http.response.body.size", 7),
			strAttr("user_agent.original", "curl/8"), strAttr("user.id", "u1"),
			arrAttr("http.request.header.x-api-key", "k1"), arrAttr("http.response.header.content-type", "application/json"),
		}, "POST /orders", apimeter.Event{Method: "POST", URI: "https://api.example.com:8443/orders?dry=1", Path: "/orders", Query: "dry=1",
			Route: "/orders", Status: 201, ClientIP: "198.51.100.7", RequestSize: 42, ResponseSize: 7, UserAgent: "curl/8", UserID: "u1",
			RequestHeaders:  apimeter.Headers{{Name: "x-api-key", Value: "k1"}},
			ResponseHeaders: apimeter.Headers{{Name: "content-type", Value: "application/json"}}}, ""},
		{"older conventions", []*commonpb.KeyValue{
			strAttr("http.method", "get"), strAttr("http.target", "/users/7?fields=a"), strAttr("http.scheme", "http"),
			strAttr("http.host", "svc:8080"), intAttr("http.status_code", 404), strAttr("http.client_ip", "192.0.2.1"),
			intAttr("http.request_content_length", 0), intAttr("http.response_content_length", 12), strAttr("http.user_agent", "okhttp"),
			strAttr("enduser.id", "u2"),
		}, "HTTP GET", apimeter.Event{Method: "GET", URI: "http://svc:8080/users/7?fields=a", Path: "/users/7", Query: "fields=a",
			Status: 404, ClientIP: "192.0.2.1", RequestSize: 0, ResponseSize: 12, UserAgent: "okhttp", UserID: "u2"}, ""},
		{"url.full only, status as text, socket peer with port", []*commonpb.KeyValue{
			strAttr("http.method", "DELETE"), strAttr("http.url", "https://h.example/a/b?x=1"), strAttr("http.status_code", "204"),
			strAttr("net.sock.peer.addr", "[2001:db8::1]:5555"),
		}, "DELETE /a/{id}", apimeter.Event{Method: "DELETE", URI: "https://h.example/a/b?x=1", Path: "/a/b", Query: "x=1", Route: "/a/{id}",
			Status: 204, ClientIP: "2001:db8::1", RequestSize: -1, ResponseSize: -1}, ""},
		{"current wins over older whatever the order", []*commonpb.KeyValue{
			strAttr("http.method", "PUT"), intAttr("http.status_code", 500), strAttr("enduser.id", "old"), strAttr("net.peer.ip", "192.0.2.9"),
			strAttr("http.request.method", "PATCH"), intAttr("http.response.status_code", 200), strAttr("user.id", "new"),
			strAttr("client.address", "192.0.2.10"), strAttr("url.path", "/p"),
		}, "", apimeter.Event{Method: "PATCH", URI: "/p", Path: "/p", Status: 200, UserID: "new", ClientIP: "192.0.2.10", RequestSize: -1, ResponseSize: -1}, ""},
		{"_OTHER method takes the original", []*commonpb.KeyValue{
			strAttr("http.request.method", "_OTHER"), strAttr("http.request.method_original", "purge"), strAttr("url.path", "/c"),
			intAttr("http.response.status_code", 200),
		}, "", apimeter.Event{Method: "PURGE", URI: "/c", Path: "/c", Status: 200, RequestSize: -1, ResponseSize: -1}, ""},
		{"a raw path as span name is no route", []*commonpb.KeyValue{
			strAttr("http.request.method", "GET"), strAttr("url.path", "/users/42"), intAttr("http.response.status_code", 200),
		}, "GET /users/42", apimeter.Event{Method: "GET", URI: "/users/42", Path: "/users/42", Status: 200, RequestSize: -1, ResponseSize: -1}, ""},
		{"no HTTP attributes", []*commonpb.KeyValue{strAttr("rpc.system", "grpc")}, "", apimeter.Event{}, "without HTTP attributes"},
		{"no path", []*commonpb.KeyValue{strAttr("http.request.method", "GET"), intAttr("http.response.status_code", 200)}, "", apimeter.Event{}, "no path"},
		{"status out of range", []*commonpb.KeyValue{strAttr("http.request.method", "GET"), strAttr("url.path", "/"), intAttr("http.response.status_code", 1000)},
			"", apimeter.Event{}, "is no HTTP status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := &tracepb.Span{TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"), Name: c.span, Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: uint64(start.UnixNano()), EndTimeUnixNano: uint64(start.Add(1500 * time.Microsecond).UnixNano()), Attributes: c.attrs}
			var m otlp.Mapper
			var b otlp.Batch
			m.Traces(export(sp), "acme", "prod", &b)
			if c.msg != "" {
				if b.Rejected != 1 || len(b.Events) != 0 || !strings.Contains(b.Messages[0], c.msg) {
					t.Fatalf("want rejected with %q, got %+v", c.msg, b)
				}
				return
			}
			if len(b.Events) != 1 {
				t.Fatalf("want one event, got %+v", b)
			}
			got := b.Events[0]
			w := c.want
			w.Org, w.Env, w.Direction, w.APIName, w.Weight = "acme", "prod", apimeter.Incoming, "svc", 1
			w.ID = "3031323334353637383961626364656630313233343536373031323334353637"[:48]
			w.RequestTime, w.ResponseTime, w.LatencyMs = start, start.Add(1500*time.Microsecond), 1.5
			w.Metadata = []byte(`{"otel":{"trace_id":"30313233343536373839616263646566","span_id":"3031323334353637"}}`)
			if got.ID != w.ID || string(got.Metadata) != string(w.Metadata) {
				t.Fatalf("id %q metadata %s", got.ID, got.Metadata)
			}
			got.Metadata, w.Metadata = nil, nil
			if !equalEvent(got, w) {
				t.Fatalf("\n got  %+v\n want %+v", got, w)
			}
		})
	}
}

func equalEvent(a, b apimeter.Event) bool {
	if len(a.RequestHeaders) != len(b.RequestHeaders) || len(a.ResponseHeaders) != len(b.ResponseHeaders) {
		return false
	}
	for i := range a.RequestHeaders {
		if a.RequestHeaders[i] != b.RequestHeaders[i] {
			return false
		}
	}
	for i := range a.ResponseHeaders {
		if a.ResponseHeaders[i] != b.ResponseHeaders[i] {
			return false
		}
	}
	a.RequestHeaders, b.RequestHeaders, a.ResponseHeaders, b.ResponseHeaders = nil, nil, nil, nil
	return a.ID == b.ID && a.Org == b.Org && a.Env == b.Env && a.Direction == b.Direction && a.APIName == b.APIName &&
		a.RequestTime.Equal(b.RequestTime) && a.ResponseTime.Equal(b.ResponseTime) && a.Method == b.Method && a.URI == b.URI &&
		a.Path == b.Path && a.Route == b.Route && a.Query == b.Query && a.ClientIP == b.ClientIP && a.UserAgent == b.UserAgent &&
		a.RequestSize == b.RequestSize && a.Status == b.Status && a.ResponseSize == b.ResponseSize && a.LatencyMs == b.LatencyMs &&
		a.UserID == b.UserID && a.Weight == b.Weight
}

// TestSpanKinds: only SERVER spans are calls; the others are counted by
// kind.
func TestSpanKinds(t *testing.T) {
	var spans []*tracepb.Span
	for k := range 6 {
		sp := serverSpan("GET", "/k", 200)
		sp.Kind = tracepb.Span_SpanKind(k)
		spans = append(spans, sp)
	}
	var m otlp.Mapper
	var b otlp.Batch
	m.Traces(export(spans...), "acme", "prod", &b)
	if len(b.Events) != 1 || b.Rejected != 0 || b.Ignored != [6]int64{1, 1, 0, 1, 1, 1} {
		t.Fatalf("events %d rejected %d ignored %v", len(b.Events), b.Rejected, b.Ignored)
	}
}
