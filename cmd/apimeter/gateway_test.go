package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/bench"
	"github.com/apimeter/apimeter/scrub"
)

// guideAPI is the counting guide's API: GET /accounts/{id}/message answers a JSON
// message longer than the body cap.
func guideAPI(t *testing.T) string {
	t.Helper()
	msg := strings.Repeat("m", 3000)
	mux := http.NewServeMux()
	mux.HandleFunc("/accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=upstream-cookie-secret")
		fmt.Fprintf(w, `{"account":%q,"my_message":%q}`, r.PathValue("id"), msg)
	})
	s, err := bench.ServeAt("127.0.0.1:0", mux)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.URL
}

// readKey makes a read key of org acme in data, as `apimeter keys create`
// does, and returns the header that sends it.
func readKey(t *testing.T, data string) map[string]string {
	t.Helper()
	_, key, err := auth.Create(data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + key}
}

func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func testServerFlags(t *testing.T) instance.Config {
	return instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(t.TempDir(), "data"), BodyCap: 1024, MaxBodyBytes: 1 << 24,
		MaxBatchEvents: 1000, DedupeHorizon: time.Hour, DailyInterval: -1, LogLevel: 8}
}

func call(t *testing.T, method, u, body string, h map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestGatewayToCollector runs `apimeter gateway`'s pieces end to end: a
// real upstream (the counting guide's API), the gateway, and a real collector
// started in this process, and reads back what the collector stored: the
// user from the JWT's sub, the company from the URL, the route template,
// status, latency and upstream time, bodies capped, secrets removed; and a
// dead upstream's 502.
func TestGatewayToCollector(t *testing.T) {
	ctx := context.Background()
	f := testServerFlags(t)
	f.CompanyRule = []string{"url:/accounts/{id}"}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{
		CompanyRules: []string{"url:/accounts/{id}"},
		Upstreams: []gateway.Upstream{
			{Name: "accounts", URL: guideAPI(t), PathPrefix: "/accounts", Routes: []string{"/accounts/{id}/message"}},
			{Name: "dead", URL: deadURL(t), PathPrefix: "/dead"},
		}}
	g, err := gateway.New(cfg, gateway.Options{Sink: gateway.CollectorSinks(in.URL, app.ID, nil)})
	if err != nil {
		t.Fatal(err)
	}
	hs := g.Server()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go hs.Serve(ln)
	gw := "http://" + ln.Addr().String()

	const apiKey, cookie = "live-key-7f3a9c", "sid=browser-cookie-secret"
	reqBody := `{"text":"` + strings.Repeat("r", 2000) + `"}`
	status, _, body := call(t, "POST", gw+"/accounts/abcdef/message?api_key=query-key-1234&page=2", reqBody,
		map[string]string{"Authorization": "Bearer " + bench.Token, "X-Api-Key": apiKey, "Cookie": cookie, "Content-Type": "application/json"})
	if status != 200 || !strings.Contains(body, `"account":"abcdef"`) || len(body) < 3000 {
		t.Fatalf("through the gateway: %d, %d bytes; want the upstream's 200 and whole body", status, len(body))
	}
	status, _, body = call(t, "GET", gw+"/dead/x", "", nil)
	if status != 502 || !strings.Contains(body, `"bad_gateway"`) {
		t.Fatalf("dead upstream: %d %s, want a 502 JSON error", status, body)
	}
	hs.Close()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := g.Close(cctx); err != nil {
		t.Fatalf("close gateway: %v", err)
	}
	if st := g.Stats(); st.Capture.Sent != 2 || st.Capture.Failed+st.Capture.Dropped != 0 {
		t.Fatalf("gateway stats %+v, want 2 sent", st.Capture)
	}

	events, err := in.Store.Events(ctx, apimeter.EventFilter{Org: "acme", Env: "prod", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	byAPI := map[string]apimeter.Event{}
	for _, e := range events {
		byAPI[e.APIName] = e
	}
	e, ok := byAPI["accounts"]
	if !ok || len(events) != 2 {
		t.Fatalf("stored %d events (%v), want the accounts call and the dead one", len(events), byAPI)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"user 513 from the JWT sub", e.UserID == "513"},
		{"company abcdef from the URL", e.CompanyID == "abcdef"},
		{"route template", e.Route == "/accounts/{id}/message"},
		{"path", e.Path == "/accounts/abcdef/message"},
		{"status 200", e.Status == 200},
		{"latency", e.LatencyMs > 0 && e.TargetLatencyMs > 0 && e.TargetLatencyMs <= e.LatencyMs},
		{"target URL, without the query", strings.HasPrefix(e.TargetURL, "http://127.0.0.1:") && strings.HasSuffix(e.TargetURL, "/accounts/abcdef/message")},
		// The collector schema has no truncated flag: a capped body
		// arrives as its first 1024 bytes, the full size as Content-Length.
		{"request body capped", len(e.RequestBody.Text) == 1024 && strings.HasPrefix(reqBody, e.RequestBody.Text) && e.RequestSize == int64(len(reqBody))},
		{"response body capped", len(e.ResponseBody.Text) == 1024 && e.ResponseSize > 3000},
		{"API key id is the key's fingerprint", scrub.IsFingerprint(e.APIKeyID) && e.APIKeyID == e.RequestHeaders.Get("X-Api-Key")},
		{"query key scrubbed", strings.Contains(e.Query, "page=2") && !strings.Contains(e.Query, "query-key-1234")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: stored %+v", c.what, e)
		}
	}
	all, _ := json.Marshal(events)
	for _, secret := range []string{bench.Token, apiKey, cookie, "query-key-1234", "upstream-cookie-secret"} {
		if strings.Contains(string(all), secret) {
			t.Errorf("secret %q was stored", secret)
		}
	}
	d := byAPI["dead"]
	if d.Status != 502 || d.TargetLatencyMs <= 0 || d.TargetURL == "" {
		t.Errorf("dead upstream stored as status %d, target %q %.3f ms; want 502 with the upstream's time", d.Status, d.TargetURL, d.TargetLatencyMs)
	}

	// The Metrics API groups by the gateway's API name and reads the
	// upstream's time as target_response_time.
	day := time.Now().UTC().Truncate(24 * time.Hour)
	q := url.Values{"select": {"sum(message_count),avg(target_response_time)"},
		"timeRange": {day.Format("01/02/2006 15:04") + "~" + day.Add(48*time.Hour).Format("01/02/2006 15:04")}}
	status, _, body = call(t, "GET", in.URL+"/v1/o/acme/environments/prod/stats/apiproxy?"+q.Encode(), "", readKey(t, f.Data))
	if status != 200 || !strings.Contains(body, `"accounts"`) || !strings.Contains(body, `"dead"`) || !strings.Contains(body, "target_response_time") {
		t.Fatalf("Metrics API by apiproxy: %d %s", status, body)
	}
}

// TestGatewayInServe runs the gateway inside `apimeter serve
// --gateway-config`: events go into the store without HTTP, and a quota of
// N per minute lets N calls through and answers 429 after, recorded as
// blocked and visible in the Metrics API and in usage.
func TestGatewayInServe(t *testing.T) {
	ctx := context.Background()
	f := testServerFlags(t)
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	const n = 4
	conf := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`listen: 127.0.0.1:0
org: acme
env: prod
upstreams:
  - name: accounts
    url: %s
    routes: ["/accounts/{id}/message"]
quotas:
  - name: per-user-minute
    by: user
    per: minute
    limit: %d
`, guideAPI(t), n)), 0o600)
	g, closeRedis, err := instance.StartGateway(ctx, in, conf, f.IdentityConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRedis()
	gw := "http://" + g.Addr().String()
	if s := time.Now().Second(); s >= 57 {
		time.Sleep(time.Duration(61-s) * time.Second) // keep the calls in one minute
	}
	for i := 0; i < n+2; i++ {
		status, h, body := call(t, "GET", gw+"/accounts/abcdef/message", "", map[string]string{"Authorization": "Bearer " + bench.Token})
		want := 200
		if i >= n {
			want = 429
		}
		if status != want || want == 429 && (h.Get("Retry-After") == "" || !strings.Contains(body, "quota_exceeded")) {
			t.Fatalf("call %d: %d Retry-After %q %s; want %d", i+1, status, h.Get("Retry-After"), body, want)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	events, err := in.Store.Events(ctx, apimeter.EventFilter{Org: "acme", Env: "prod", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	blocked := 0
	for _, e := range events {
		if e.UserID != "513" || e.APIName != "accounts" || e.Route != "/accounts/{id}/message" {
			t.Errorf("stored user %q api %q route %q, want 513 accounts /accounts/{id}/message", e.UserID, e.APIName, e.Route)
		}
		if e.Status == 429 {
			blocked++
			if !strings.Contains(string(e.Metadata), `"blocked_by":"per-user-minute"`) {
				t.Errorf("blocked call's metadata %s, want blocked_by per-user-minute", e.Metadata)
			}
		}
	}
	if len(events) != n+2 || blocked != 2 {
		t.Fatalf("stored %d events, %d blocked; want %d and 2", len(events), blocked, n+2)
	}
	_, _, body := call(t, "GET", in.URL+"/metrics", "", nil)
	for _, want := range []string{"apimeter_gateway_blocked_total 2", fmt.Sprintf("apimeter_gateway_events_sent_total %d", n+2), "apimeter_gateway_events_dropped_total 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	_, _, body = call(t, "GET", in.URL+"/v1/usage?org=acme&env=prod&group=user_id", "", readKey(t, f.Data))
	if !strings.Contains(body, `"id":"513"`) || !strings.Contains(body, fmt.Sprintf(`"calls":%d,"errors":2`, n+2)) {
		t.Errorf("usage: %s; want user 513 with %d calls, 2 errors (the blocked ones)", body, n+2)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	q := url.Values{"select": {"sum(message_count)"}, "filter": {"(response_status_code eq 429)"},
		"timeRange": {day.Format("01/02/2006 15:04") + "~" + day.Add(48*time.Hour).Format("01/02/2006 15:04")}}
	status, _, body := call(t, "GET", in.URL+"/v1/o/acme/environments/prod/stats/apiproxy?"+q.Encode(), "", readKey(t, f.Data))
	if status != 200 || !strings.Contains(body, `"2.0"`) {
		t.Errorf("Metrics API, blocked calls by apiproxy: %d %s; want 2.0", status, body)
	}
}
