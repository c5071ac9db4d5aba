package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
)

// TestPortalTokenCLI: apimeter portal token create, list and revoke on the
// data directory of a running server, which takes the new token at once
// and refuses it within a second of its revocation.
func TestPortalTokenCLI(t *testing.T) {
	f := testServerFlags(t)
	in, err := instance.Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tok := lastLine(t, "portal", "token", "create", "--data", f.Data, "--org", "acme", "--env", "prod", "--company-id", "c1", "--ttl", "2h", "--page", "usage", "--name", "c1 portal")
	if !strings.HasPrefix(tok, "apmp_") {
		t.Fatalf("portal token create printed %q", tok)
	}
	code, out, _ := runMain(t, "portal", "token", "list", "--data", f.Data, "--org", "acme")
	if code != 0 || !strings.Contains(out, "company:c1") || strings.Contains(out, tok) {
		t.Fatalf("portal token list: exit %d\n%s", code, out)
	}
	id := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])[0]
	get := func(path string) int {
		req, _ := http.NewRequest("GET", in.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/portal/api/v1/usage"); c != http.StatusOK {
		t.Fatalf("usage with the new token: %d", c)
	}
	if c := get("/portal/api/v1/events"); c != http.StatusForbidden {
		t.Errorf("events with a token limited to usage: %d, want 403", c)
	}
	if c, _, errOut := runMain(t, "portal", "token", "create", "--data", f.Data, "--org", "acme", "--user-id", "u1", "--company-id", "c1"); c == 0 {
		t.Errorf("create with a user and a company: exit 0\n%s", errOut)
	}
	if c, out, errOut := runMain(t, "portal", "token", "revoke", "--data", f.Data, id); c != 0 || !strings.Contains(out, "revoked "+id) {
		t.Fatalf("revoke: exit %d\n%s%s", c, out, errOut)
	}
	deadline := time.Now().Add(5 * time.Second)
	for get("/portal/api/v1/usage") != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the revoked token still works 5 s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPortalInBrowser starts apimeter with a gateway's quotas, stores a
// customer's calls, and runs the portal's browser test (web/portal-e2e,
// node --test with playwright-core) in Debian's chromium: the portal in an
// iframe of a page on an allowed origin shows the figures the Metrics API
// gives an org key for that customer; on another origin, and the
// dashboard anywhere, the browser refuses the frame.
func TestPortalInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test starts chromium")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on the PATH; install nodejs (and npm ci in web/) to run the portal's browser test")
	}
	browser := os.Getenv("CHROMIUM")
	if browser == "" {
		browser = "/usr/bin/chromium"
	}
	if _, err := os.Stat(browser); err != nil {
		t.Skipf("no browser at %s; apt-get install -y --no-install-recommends chromium", browser)
	}
	webDir, _ := filepath.Abs(filepath.Join("..", "..", "web"))
	if _, err := os.Stat(filepath.Join(webDir, "node_modules", "playwright-core")); err != nil {
		t.Skip("web/node_modules/playwright-core is absent; run PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix web")
	}

	// The provider's site (allowed) and another site, each a page that
	// frames the portal.
	allowedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	otherLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	allowed := "http://" + allowedLn.Addr().String()
	other := "http://" + otherLn.Addr().String()

	ctx := context.Background()
	f := testServerFlags(t)
	f.PortalFrameOrigin = []string{"acme=" + allowed}
	f.PortalRate = -1
	f.StatsQuota = -1
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	_, readKey, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	_, adminKey, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	base, gwAddr := serveWithGateway(t, f, "  - {name: company-monthly, by: company, per: billing_period, limit: 1000}\n")

	// The customer (company c1: users u1, u2) and others, this period.
	now := time.Now().UTC()
	per := identity.Periods{AnchorDay: 1}.Of(now)
	var events []apimeter.Event
	for i := range 300 {
		user, company := []string{"u1", "u2", "u3", "u4"}[i%4], []string{"c1", "c1", "c2", ""}[i%4]
		ts := per.Start.Add(time.Duration(i*7) * time.Minute)
		route := []string{"/accounts/{id}", "/payments", "/parcels/{id}"}[i%3]
		st := []int{200, 200, 201, 404, 500, 0, 200}[i%7]
		lat := float64((i*37)%700) + 1
		events = append(events, apimeter.Event{ID: "b" + strconv.Itoa(i), Org: "acme", Env: "prod", Direction: apimeter.Incoming,
			APIName: "pay", Method: "GET", Route: route, Path: strings.ReplaceAll(route, "{id}", "7"),
			URI: "https://api.example.com" + strings.ReplaceAll(route, "{id}", "7"), RequestTime: ts,
			ResponseTime: ts.Add(time.Duration(lat) * time.Millisecond), Status: st, LatencyMs: lat,
			UserID: user, CompanyID: company, APIKeyID: "fp_" + user, Weight: 1})
	}
	batch := make([]moesif.Event, len(events))
	for i := range events {
		batch[i] = moesif.FromEvent(&events[i])
	}
	body, _ := json.Marshal(batch)
	req, _ := http.NewRequest("POST", base+"/v1/events/batch", strings.NewReader(string(body)))
	req.Header.Set(server.AppIDHeader, app.ID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("collector: %d", resp.StatusCode)
	}
	// Calls through the gateway: its quota counts them for c1 (5) and c2.
	for i := range 7 {
		req, _ := http.NewRequest("GET", "http://"+gwAddr+"/pay", nil)
		req.Header.Set("X-Company-Id", []string{"c1", "c2"}[min(i/5, 1)])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// The token, minted by the provider's backend with the admin key.
	var made struct {
		Token string `json:"token"`
		URL   string `json:"url"`
	}
	if code := postJSON(t, base+"/v1/portal/tokens", adminKey, `{"company_id":"c1","env":"prod","ttl":"30m"}`, &made); code != http.StatusCreated {
		t.Fatalf("mint: %d", code)
	}
	portalURL := base + made.URL + "&accent=%23aa3300"
	frame := func(src string) string {
		return `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Provider</title></head>` +
			`<body><h1>Your account</h1><iframe id="portal" src="` + src + `" width="1100" height="1200"></iframe></body></html>`
	}
	pages := func(mux *http.ServeMux) {
		mux.HandleFunc("/account", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(frame(portalURL))) })
		mux.HandleFunc("/dashboard", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(frame(base + "/ui/"))) })
	}
	am, om := http.NewServeMux(), http.NewServeMux()
	pages(am)
	pages(om)
	as, os2 := &http.Server{Handler: am}, &http.Server{Handler: om}
	go as.Serve(allowedLn)
	go os2.Serve(otherLn)
	defer as.Close()
	defer os2.Close()

	// What the Metrics API answers an org key for the same customer, once
	// the gateway's calls are stored (it sends them in the background):
	// the 7 above and the one waitHTTP made.
	tr := per.Start.Format("01/02/2006 15:04") + "~" + per.End.Format("01/02/2006 15:04")
	all := url.Values{"select": {"sum(message_count)"}, "timeRange": {tr}}
	for deadline := time.Now().Add(30 * time.Second); metrics(t, base+"/v1/o/acme/e/prod/stats?"+all.Encode(), readKey)[""][0] != float64(len(events)+8); {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's 8 calls are not stored after 30 s: %v", metrics(t, base+"/v1/o/acme/e/prod/stats?"+all.Encode(), readKey))
		}
		time.Sleep(50 * time.Millisecond)
	}
	q := url.Values{"select": {"sum(message_count),sum(is_error),p50(total_response_time),p95(total_response_time),p99(total_response_time)"},
		"timeRange": {tr}, "filter": {"company_id eq 'c1'"}}
	tot := metrics(t, base+"/v1/o/acme/e/prod/stats?"+q.Encode(), readKey)
	want := map[string]any{"calls": tot[""][0], "errors": tot[""][1], "p50_ms": tot[""][2], "p95_ms": tot[""][3], "p99_ms": tot[""][4]}
	q.Set("select", "sum(message_count)")
	routes := map[string]float64{}
	for k, v := range metrics(t, base+"/v1/o/acme/e/prod/stats/route?"+q.Encode(), readKey) {
		routes[k] = v[0]
	}
	statuses := map[string]float64{}
	for k, v := range metrics(t, base+"/v1/o/acme/e/prod/stats/response_status_code?"+q.Encode(), readKey) {
		statuses[k] = v[0]
	}
	want["routes"], want["statuses"] = routes, statuses
	want["events"] = int(tot[""][0])
	want["quotas"] = [][]any{{"company-monthly", 5, 1000}}
	expect, _ := json.Marshal(want)

	out := filepath.Join(webDir, "portal-e2e", "output")
	nc := exec.CommandContext(ctx, node, "--test", "--test-reporter=tap", "portal-e2e/")
	nc.Dir = webDir
	nc.Env = append(os.Environ(),
		"PORTAL_ALLOWED_PAGE="+allowed+"/account",
		"PORTAL_OTHER_PAGE="+other+"/account",
		"PORTAL_DASHBOARD_PAGE="+allowed+"/dashboard",
		"PORTAL_EXPECT="+string(expect),
		"APIMETER_E2E_OUT="+out,
		"CHROMIUM="+browser,
	)
	b, err := nc.CombinedOutput()
	t.Logf("node --test portal-e2e/:\n%s", b)
	if err != nil {
		t.Fatalf("the portal's browser test failed: %v", err)
	}
	if !strings.Contains(string(b), "# pass 3") || !strings.Contains(string(b), "# fail 0") {
		t.Fatal("the browser test did not run to a pass (see its output above)")
	}
}

