package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/internal/redistest"
	"github.com/apimeter/apimeter/scrub"
)

// guideToken is the counting guide's JWT: sub 513, HS256 with "my_super_secret".
const guideToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0"

// keepSink keeps the events it is sent, for the tests to read.
type keepSink struct {
	mu     sync.Mutex
	events []apimeter.Event
}

func (s *keepSink) Send(_ context.Context, evs []apimeter.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, evs...)
	return nil
}
func (s *keepSink) Close(context.Context) error { return nil }

func (s *keepSink) all() []apimeter.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]apimeter.Event(nil), s.events...)
}

// serve starts h on a loopback port and returns its base URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// startGateway builds a gateway for cfg whose events go to sink, serves it
// and returns its URL. Closing it (at cleanup) sends what is queued.
func startGateway(t *testing.T, cfg gateway.Config, opts gateway.Options) (*gateway.Gateway, string) {
	t.Helper()
	g, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	hs := g.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		g.Close(context.Background())
	})
	return g, "http://" + ln.Addr().String()
}

func sinkTo(s capture.Sink) gateway.SinkFunc {
	return func(gateway.Upstream) (capture.Sink, error) { return s, nil }
}

// flush closes g so that every captured call reaches its sink.
func flush(t *testing.T, g *gateway.Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Close(ctx); err != nil {
		t.Fatalf("close gateway: %v", err)
	}
}

