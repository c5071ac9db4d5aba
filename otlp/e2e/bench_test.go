package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/otlp"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

const benchBatch = 500

// spanOf is the SERVER span an OpenTelemetry SDK would export for the call
// m describes: the current HTTP conventions, the headers a capture setting
// would add (Authorization, X-Api-Key), no bodies (spans carry none).
func spanOf(m *moesif.Event) *tracepb.Span {
	start, _ := time.Parse("2006-01-02T15:04:05.000Z", m.Request.Time)
	end, _ := time.Parse("2006-01-02T15:04:05.000Z", m.Response.Time)
	sum := xxh3.HashString128(m.EventID).Bytes()
	rest := strings.TrimPrefix(m.Request.URI, "https://")
	host, pathQuery, _ := strings.Cut(rest, "/")
	path, query, _ := strings.Cut("/"+pathQuery, "?")
	attrs := []*commonpb.KeyValue{
		strAttr("http.request.method", m.Request.Verb), strAttr("url.scheme", "https"), strAttr("server.address", host),
		strAttr("url.path", path), strAttr("http.route", m.Route), intAttr("http.response.status_code", int64(m.Response.Status)),
		strAttr("client.address", m.Request.IPAddress), strAttr("user.id", m.UserID),
		strAttr("network.protocol.version", "1.1"), intAttr("server.port", 443),
	}
	if query != "" {
		attrs = append(attrs, strAttr("url.query", query))
	}
	for _, h := range m.Request.Headers {
		switch h.Name {
		case "User-Agent":
			attrs = append(attrs, strAttr("user_agent.original", h.Value))
		case "Authorization", "X-Api-Key":
			attrs = append(attrs, arrAttr("http.request.header."+strings.ToLower(h.Name), h.Value))
		case "Content-Length":
			n, _ := strconv.ParseInt(h.Value, 10, 64)
			attrs = append(attrs, intAttr("http.request.body.size", n))
		}
	}
	for _, h := range m.Response.Headers {
		if h.Name == "Content-Length" {
			n, _ := strconv.ParseInt(h.Value, 10, 64)
			attrs = append(attrs, intAttr("http.response.body.size", n))
		}
	}
	return &tracepb.Span{TraceId: sum[:], SpanId: sum[4:12], Name: m.Request.Verb + " " + m.Route, Kind: tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: uint64(start.UnixNano()), EndTimeUnixNano: uint64(end.UnixNano()), Attributes: attrs}
}

// benchCache keeps the request bodies made, by form and count: every
// sub-benchmark sends the same calls, and making them is not timed.
var benchCache = map[string][][]byte{}

// benchBodies returns n request bodies of benchBatch generated calls each,
// in one form: "moesif" (the collector's batches), "moesif-no-bodies" (what
// a span carries, as a Moesif event: no bodies, session token or
// metadata), "otlp-protobuf" or "otlp-json" (the same calls as SERVER
// spans, one resource per API as each service exports its own), or
// "otlp-json-base64" (OTLP/JSON with the ids in base64, as the protobuf
// JSON mapping writes bytes: the receiver reads those with protojson).
func benchBodies(b *testing.B, form string, n int) [][]byte {
	b.Helper()
	key := form + "/" + strconv.Itoa(n)
	if w, ok := benchCache[key]; ok {
		return w
	}
	gen := workload.New(11, 30*24*time.Hour)
	gen.IDs = true
	out := make([][]byte, n)
	for i := range out {
		ms := gen.Batch(benchBatch)
		var err error
		switch form {
		case "moesif-no-bodies":
			for j := range ms {
				ms[j].Request.Body, ms[j].Response.Body, ms[j].SessionToken, ms[j].Metadata = nil, nil, "", nil
			}
			fallthrough
		case "moesif":
			out[i], err = json.Marshal(ms)
		default:
			byAPI := map[string]*tracepb.ResourceSpans{}
			req := &coltracepb.ExportTraceServiceRequest{}
			for j := range ms {
				rs := byAPI[ms[j].APIName]
				if rs == nil {
					rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", ms[j].APIName),
						strAttr("service.version", ms[j].Request.APIVersion)}}, ScopeSpans: []*tracepb.ScopeSpans{{}}}
					byAPI[ms[j].APIName] = rs
					req.ResourceSpans = append(req.ResourceSpans, rs)
				}
				rs.ScopeSpans[0].Spans = append(rs.ScopeSpans[0].Spans, spanOf(&ms[j]))
			}
			switch form {
			case "otlp-json":
				out[i] = otlpJSON(b, req)
			case "otlp-json-base64":
				out[i], err = protojson.Marshal(req)
			default:
				out[i], err = proto.Marshal(req)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	benchCache[key] = out
	return out
}

