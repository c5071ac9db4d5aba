package capture

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
)

// hijackRecorder is an httptest.ResponseRecorder that can be hijacked.
type hijackRecorder struct{ *httptest.ResponseRecorder }

func (hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, nil }

type nopSink struct{}

func (nopSink) Send(context.Context, []apimeter.Event) error { return nil }
func (nopSink) Close(context.Context) error                  { return nil }

// TestAppendRecordMatchesEvent checks that the sender's two paths, encoding
// a record straight to the wire (HTTPSink without Mask) and building the
// Event first (Mask, other Sinks), send the same bytes.
func TestAppendRecordMatchesEvent(t *testing.T) {
	jwt := "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0"
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
	cases := []struct {
		name    string
		target  string // default "http://api.example.com:8080/a/%22b%22/é"
		opts    Options
		weight  int64
		method  string
		body    string
		header  map[string][]string
		tls     bool
		remote  string
		hijack  bool
		handler http.HandlerFunc
	}{
		{name: "GET without bodies", method: "GET", handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }},
		{name: "JSON bodies captured", opts: Options{LogBody: true}, method: "POST", body: `{"a":"b","n":[1,2,3],"s":"q\"uote"}`, handler: echo},
		{name: "bodies not captured", method: "POST", body: `{"a":1}`, handler: echo},
		{name: "secret headers and JWT subject", opts: Options{LogBody: true, SecretHeaders: []string{"X-Private"}}, method: "POST", body: "x",
			header: map[string][]string{"Authorization": {jwt}, "Cookie": {"a=1", "b=2"}, "X-Api-Key": {"key-1"}, "X-Private": {"p"}, "x-lower": {"v"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Set-Cookie", "sid=secret")
				w.Header().Set("X-Private", "q")
				w.WriteHeader(http.StatusCreated)
			}},
		{name: "API key header already a fingerprint", method: "GET", header: map[string][]string{"X-Api-Key": {scrub.Fingerprint("k")}}, handler: echo},
		{name: "callbacks, API name, weight", weight: 4, opts: Options{
			APIName:         "accounts",
			IdentifyUser:    func(*http.Request, Response) string { return "u-1" },
			IdentifyCompany: func(*http.Request, Response) string { return "c-1" },
			SessionToken:    func(*http.Request, Response) string { return "Bearer tok" },
			Metadata: func(*http.Request, Response) map[string]any {
				return map[string]any{"plan": "pro", "n": 3, "html": "<b>"}
			},
		}, method: "GET", handler: echo},
		{name: "forwarded by a gateway", opts: Options{Target: func(*http.Request, Response) Target {
			return Target{URL: "http://10.0.0.7:8080/a", Latency: 12345678}
		}}, method: "GET", handler: echo},
		{name: "metadata that is not JSON", opts: Options{Metadata: func(*http.Request, Response) map[string]any { return map[string]any{"f": func() {}} }}, method: "GET", handler: echo},
		{name: "handler sets Content-Length", opts: Options{LogBody: true}, method: "GET", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}},
		{name: "empty Content-Length is replaced", method: "GET", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Length"] = []string{""}
		}},
		{name: "Content-Length as a secret header", opts: Options{SecretHeaders: []string{"content-length"}}, method: "GET", handler: echo},
		{name: "handler writes nothing", method: "GET", handler: func(http.ResponseWriter, *http.Request) {}},
		{name: "binary body goes as base64", opts: Options{LogBody: true}, method: "POST", body: "\x00\x01\xff\xfe binary", handler: echo},
		{name: "cut character dropped from a truncated body", opts: Options{LogBody: true, MaxBodyBytes: 9}, method: "POST", body: "ééééééé", handler: echo},
		{name: "truncated body of only a cut character", opts: Options{LogBody: true, MaxBodyBytes: 1}, method: "POST", body: "é", handler: echo},
		{name: "invalid UTF-8 in a truncated body", opts: Options{LogBody: true, MaxBodyBytes: 12}, method: "POST", body: "abc\xffdefghijklmn", handler: echo},
		{name: "invalid UTF-8 and a cut character", opts: Options{LogBody: true, MaxBodyBytes: 6}, method: "POST", body: "a\xffbcdéé", handler: echo},
		{name: "escapes in the URI and headers", method: "GET", header: map[string][]string{"X-Q": {"a\"b\\c\x01é"}}, handler: echo},
		{name: "TLS", method: "GET", tls: true, handler: echo},
		{name: "remote address without a port", method: "GET", remote: "10.1.2.3", handler: echo},
		{name: "query without secrets", target: "http://api.example.com/a?x=1&y=%22z%22", method: "GET", handler: echo},
		{name: "query with secrets and an API key", target: "http://api.example.com/a?api_key=k%2B1&access_token=t&password=&x=1", method: "GET", handler: echo},
		{name: "query API key after a header key", target: "http://api.example.com/a?key=q", header: map[string][]string{"X-Api-Key": {"h"}}, method: "GET", handler: echo},
		{name: "query text also in the path", target: "http://api.example.com/token=abc?token=abc", method: "GET", handler: echo},
		{name: "secret query parameter with an escaped name", opts: Options{SecretParams: []string{"My Secret"}}, target: "http://api.example.com/a?My+Secret=s&my%20secret=t&b", method: "GET", handler: echo},
		{name: "invalid UTF-8 in the query", target: "http://api.example.com/a?x=%ff\xff&key=%fe", method: "GET", handler: echo},
		{name: "hijacked", method: "GET", hijack: true, handler: func(w http.ResponseWriter, r *http.Request) {
			http.NewResponseController(w).Hijack()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Sink = nopSink{}
			c, err := newCapture(opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.weight > 0 {
				c.weight = tc.weight
			}
			target := tc.target
			if target == "" {
				target = "http://api.example.com:8080/a/%22b%22/é"
			}
			r := httptest.NewRequest(tc.method, target, strings.NewReader(tc.body))
			for k, v := range tc.header {
				r.Header[k] = v
			}
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.remote != "" {
				r.RemoteAddr = tc.remote
			}
			var w http.ResponseWriter = httptest.NewRecorder()
			if tc.hijack {
				w = hijackRecorder{httptest.NewRecorder()}
			}
			c.Middleware(tc.handler).ServeHTTP(w, r)
			rec := <-c.queue
			direct := string(c.appendRecord(nil, rec))
			var ev apimeter.Event
			c.fillEvent(&ev, rec, true)
			viaEvent := string(appendEvent(nil, &ev))
			if direct != viaEvent {
				t.Fatalf("straight from the record:\n%s\nthrough the Event:\n%s", direct, viaEvent)
			}
			for _, secret := range []string{"key-1", "sid=secret", `"p"`, `"q"`, "k%2B1", "k+1", "access_token=t", "key=q", "token=abc\"", "=s&", "=t&", "key=%fe"} {
				if strings.Contains(direct, secret) {
					t.Errorf("%q left in the event: %s", secret, direct)
				}
			}
		})
	}
}