func do(t *testing.T, method, url string, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// TestRoutingAndForwarding sends calls to two upstreams chosen by host and
// path prefix and checks what each upstream received and what was
// recorded: API name, route template, target URL and latency.
func TestRoutingAndForwarding(t *testing.T) {
	type seen struct{ path, host, xff, proto, xhost, auth string }
	var mu sync.Mutex
	var got []seen
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, seen{r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("Authorization")})
			mu.Unlock()
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"api":%q}`, name)
		})
	}
	accounts := serve(t, record("accounts"))
	billing := serve(t, record("billing"))
	sink := &keepSink{}
	cfg := gateway.Config{Upstreams: []gateway.Upstream{
		{Name: "accounts", URL: accounts + "/v2", PathPrefix: "/accounts", Routes: []string{"/accounts/{id}/message", "GET /accounts/{id}"}},
		{Name: "billing", URL: billing, Host: "billing.example", StripPrefix: true, PathPrefix: "/b"},
		{Name: "fallback", URL: billing},
	}}
	g, gw := startGateway(t, cfg, gateway.Options{Sink: sinkTo(sink)})

	cases := []struct {
		name, method, path, host string
		wantAPI, wantPath        string
		wantRoute                string
	}{
		{"prefix and route template", "POST", "/accounts/abcdef/message?x=1", "", "accounts", "/v2/accounts/abcdef/message?x=1", "/accounts/{id}/message"},
		{"method in the template", "GET", "/accounts/abcdef", "", "accounts", "/v2/accounts/abcdef", "/accounts/{id}"},
		{"no template matches", "DELETE", "/accounts/abcdef", "", "accounts", "/v2/accounts/abcdef", ""},
		{"prefix on a segment boundary only", "GET", "/accountsx", "", "fallback", "/accountsx", ""},
		{"host and stripped prefix", "GET", "/b/invoices/7", "billing.example:8443", "billing", "/invoices/7", ""},
		{"other host falls back", "GET", "/b/invoices/7", "other.example", "fallback", "/b/invoices/7", ""},
	}
	for _, tc := range cases {
		resp, body := do(t, tc.method, gw+tc.path, "", map[string]string{"Host": tc.host, "Authorization": "Bearer " + guideToken, "X-Forwarded-For": "203.0.113.9"})
		wantAPI := tc.wantAPI
		if wantAPI == "fallback" {
			wantAPI = "billing"
		}
		if resp.StatusCode != 200 || body != fmt.Sprintf(`{"api":%q}`, wantAPI) {
			t.Errorf("%s: got %d %s, want 200 from %s", tc.name, resp.StatusCode, body, wantAPI)
		}
	}
	flush(t, g)
	if len(got) != len(cases) {
		t.Fatalf("upstreams saw %d calls, want %d", len(got), len(cases))
	}
	// Each upstream has its own capture: match events to calls by method,
	// API and path (one call each).
	events := map[string]apimeter.Event{}
	for _, e := range sink.all() {
		events[e.Method+" "+e.APIName+" "+e.Path] = e
	}
	if len(events) != len(cases) {
		t.Fatalf("recorded %d distinct events, want %d", len(events), len(cases))
	}
	for i, tc := range cases {
		s := got[i]
		if s.path != tc.wantPath {
			t.Errorf("%s: upstream got path %q, want %q", tc.name, s.path, tc.wantPath)
		}
		// Untrusted: the client's X-Forwarded-For is replaced by its
		// address.
		if s.xff != "127.0.0.1" || s.proto != "http" || s.auth != "Bearer "+guideToken {
			t.Errorf("%s: upstream got X-Forwarded-For %q, -Proto %q, Authorization %q; want 127.0.0.1, http, the token", tc.name, s.xff, s.proto, s.auth)
		}
		if want := tc.host; want != "" && s.xhost != want {
			t.Errorf("%s: X-Forwarded-Host %q, want %q", tc.name, s.xhost, want)
		}
		path, _, _ := strings.Cut(tc.path, "?")
		e := events[tc.method+" "+tc.wantAPI+" "+path]
		if e.APIName != tc.wantAPI || e.Route != tc.wantRoute || e.Status != 200 || e.UserID != "513" {
			t.Errorf("%s: recorded api %q route %q status %d user %q; want %q %q 200 513", tc.name, e.APIName, e.Route, e.Status, e.UserID, tc.wantAPI, tc.wantRoute)
		}
		wantTarget, _, _ := strings.Cut(tc.wantPath, "?")
		if !strings.HasSuffix(e.TargetURL, wantTarget) || e.TargetLatencyMs <= 0 || e.TargetLatencyMs > e.LatencyMs {
			t.Errorf("%s: target %q %.3f ms (total %.3f ms), want ...%s (no query) and 0 < target <= total", tc.name, e.TargetURL, e.TargetLatencyMs, e.LatencyMs, wantTarget)
		}
		if h := e.RequestHeaders.Get("Authorization"); !scrub.IsFingerprint(h) {
			t.Errorf("%s: Authorization recorded as %q, want a fingerprint", tc.name, h)
		}
	}
}

// TestNoUpstream checks the JSON 404 of a call no upstream matches.
func TestNoUpstream(t *testing.T) {
	up := serve(t, http.NotFoundHandler())
	_, gw := startGateway(t, gateway.Config{Upstreams: []gateway.Upstream{{Name: "a", URL: up, Host: "a.example"}}},
		gateway.Options{Sink: sinkTo(&keepSink{})})
	resp, body := do(t, "GET", gw+"/x", "", nil)
	if resp.StatusCode != 404 || !strings.Contains(body, `"code":"no_upstream"`) {
		t.Fatalf("got %d %s, want a 404 no_upstream JSON error", resp.StatusCode, body)
	}
}

// TestTrustForwarded keeps the client's chain when asked to.
func TestTrustForwarded(t *testing.T) {
	var xff, proto atomic.Value
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff.Store(r.Header.Get("X-Forwarded-For"))
		proto.Store(r.Header.Get("X-Forwarded-Proto"))
	}))
	sink := &keepSink{}
	g, gw := startGateway(t, gateway.Config{TrustForwarded: true, Upstreams: []gateway.Upstream{{Name: "a", URL: up}}}, gateway.Options{Sink: sinkTo(sink)})
	do(t, "GET", gw+"/x", "", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
	flush(t, g)
	if xff.Load() != "203.0.113.9, 127.0.0.1" || proto.Load() != "https" {
		t.Fatalf("upstream got X-Forwarded-For %q, -Proto %q; want \"203.0.113.9, 127.0.0.1\", https", xff.Load(), proto.Load())
	}
	if ev := sink.all(); len(ev) != 1 || ev[0].ClientIP != "203.0.113.9" {
		t.Fatalf("recorded %+v, want one event from 203.0.113.9", ev)
	}
}

// TestUpstreamFailures checks that a dead upstream gives 502 and a slow one
// 504, as JSON, and that both are recorded with that status and the time
// spent waiting on the upstream.
func TestUpstreamFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	release := make(chan struct{})
	slow := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	sink := &keepSink{}
	cfg := gateway.Config{
		Timeouts: gateway.Timeouts{Upstream: gateway.Duration(300 * time.Millisecond)},
		Upstreams: []gateway.Upstream{
			{Name: "dead", URL: dead, PathPrefix: "/dead"},
			{Name: "slow", URL: slow, PathPrefix: "/slow"},
		}}
	g, gw := startGateway(t, cfg, gateway.Options{Sink: sinkTo(sink)})
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{{"/dead/a", 502, "bad_gateway"}, {"/slow/a", 504, "gateway_timeout"}} {
		resp, body := do(t, "GET", gw+tc.path, "", nil)
		var e struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode != tc.status || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != tc.code || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s: got %d %s, want a %d JSON error %s", tc.path, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	st := g.Stats()
	flush(t, g)
	if st.UpstreamErrors != 2 {
		t.Errorf("Stats().UpstreamErrors = %d, want 2", st.UpstreamErrors)
	}
	events := sink.all()
	if len(events) != 2 {
		t.Fatalf("recorded %d events, want 2", len(events))
	}
	for i, want := range []struct {
		api    string
		status int
		minMs  float64
	}{{"dead", 502, 0}, {"slow", 504, 300}} {
		e := events[i]
		if e.APIName != want.api || e.Status != want.status || e.TargetURL == "" || e.TargetLatencyMs <= want.minMs {
			t.Errorf("event %d: api %q status %d target %q %.3f ms; want %q %d, a target URL and more than %.0f ms", i, e.APIName, e.Status, e.TargetURL, e.TargetLatencyMs, want.api, want.status, want.minMs)
		}
	}
}

// TestStreamingAndUpgrade checks that a streamed response reaches the
// client chunk by chunk (before the upstream has finished) and that a
// protocol upgrade (WebSocket's handshake) becomes a two-way connection.
func TestStreamingAndUpgrade(t *testing.T) {
	next := make(chan struct{})
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				<-next
			}
		case "/ws":
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "want an upgrade", 400)
				return
			}
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			for {
				line, err := rw.ReadString('\n')
				if err != nil {
					return
				}
				rw.WriteString("echo " + line)
				rw.Flush()
			}
		}
	}))
	sink := &keepSink{}
	g, gw := startGateway(t, gateway.Config{Upstreams: []gateway.Upstream{{Name: "a", URL: up}}}, gateway.Options{Sink: sinkTo(sink)})

	resp, err := http.Get(gw + "/events")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		// Each event arrives while the upstream still waits to send the
		// next one: the gateway flushed it.
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: got %q, %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{}
	}
	resp.Body.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	cr := bufio.NewReader(conn)
	hresp, err := http.ReadResponse(cr, nil)
	if err != nil || hresp.StatusCode != 101 {
		t.Fatalf("upgrade: got %v, %v; want 101", hresp, err)
	}
	for _, msg := range []string{"hello\n", "again\n"} {
		io.WriteString(conn, msg)
		line, err := cr.ReadString('\n')
		if err != nil || line != "echo "+msg {
			t.Fatalf("through the upgraded connection: got %q, %v; want %q", line, err, "echo "+msg)
		}
	}
	conn.Close()
	time.Sleep(50 * time.Millisecond) // the proxy notices the close
	flush(t, g)
	statuses := map[int]int{}
	for _, e := range sink.all() {
		statuses[e.Status]++
	}
	if statuses[200] != 1 || statuses[101] != 1 {
		t.Fatalf("recorded statuses %v, want one 200 (stream) and one 101 (upgrade)", statuses)
	}
}

// TestQuotaEmbedded: a quota of N per minute per user lets N calls through,
// then answers 429 with Retry-After and a JSON error, forwards nothing more,
// and records the blocked calls; another user and anonymous calls are not
// affected; an override raises one user's limit.
func TestQuotaEmbedded(t *testing.T) {
	testQuota(t, nil)
}

// TestQuotaRedis is TestQuotaEmbedded with the counters on a real
// redis-server shared by two gateways.
func TestQuotaRedis(t *testing.T) {
	rc := redistest.Start(t)
	testQuota(t, func() gateway.Counter { return gateway.NewRedisCounter(rc, "test:") })
}

func testQuota(t *testing.T, counter func() gateway.Counter) {
	const n = 5
	var forwarded atomic.Int64
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded.Add(1)
		io.WriteString(w, "ok")
	}))
	cfg := gateway.Config{
		Upstreams: []gateway.Upstream{{Name: "accounts", URL: up}, {Name: "free", URL: up, PathPrefix: "/free"}},
		Quotas: []gateway.Quota{
			{Name: "user-minute", By: "user", Per: "minute", Limit: n, APIs: []string{"accounts"}, Overrides: map[string]int64{"vip": 2 * n}},
			{Name: "key-day", By: "api_key", Per: "day", Limit: 1000},
		},
	}
	sink := &keepSink{}
	var gws []string
	var gs []*gateway.Gateway
	for i := 0; i < 2; i++ {
		opts := gateway.Options{Sink: sinkTo(sink)}
		if counter != nil {
			opts.Counter = counter()
		} else if i == 1 {
			break // in-process counters are not shared
		}
		g, gw := startGateway(t, cfg, opts)
		gs, gws = append(gs, g), append(gws, gw)
	}
	token := func(sub string) string {
		// Unverified tokens: only the claims matter here.
		return "Bearer eyJhbGciOiJub25lIn0." + b64(`{"sub":"`+sub+`"}`) + ".c2ln"
	}
	status := func(i int, path, sub string) (int, http.Header, string) {
		h := map[string]string{"X-Api-Key": "key-1"}
		if sub != "" {
			h["Authorization"] = token(sub)
		}
		resp, body := do(t, "GET", gws[i%len(gws)]+path, "", h)
		return resp.StatusCode, resp.Header, body
	}
	// Close to the end of a minute the window could turn within the test.
	if s := time.Now().Second(); s >= 55 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	for i := 0; i < n; i++ {
		if st, _, body := status(i, "/a", "513"); st != 200 {
			t.Fatalf("call %d of %d: got %d %s, want 200", i+1, n, st, body)
		}
	}
	st, h, body := status(n, "/a", "513")
	var e struct {
		Error struct{ Code, Message string }
	}
	if st != 429 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != "quota_exceeded" || !strings.Contains(e.Error.Message, `"user-minute"`) {
		t.Fatalf("call %d: got %d %s, want a 429 quota_exceeded JSON error naming user-minute", n+1, st, body)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q, want 1 to 60 seconds", h.Get("Retry-After"))
	}
	if st, _, _ := status(n+1, "/a", "513"); st != 429 {
		t.Fatalf("call %d: got %d, want 429", n+2, st)
	}
	if st, _, _ := status(0, "/a", "514"); st != 200 {
		t.Fatalf("another user: got %d, want 200", st)
	}
	if st, _, _ := status(0, "/a", ""); st != 200 {
		t.Fatalf("no user: got %d, want 200 (not counted by a per-user quota)", st)
	}
	if st, _, _ := status(0, "/free/a", "513"); st != 200 {
		t.Fatalf("an API the quota does not cover: got %d, want 200", st)
	}
	for i := 0; i < 2*n; i++ {
		if st, _, _ := status(i, "/a", "vip"); st != 200 {
			t.Fatalf("override: call %d of %d got %d, want 200", i+1, 2*n, st)
		}
	}
	if st, _, _ := status(0, "/a", "vip"); st != 429 {
		t.Fatalf("override: call %d got %d, want 429", 2*n+1, st)
	}
	want := int64(n + 3 + 2*n)
	if got := forwarded.Load(); got != want {
		t.Fatalf("upstream saw %d calls, want %d (blocked calls are not forwarded)", got, want)
	}
	for _, g := range gs {
		flush(t, g)
	}
	blocked := 0
	for _, e := range sink.all() {
		if e.Status != 429 {
			continue
		}
		blocked++
		var md struct {
			BlockedBy string `json:"blocked_by"`
		}
		if json.Unmarshal(e.Metadata, &md) != nil || md.BlockedBy != "user-minute" || e.TargetURL != "" {
			t.Errorf("blocked event: metadata %s target %q, want blocked_by user-minute and no target", e.Metadata, e.TargetURL)
		}
	}
	if blocked != 3 {
		t.Fatalf("recorded %d blocked calls, want 3", blocked)
	}
}

func b64(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []byte
	b := []byte(s)
	for len(b) > 0 {
		var v uint32
		n := min(3, len(b))
		for i := 0; i < 3; i++ {
			v <<= 8
			if i < n {
				v |= uint32(b[i])
			}
		}
		for i := 0; i < n+1; i++ {
			out = append(out, enc[(v>>(18-6*i))&63])
		}
		b = b[n:]
	}
	return string(out)
}

// TestCollectorDown: with a collector that accepts connections and never
// answers, and with one that refuses them, the gateway's clients get the
// same answers, and the events that could not be sent are counted and
// bounded by the queue.
func TestCollectorDown(t *testing.T) {
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + refused.Addr().String()
	refused.Close()

	body := strings.Repeat("y", 3000)
	up := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Up", "1")
		io.WriteString(w, body)
	}))
	// The sender holds one batch (500 events by default) besides the
	// queue: more calls than both must overflow.
	const queue, calls = 16, 600
	for _, tc := range []struct{ name, url string }{{"hanging", "http://" + hang.Addr().String()}, {"refusing", refusedURL}} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := gateway.New(gateway.Config{QueueSize: queue, Upstreams: []gateway.Upstream{{Name: "a", URL: up, AppID: "x"}}},
				gateway.Options{Sink: gateway.CollectorSinks(tc.url, "", nil)})
			if err != nil {
				t.Fatal(err)
			}
			hs := g.Server()
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			go hs.Serve(ln)
			defer hs.Close()
			gw := "http://" + ln.Addr().String()
			for i := 0; i < calls; i++ {
				resp, got := do(t, "POST", gw+"/a", "payload", nil)
				if resp.StatusCode != 200 || got != body || resp.Header.Get("X-Up") != "1" {
					t.Fatalf("call %d: got %d, %d bytes; want the upstream's 200 and body", i, resp.StatusCode, len(got))
				}
			}
			st := g.Stats()
			if st.Capture.Enqueued+st.Capture.Dropped != calls {
				t.Errorf("enqueued %d + dropped %d, want %d calls accounted for", st.Capture.Enqueued, st.Capture.Dropped, calls)
			}
			if st.Capture.Dropped == 0 || st.Capture.Queued > queue || st.Capture.Sent != 0 {
				t.Errorf("stats %+v: want drops counted, at most %d queued, none sent", st.Capture, queue)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			g.Close(ctx) // gives up on the collector when ctx ends
			st = g.Stats()
			if st.Capture.Sent != 0 || st.Capture.Dropped+st.Capture.Failed != calls {
				t.Errorf("after Close: %+v, want all %d unsent events counted as dropped or failed", st.Capture, calls)
			}
		})
	}
}

// TestMemoryCounter checks windows: a full window blocks, a new window
// starts from zero, a blocked call counts nowhere.
func TestMemoryCounter(t *testing.T) {
	m := gateway.NewMemoryCounter()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	w := func(key string, limit int64, end time.Time) gateway.Window {
		return gateway.Window{Key: key, Limit: limit, End: end}
	}
	steps := []struct {
		at   time.Time
		ws   []gateway.Window
		want int
	}{
		{t0, []gateway.Window{w("m:1", 2, t0.Add(time.Minute)), w("d:1", 3, t0.Add(24*time.Hour))}, -1},
		{t0, []gateway.Window{w("m:1", 2, t0.Add(time.Minute)), w("d:1", 3, t0.Add(24*time.Hour))}, -1},
		{t0, []gateway.Window{w("m:1", 2, t0.Add(time.Minute)), w("d:1", 3, t0.Add(24*time.Hour))}, 0},
		{t0.Add(time.Minute), []gateway.Window{w("m:1", 2, t0.Add(2*time.Minute)), w("d:1", 3, t0.Add(24*time.Hour))}, -1},
		{t0.Add(time.Minute), []gateway.Window{w("m:1", 2, t0.Add(2*time.Minute)), w("d:1", 3, t0.Add(24*time.Hour))}, 1},
		{t0, []gateway.Window{w("zero", 0, t0.Add(time.Minute))}, 0},
	}
	for i, s := range steps {
		got, err := m.Take(ctx, s.at, s.ws)
		if err != nil || got != s.want {
			t.Fatalf("step %d: Take = %d, %v; want %d", i, got, err, s.want)
		}
	}
}