// BenchmarkIngest measures OTLP exports into the store with durable acks
// (the answer waits for DuckDB's commit) next to the collector's Moesif
// batches of the same calls, in the same run: one op is one span or event;
// compare the events/s metrics. The same workload as server's
// BenchmarkIngest, 500 calls per request, four concurrent senders calling
// the handler in process.
//
//	go test ./otlp/e2e -run '^$' -bench Ingest -benchtime 100000x -count 3
func BenchmarkIngest(b *testing.B) {
	for _, c := range []struct {
		name, form, path, ctype string
	}{
		{"collector", "moesif", "/v1/events/batch", "application/json"},
		{"collector-no-bodies", "moesif-no-bodies", "/v1/events/batch", "application/json"},
		{"otlp-protobuf", "otlp-protobuf", "/v1/traces", "application/x-protobuf"},
		{"otlp-json", "otlp-json", "/v1/traces", "application/json"},
		{"otlp-json-protojson", "otlp-json-base64", "/v1/traces", "application/json"},
	} {
		b.Run(c.name, func(b *testing.B) {
			work := benchBodies(b, c.form, max(1, b.N/benchBatch))
			dir := b.TempDir()
			st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			a, _ := apps.Create(dir, "bench", "prod")
			reg, _ := apps.Open(dir)
			srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1)})
			otlp.New(otlp.Config{Apps: reg, Ingest: srv, Check: srv.CheckEvent}).Register(srv)
			queue := make(chan []byte)
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for body := range queue {
						req := httptest.NewRequest(http.MethodPost, c.path, bytes.NewReader(body))
						req.Header.Set("Content-Type", c.ctype)
						req.Header.Set(server.AppIDHeader, a.ID)
						rec := httptest.NewRecorder()
						srv.ServeHTTP(rec, req)
						if rec.Code != 200 {
							b.Errorf("%s answered %d: %s", c.path, rec.Code, rec.Body.Bytes())
						}
					}
				}()
			}
			for _, body := range work {
				queue <- body
			}
			close(queue)
			wg.Wait()
			b.StopTimer()
			var n int
			if err := st.DB().QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil || n != len(work)*benchBatch {
				b.Fatalf("%d stored (%v), want %d", n, err, len(work)*benchBatch)
			}
			b.ReportMetric(float64(len(work)*benchBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDecode is the CPU work of one request before the store, per
// call: the collector's Moesif decoding (DecodeBatch, ToEvent) against
// OTLP's (protobuf or protojson, then the mapping), each followed by the
// scrubber as ingest runs it.
//
//	go test ./otlp/e2e -run '^$' -bench Decode -benchtime 20000x
func BenchmarkDecode(b *testing.B) {
	scrub := scrub.New(nil, nil, -1)
	run := func(b *testing.B, one func(i int) []apimeter.Event) {
		b.ReportAllocs()
		n := 0
		for i := 0; n < b.N; i++ {
			evs := one(i)
			for j := range evs {
				scrub.Scrub(&evs[j])
			}
			n += len(evs)
		}
	}
	b.Run("collector", func(b *testing.B) {
		work := benchBodies(b, "moesif", 4)
		run(b, func(i int) []apimeter.Event {
			ms, err := moesif.DecodeBatch(work[i%len(work)], moesif.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			evs := make([]apimeter.Event, len(ms))
			for j := range ms {
				evs[j], _ = ms[j].ToEvent("bench", "prod", j)
			}
			return evs
		})
	})
	for _, c := range []struct{ form, ctype string }{
		{"otlp-protobuf", "application/x-protobuf"},
		{"otlp-json", "application/json"},
		{"otlp-json-base64", "application/json"},
	} {
		b.Run(c.form, func(b *testing.B) {
			work := benchBodies(b, c.form, 4)
			var m otlp.Mapper
			run(b, func(i int) []apimeter.Event {
				var batch otlp.Batch
				if err := otlp.DecodeTraces(work[i%len(work)], c.ctype, &m, "bench", "prod", &batch); err != nil {
					b.Fatal(err)
				}
				return batch.Events
			})
		})
	}
}
