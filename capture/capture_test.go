package capture_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/moesif"
)

var jwtSecret = []byte("my_super_secret")

func token(t *testing.T, sub string, key []byte) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "name": "John Doe"}).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func newHTTPSink(t *testing.T, url, appID string) *capture.HTTPSink {
	t.Helper()
	s, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: url, ApplicationID: appID, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("http sink: %v", err)
	}
	return s
}

// accountsMux is the counting guide's API: POST /accounts/{id}/message, echoing the
// size it read, and a JSON answer of respSize bytes.
func accountsMux(respSize int) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "sid=server-cookie-secret")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"read":%d,"pad":"%s"}`, len(b), strings.Repeat("z", respSize))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return mux
}

func TestCollectorReceivesScrubbedEvents(t *testing.T) {
	col := startCollector(t)
	good := token(t, "513", jwtSecret)
	forged := token(t, "666", []byte("not the secret"))
	cases := []struct {
		name       string
		jwtKey     any
		auth       string
		path       string
		body       string
		wantUser   string
		wantComp   string
		wantRoute  string
		wantStatus int
	}{
		{"bearer sub decoded", nil, "Bearer " + good, "/accounts/abcdef/message?api_key=query-secret&x=1", strings.Repeat("a", 3000), "513", "abcdef", "/accounts/{id}/message", 201},
		{"bearer sub verified", jwtSecret, "Bearer " + good, "/accounts/42/message", `{"small":true}`, "513", "42", "/accounts/{id}/message", 201},
		{"forged token identifies nobody", jwtSecret, "Bearer " + forged, "/accounts/7/message", "x", "", "7", "/accounts/{id}/message", 201},
		{"no route matched", nil, "Bearer " + good, "/nowhere", "", "513", "", "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := capture.New(capture.Options{
				Sink:            newHTTPSink(t, col.URL, col.AppID),
				LogBody:         true,
				JWTKey:          tc.jwtKey,
				IdentifyCompany: func(r *http.Request, _ capture.Response) string { return r.PathValue("id") },
				SessionToken:    func(r *http.Request, _ capture.Response) string { return r.Header.Get("Authorization") },
			})
			if err != nil {
				t.Fatal(err)
			}
			app := httptest.NewServer(c.Middleware(accountsMux(2000)))
			defer app.Close()
			method := http.MethodPost
			if tc.wantStatus == 404 {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, app.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", tc.auth)
			req.Header.Set("Cookie", "session=cookie-secret")
			req.Header.Set("X-Api-Key", "header-key-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			txID := resp.Header.Get(moesif.TransactionIDHeader)
			if txID == "" {
				t.Fatalf("response has no %s header", moesif.TransactionIDHeader)
			}
			closeCapture(t, c)
			if st := c.Stats(); st.Sent != 1 || st.Failed != 0 || st.Dropped != 0 {
				t.Fatalf("stats = %+v, want 1 sent and nothing failed or dropped", st)
			}

			var ev *apimeter.Event
			for _, e := range col.events(t) {
				if e.ID == txID {
					ev = &e
				}
			}
			if ev == nil {
				t.Fatalf("no stored event with id %s", txID)
			}
			if ev.UserID != tc.wantUser || ev.CompanyID != tc.wantComp || ev.Route != tc.wantRoute || ev.Status != tc.wantStatus {
				t.Errorf("got user=%q company=%q route=%q status=%d, want %q %q %q %d",
					ev.UserID, ev.CompanyID, ev.Route, ev.Status, tc.wantUser, tc.wantComp, tc.wantRoute, tc.wantStatus)
			}
			if ev.Weight != 1 {
				t.Errorf("weight = %d, want 1", ev.Weight)
			}
			if want := tc.body[:min(len(tc.body), capture.DefaultMaxBodyBytes)]; tc.wantStatus != 404 && ev.RequestBody.Text != want {
				t.Errorf("request body = %d bytes %.40q..., want the first %d bytes sent", len(ev.RequestBody.Text), ev.RequestBody.Text, len(want))
			}
			if n := len(ev.ResponseBody.Text); tc.wantStatus == 201 && n != capture.DefaultMaxBodyBytes {
				t.Errorf("response body kept %d bytes, want the cap %d", n, capture.DefaultMaxBodyBytes)
			}
			if tc.wantStatus == 201 && ev.ResponseSize <= capture.DefaultMaxBodyBytes {
				t.Errorf("response size = %d, want the full size written (> cap)", ev.ResponseSize)
			}
			if !strings.HasPrefix(ev.SessionToken, "fp_") {
				t.Errorf("session token = %q, want a fingerprint", ev.SessionToken)
			}
			raw := string(col.rawPayload())
			for _, secret := range []string{good, forged, "cookie-secret", "header-key-secret", "query-secret", "server-cookie-secret"} {
				if strings.Contains(raw, secret) {
					t.Errorf("secret %.20q... left the process in the batch posted to the collector", secret)
				}
			}
			if !strings.Contains(raw, `"event_id":"`+txID+`"`) {
				t.Errorf("batch does not carry event_id %s", txID)
			}
		})
	}
}

func TestSampleRateSetsWeight(t *testing.T) {
	cases := []struct {
		name       string
		rate       float64
		wantWeight int64
	}{
		{"all", 0, 1},
		{"quarter", 0.25, 4},
		{"third", 0.3, 3},
		{"tenth", 0.1, 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink, SampleRate: tc.rate})
			if err != nil {
				t.Fatal(err)
			}
			h := c.Middleware(accountsMux(10))
			for range 400 {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/health", nil))
			}
			closeCapture(t, c)
			evs := sink.all()
			if len(evs) == 0 || (tc.rate == 0 && len(evs) != 400) || len(evs) > 400 {
				t.Fatalf("kept %d of 400 calls at rate %v", len(evs), tc.rate)
			}
			for _, e := range evs {
				if e.Weight != tc.wantWeight {
					t.Fatalf("weight = %d, want %d", e.Weight, tc.wantWeight)
				}
			}
		})
	}
	if _, err := capture.New(capture.Options{Sink: &memSink{}, SampleRate: 1.5}); err == nil {
		t.Error("SampleRate 1.5 accepted, want an error")
	}
}

// memSink keeps every event it is sent; the in-process Sink a user would
// write to feed their own pipeline.
type memSink struct {
	mu      sync.Mutex
	events  []apimeter.Event
	batches []int // events per Send
}

func (s *memSink) Send(_ context.Context, evs []apimeter.Event) error {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.batches = append(s.batches, len(evs))
	s.mu.Unlock()
	return nil
}

func (s *memSink) Close(context.Context) error { return nil }

func (s *memSink) all() []apimeter.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]apimeter.Event(nil), s.events...)
}

// Batches end at BatchSize events or when their bodies reach 8 MiB,
// whichever comes first.
func TestBatchesAreBoundedByCountAndBodyBytes(t *testing.T) {
	cases := []struct {
		name        string
		batchSize   int
		bodyBytes   int
		calls       int
		wantBatches []int
	}{
		{"count bound", 4, 10, 10, []int{4, 4, 2}},
		{"body bytes bound: 1 MiB bodies, 8 per batch", 500, 1 << 20, 10, []int{8, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink, LogBody: true, MaxBodyBytes: tc.bodyBytes, BatchSize: tc.batchSize, FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
			body := bytes.Repeat([]byte("b"), tc.bodyBytes)
			for range tc.calls {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/x", bytes.NewReader(body)))
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if !slices.Equal(sink.batches, tc.wantBatches) {
				t.Fatalf("batches of %v events, want %v", sink.batches, tc.wantBatches)
			}
		})
	}
}

func TestQueueFullDropsAndHandlerStillAnswers(t *testing.T) {
	hang := startHangingCollector(t)
	c, err := capture.New(capture.Options{
		Sink:      newHTTPSink(t, hang.URL, "app"),
		QueueSize: 4, BatchSize: 1, LogBody: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(c.Middleware(accountsMux(100)))
	defer app.Close()
	const calls = 50
	for i := range calls {
		resp, err := http.Post(app.URL+"/accounts/1/message", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("call %d: status %d, want 201", i, resp.StatusCode)
		}
	}
	// Every call was answered while the collector still hangs.
	st := c.Stats()
	if st.Enqueued+st.Dropped != calls || st.Dropped < calls-5 {
		t.Fatalf("stats = %+v: want enqueued+dropped = %d and at least %d dropped (queue 4 + 1 in flight)", st, calls, calls-5)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); err == nil {
		t.Fatal("Close returned nil with the collector hanging, want the context's error")
	}
	if st := c.Stats(); st.Sent != 0 || st.Failed != st.Enqueued {
		t.Fatalf("after Close: %+v, want nothing sent and every enqueued event failed", st)
	}
}

func TestHangingCollectorDoesNotBlockRequests(t *testing.T) {
	hang := startHangingCollector(t)
	// Retries bounded: a collector that answers 503 for good then fails
	// the batches (unbounded, the default, they wait for it).
	sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: hang.URL, ApplicationID: "app", MaxRetries: 3,
		Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.New(capture.Options{Sink: sink, BatchSize: 1, QueueSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(c.Middleware(accountsMux(10)))
	defer app.Close()
	// Concurrent callers; the collector is released only after all of them
	// have their answer, so any wait on analytics would deadlock the test.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			resp, err := http.Get(app.URL + "/health")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Enqueued != 40 || st.Sent != 0 {
		t.Fatalf("stats = %+v, want 40 enqueued and none sent while the collector hangs", st)
	}
	hang.Release()
	closeCapture(t, c)
	if st := c.Stats(); st.Failed == 0 {
		t.Fatalf("stats = %+v, want failures from a collector answering 503", st)
	}
}

func TestCallbackPanicsAreRecovered(t *testing.T) {
	sink := &memSink{}
	c, err := capture.New(capture.Options{
		Sink:            sink,
		IdentifyUser:    func(*http.Request, capture.Response) string { panic("user boom") },
		IdentifyCompany: func(*http.Request, capture.Response) string { panic("company boom") },
		Metadata:        func(*http.Request, capture.Response) map[string]any { panic("meta boom") },
		Mask:            func(*apimeter.Event) { panic("mask boom") },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "513", jwtSecret))
	c.Middleware(accountsMux(10)).ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "ok" {
		t.Fatalf("handler answered %d %q, want 200 ok", rec.Code, rec.Body.String())
	}
	closeCapture(t, c)
	if st := c.Stats(); st.Panics != 4 || st.Sent != 1 {
		t.Fatalf("stats = %+v, want 4 panics recovered and the event sent", st)
	}
	if evs := sink.all(); evs[0].UserID != "513" {
		t.Fatalf("user = %q, want the JWT sub after IdentifyUser panicked", evs[0].UserID)
	}
}

func TestSkipMaskMetadataAndRoute(t *testing.T) {
	sink := &memSink{}
	c, err := capture.New(capture.Options{
		Sink:     sink,
		APIName:  "accounts",
		Skip:     func(r *http.Request, res capture.Response) bool { return r.URL.Path == "/health" },
		Metadata: func(r *http.Request, res capture.Response) map[string]any { return map[string]any{"size": res.Size} },
		Mask: func(e *apimeter.Event) {
			e.RequestHeaders = append(e.RequestHeaders, apimeter.Header{Name: "Authorization", Value: "leaked"})
		},
		RouteFunc: func(r *http.Request) string { return "custom:" + r.Pattern },
		ClientIP:  func(r *http.Request) string { return r.Header.Get("X-Forwarded-For") },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Middleware(accountsMux(3))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/health", nil))
	req := httptest.NewRequest("POST", "/accounts/9/message", strings.NewReader("hi"))
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	h.ServeHTTP(httptest.NewRecorder(), req)
	closeCapture(t, c)
	evs := sink.all()
	if st := c.Stats(); st.Skipped != 1 || len(evs) != 1 {
		t.Fatalf("stats = %+v, %d events; want 1 skipped, 1 sent", st, len(evs))
	}
	e := evs[0]
	var meta map[string]any
	if err := json.Unmarshal(e.Metadata, &meta); err != nil || meta["size"] != float64(22) {
		t.Errorf("metadata = %s (%v), want {\"size\":22}", e.Metadata, err)
	}
	if e.Route != "custom:POST /accounts/{id}/message" || e.APIName != "accounts" {
		t.Errorf("route=%q api=%q", e.Route, e.APIName)
	}
	if e.ClientIP != "203.0.113.7" {
		t.Errorf("client ip = %q, want the one ClientIP returned", e.ClientIP)
	}
	if v := e.RequestHeaders.Get("Authorization"); v == "leaked" {
		t.Errorf("a secret header added by Mask was not scrubbed: %q", v)
	}
}

func TestRouteFromServeMuxPattern(t *testing.T) {
	cases := []struct{ name, pattern, path, want string }{
		{"method and wildcard", "GET /accounts/{id}/message", "/accounts/1/message", "/accounts/{id}/message"},
		{"no method", "/items/{rest...}", "/items/a/b", "/items/{rest...}"},
		{"host", "example.com/v1/{x}", "/v1/y", "/v1/{x}"},
		{"method and host", "POST example.com/v1/{x}", "/v1/y", "/v1/{x}"},
		{"exact end", "/a/{$}", "/a/", "/a/{$}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.HandleFunc(tc.pattern, func(http.ResponseWriter, *http.Request) {})
			method := "GET"
			if strings.HasPrefix(tc.pattern, "POST") {
				method = "POST"
			}
			req := httptest.NewRequest(method, "http://example.com"+tc.path, nil)
			c.Middleware(mux).ServeHTTP(httptest.NewRecorder(), req)
			closeCapture(t, c)
			if evs := sink.all(); len(evs) != 1 || evs[0].Route != tc.want {
				t.Fatalf("events %+v, want one with route %q", evs, tc.want)
			}
		})
	}
}

func TestTransactionID(t *testing.T) {
	cases := []struct {
		name     string
		trust    bool
		noHeader bool // DisableTransactionID
		incoming string
		wantSame bool
	}{
		{"generated when absent", false, false, "", false},
		{"caller's id not trusted by default", false, false, "client-chosen", false},
		{"caller's id taken when trusted", true, false, "client-chosen", true},
		{"overlong id replaced", true, false, strings.Repeat("x", 300), false},
		{"no response header when disabled", false, true, "", false},
		{"trusted id without the response header", true, true, "client-chosen", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink, TrustTransactionID: tc.trust, DisableTransactionID: tc.noHeader})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/health", nil)
			if tc.incoming != "" {
				req.Header.Set(moesif.TransactionIDHeader, tc.incoming)
			}
			rec := httptest.NewRecorder()
			c.Middleware(accountsMux(1)).ServeHTTP(rec, req)
			closeCapture(t, c)
			e := sink.all()[0]
			got, want := rec.Header().Get(moesif.TransactionIDHeader), e.ID
			if tc.noHeader {
				want = ""
			}
			if e.ID == "" || got != want || (e.ID == tc.incoming) != tc.wantSame {
				t.Fatalf("event id %q, response header %q, incoming %q; want the header %q and the incoming id used: %v", e.ID, got, tc.incoming, want, tc.wantSame)
			}
			n := 0
			for _, h := range e.RequestHeaders {
				if strings.EqualFold(h.Name, moesif.TransactionIDHeader) {
					n++
					if h.Value != e.ID {
						t.Errorf("request header carries %q, want the event id %q", h.Value, e.ID)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d %s request headers in the event, want 1", n, moesif.TransactionIDHeader)
			}
		})
	}
}

// failingSink fails every batch until ok is set.
type failingSink struct {
	mu sync.Mutex
	ok bool
}

func (s *failingSink) Send(context.Context, []apimeter.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ok {
		return nil
	}
	return fmt.Errorf("brokers unreachable")
}

func (s *failingSink) Close(context.Context) error { return nil }

// TestSendFailuresLoggedRateLimited: a Sink that is down fails every batch;
// the sender logs the first failure at once and the rest as one line (at
// close here, well within the rate limit), and notes when sending works
// again. Every failed event is counted.
func TestSendFailuresLoggedRateLimited(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	sink := &failingSink{}
	c, err := capture.New(capture.Options{Sink: sink, BatchSize: 1, FlushInterval: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	const calls = 20
	for range calls {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
		// One batch at a time, so that each call is one failed batch.
		waitUntil(t, func() bool { st := c.Stats(); return st.Failed+st.Sent == st.Enqueued })
	}
	sink.mu.Lock()
	sink.ok = true
	sink.mu.Unlock()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	waitUntil(t, func() bool { return c.Stats().Sent == 1 })
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Failed != calls || st.Sent != 1 {
		t.Fatalf("stats %+v, want %d failed and 1 sent", st, calls)
	}
	mu.Lock()
	defer mu.Unlock()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{"events=1 batches=1 err=\"brokers unreachable\"", fmt.Sprintf("events=%d batches=%d", calls-1, calls-1), "sending again"}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("log line %d: %s\nwant it to say %s", i+1, lines[i], w)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// waitUntil waits for cond, at most 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRouteOfCallsRefusedBeforeTheMux: a call the API's own auth answers
// 401 before its ServeMux runs still gets the route the mux would have
// served it with, given Routes.
func TestRouteOfCallsRefusedBeforeTheMux(t *testing.T) {
	sink := &memSink{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(http.ResponseWriter, *http.Request) {})
	c, err := capture.New(capture.Options{Sink: sink, Routes: mux})
	if err != nil {
		t.Fatal(err)
	}
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	h := c.Middleware(auth)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com/orders/7", nil))
	ok := httptest.NewRequest("GET", "http://example.com/orders/8", nil)
	ok.Header.Set("Authorization", "Bearer x")
	h.ServeHTTP(httptest.NewRecorder(), ok)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com/nowhere", nil))
	closeCapture(t, c)
	evs := sink.all()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for i, want := range []struct {
		status int
		route  string
	}{{401, "/orders/{id}"}, {200, "/orders/{id}"}, {401, ""}} {
		if evs[i].Status != want.status || evs[i].Route != want.route {
			t.Errorf("event %d: status %d route %q, want %d %q", i, evs[i].Status, evs[i].Route, want.status, want.route)
		}
	}
}