// waitHTTP waits until u answers at all.
func waitHTTP(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func postJSON(t *testing.T, u, key, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(out)
	return resp.StatusCode
}

// metrics reads a Metrics API answer as group name ("" without
// dimensions) -> values.
func metrics(t *testing.T, u, key string) map[string][]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r stats.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %v", u, resp.StatusCode, err)
	}
	out := map[string][]float64{}
	add := func(name string, ms []stats.MetricResult) {
		for _, m := range ms {
			f, _ := strconv.ParseFloat(m.Values[0].(string), 64)
			out[name] = append(out[name], f)
		}
	}
	en := r.Environments[0]
	if en.Dimensions == nil {
		add("", en.Metrics)
	} else {
		for _, d := range *en.Dimensions {
			add(d.Name, d.Metrics)
		}
	}
	return out
}

// TestPortalQuotasFromRedis: a gateway running apart from the server
// counts quotas on Redis; the server, given the gateway's configuration
// (--portal-quotas) and the same Redis, shows a company token its
// headroom.
func TestPortalQuotasFromRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server; skipped with -short")
	}
	rurl := redisURL(t)
	backend := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	defer backend.Close()
	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := fmt.Sprintf("org: acme\nenv: prod\nupstreams:\n  - {name: pay, url: \"http://%s\"}\ncompany_rules: [\"header:X-Company-Id\"]\nquotas:\n  - {name: monthly, by: company, per: billing_period, limit: 40}\n", bln.Addr())
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The gateway, as `apimeter gateway --config FILE --redis URL` runs it.
	gcfg, err := gateway.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ropt, err := redis.ParseURL(rurl)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(ropt)
	defer rc.Close()
	g, err := gateway.New(gcfg, gateway.Options{Sink: gateway.IngestSinks(discardIngester{}), Counter: gateway.NewRedisCounter(rc, "apimeter:")})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close(context.Background())
	for range 6 {
		req, _ := http.NewRequest("GET", "/pay", nil)
		req.Header.Set("X-Company-Id", "c1")
		g.ServeHTTP(httptestRecorder(), req)
	}

	f := testServerFlags(t)
	f.Redis, f.RedisPrefix, f.PortalQuotas = rurl, "apimeter:", cfgPath
	in, err := instance.Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tok := lastLine(t, "portal", "token", "create", "--data", f.Data, "--org", "acme", "--company-id", "c1")
	req, _ := http.NewRequest("GET", in.URL+"/portal/api/v1/quota", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Quotas []gateway.Headroom `json:"quotas"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("quota: %d %v", resp.StatusCode, err)
	}
	if len(a.Quotas) != 1 || a.Quotas[0].Used != 6 || a.Quotas[0].Remaining != 34 {
		t.Fatalf("quota: %+v, want monthly 6 used of 40", a.Quotas)
	}

	// Without --redis the flag is refused: the counts would be out of reach.
	f2 := testServerFlags(t)
	f2.PortalQuotas = cfgPath
	if in2, err := instance.Start(context.Background(), f2); err == nil {
		in2.Close()
		t.Fatal("--portal-quotas without --redis started")
	}
}

type discardIngester struct{}

func (discardIngester) Ingest(context.Context, []apimeter.Event) (apimeter.AppendResult, error) {
	return apimeter.AppendResult{}, nil
}

func httptestRecorder() http.ResponseWriter { return httptest.NewRecorder() }