// BenchmarkSenderEncode is the sending goroutine's work on one batch of
// 500 calls with 1 KiB bodies (the load run's repeated 'x', or JSON that
// differs from call to call), without the POST: encoding in the collector
// schema and gzip at the default level, straight from the records
// ("record", what HTTPSink gets without Mask) or through an Event
// ("event", with Mask or another Sink). ns/event is per call.
func BenchmarkSenderEncode(b *testing.B) {
	for _, kind := range []string{"x", "json"} {
		for _, path := range []string{"record", "event"} {
			b.Run(kind+"/"+path, func(b *testing.B) {
				const n = 500
				rnd := rand.New(rand.NewPCG(1, 2))
				body := func() string {
					if kind == "json" {
						return jsonBody(rnd, 1024)
					}
					return strings.Repeat("x", 1024)
				}
				c, err := newCapture(Options{Sink: nopSink{}, LogBody: true, QueueSize: n,
					IdentifyCompany: func(r *http.Request, _ Response) string { return r.PathValue("id") }})
				if err != nil {
					b.Fatal(err)
				}
				mux := http.NewServeMux()
				mux.HandleFunc("POST /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, body())
				})
				h := c.Middleware(mux)
				recs := make([]*record, n)
				for i := range recs {
					r := httptest.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:8080/accounts/%d/message", 1000+i%8), strings.NewReader(body()))
					r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0")
					r.Header.Set("Content-Type", "application/json")
					h.ServeHTTP(httptest.NewRecorder(), r)
					recs[i] = <-c.queue
				}
				sink, _ := NewHTTPSink(HTTPSinkConfig{URL: "http://127.0.0.1:1", ApplicationID: "bench"})
				stream := sink.newStream()
				var ev apimeter.Event
				b.ReportAllocs()
				for b.Loop() {
					for _, rec := range recs {
						stream.next()
						if path == "record" {
							stream.json = c.appendRecord(stream.json, rec)
						} else {
							c.fillEvent(&ev, rec, true)
							stream.json = appendEvent(stream.json, &ev)
						}
						if err := stream.written(); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := stream.finish(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
			})
		}
	}
}
