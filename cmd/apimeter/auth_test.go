package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
)

// authRig is a real server (the wiring of apimeter serve) with two orgs
// and their keys.
type authRig struct {
	t    *testing.T
	in   *instance.Instance
	data string
	app  string // collector application id of acme/prod
	// keys by role; secrets lists every key created, to look for on disk.
	read, admin, otherRead, otherAdmin, revoked, testEnv string
	revokedID, readID                                    string
	secrets                                              []string
}

func newAuthRig(t *testing.T) *authRig {
	t.Helper()
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	// A billing secret, so that the statement routes are offered too.
	secretFile := filepath.Join(t.TempDir(), "billing.secret")
	if err := os.WriteFile(secretFile, bytes.Repeat([]byte("s"), 48), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := instance.Start(ctx, instance.Config{Listen: "127.0.0.1:0", Data: data, BodyCap: 1024, MaxBodyBytes: 1 << 20,
		MaxBatchEvents: 100, DedupeHorizon: time.Hour, StatsConfig: instance.StatsConfig{StatsQuota: -1},
		MeterConfig: instance.MeterConfig{BillingSecretFile: secretFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	r := &authRig{t: t, in: in, data: data}
	a, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	r.app = a.ID
	if _, err := apps.Create(data, "other", "prod"); err != nil {
		t.Fatal(err)
	}
	// Keys are made the way `apimeter keys create` makes them: in the data
	// directory, beside the running server.
	mk := func(org, scope string, envs ...string) (string, string) {
		k, secret, err := auth.Create(data, auth.Spec{Org: org, Scope: scope, Envs: envs, Name: org + "-" + scope})
		if err != nil {
			t.Fatal(err)
		}
		r.secrets = append(r.secrets, secret)
		return k.ID, secret
	}
	r.readID, r.read = mk("acme", auth.ScopeRead)
	_, r.admin = mk("acme", auth.ScopeAdmin)
	_, r.otherRead = mk("other", auth.ScopeRead)
	_, r.otherAdmin = mk("other", auth.ScopeAdmin)
	_, r.testEnv = mk("acme", auth.ScopeAdmin, "test")
	r.revokedID, r.revoked = mk("acme", auth.ScopeAdmin)
	return r
}

// do sends a request; hdr is name, value pairs.
func (r *authRig) do(method, path string, body string, hdr ...string) (int, http.Header, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.in.URL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// A live stream does not end: its answer is the status.
		return resp.StatusCode, resp.Header, nil
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func basic(user, key string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+key))}
}

// concrete turns a route pattern into a request of org acme, env prod.
func concrete(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	rep := strings.NewReplacer("{org}", "acme", "{env}", "prod", "{dims...}", "apiproxy", "{id}", "513",
		"{key_hash}", scrub.KeyHash("nobody"), "{$}", "")
	path = rep.Replace(path)
	// Routes without {org} in the path name the org in the query string,
	// as the CLI does.
	if !strings.Contains(pattern, "{org}") {
		path += "?org=acme&env=prod"
	}
	return method, path
}

func bodyFor(method string) string {
	if method == "GET" || method == "HEAD" || method == "DELETE" {
		return ""
	}
	return "{}"
}

// TestAuthMatrix: every read and admin route the server registers × every
// credential that must be refused → 401 or 403 with a JSON error (Apigee's
// shape on the Metrics API); the right key, as Bearer and as Basic, passes.
func TestAuthMatrix(t *testing.T) {
	r := newAuthRig(t)
	if _, err := auth.Revoke(r.data, "", r.revokedID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a revocation by another process is seen within a second

	routes := r.in.Srv.Routes()
	t.Logf("%d guarded routes", len(routes))
	if len(routes) < 20 {
		t.Fatalf("only %d guarded routes: %v", len(routes), routes)
	}
	for _, rt := range routes {
		method, path := concrete(rt.Pattern)
		admin := rt.Scope == server.Admin
		right := r.read
		if admin {
			right = r.admin
		}
		type cred struct {
			name string
			hdr  []string
			want int
		}
		creds := []cred{
			{"no key", nil, 401},
			{"app id header", []string{server.AppIDHeader, r.app}, 403},
			{"app id as bearer", bearer(r.app), 403},
			{"other org's admin key", bearer(r.otherAdmin), 403},
			{"other org's read key", bearer(r.otherRead), 403},
			{"revoked key", bearer(r.revoked), 401},
			{"unknown key", bearer(auth.NewKey()), 401},
			{"other org's key as basic", basic("me@acme.example", r.otherAdmin), 403},
		}
		if admin {
			creds = append(creds, cred{"read key on admin route", bearer(r.read), 403})
		}
		// An admin key bound to env test is refused where the request names
		// env prod.
		if strings.Contains(path, "/prod") || strings.Contains(path, "env=prod") {
			creds = append(creds, cred{"key of env test", bearer(r.testEnv), 403})
		}
		for _, c := range creds {
			code, h, b := r.do(method, path, bodyFor(method), c.hdr...)
			if code != c.want {
				t.Errorf("%s %s with %s: %d %s, want %d", method, path, c.name, code, b, c.want)
				continue
			}
			checkAuthError(t, rt.Pattern, c.name, code, h, b)
		}
		for _, c := range []cred{{"right key (bearer)", bearer(right), 0}, {"right key (basic)", basic("anyone", right), 0}} {
			code, _, b := r.do(method, path, bodyFor(method), c.hdr...)
			if code == 401 || code == 403 {
				t.Errorf("%s %s with %s: %d %s, want it let through", method, path, c.name, code, b)
			}
		}
	}
}

// checkAuthError: JSON, WWW-Authenticate on 401, Apigee's shape on the
// Metrics API and the org routes, the error writer's shape elsewhere.
func checkAuthError(t *testing.T, pattern, name string, code int, h http.Header, b []byte) {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Errorf("%s with %s: answer is not JSON: %q", pattern, name, b)
		return
	}
	if code == 401 && !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), ","), "Bearer") {
		t.Errorf("%s with %s: 401 without WWW-Authenticate Bearer: %v", pattern, name, h)
	}
	apigee := strings.Contains(pattern, "{org}") && (strings.Contains(pattern, "/stats") ||
		strings.HasSuffix(pattern, "{org}") || strings.HasSuffix(pattern, "{$}") || strings.HasSuffix(pattern, "/environments") ||
		strings.HasSuffix(pattern, "/environments/{env}") || strings.HasSuffix(pattern, "/e/{env}"))
	if apigee {
		if _, ok := body["code"].(string); !ok || body["contexts"] == nil {
			t.Errorf("%s with %s: want Apigee's error shape, got %s", pattern, name, b)
		}
	} else if e, ok := body["error"].(map[string]any); !ok || e["code"] == nil || e["message"] == nil {
		t.Errorf("%s with %s: want {\"error\":{code,message}}, got %s", pattern, name, b)
	}
}

// TestAuthRightKeyAnswers: with the right key each read and admin
// endpoint answers 200 (201 for a new key), on every path form of the
// Metrics API and the org routes; no guarded route is left out.
func TestAuthRightKeyAnswers(t *testing.T) {
	r := newAuthRig(t)
	// A profile and an event, so that the reads have something to find.
	for _, p := range []struct{ path, body string }{
		{"/v1/users", `{"user_id":"513","company_id":"abc"}`},
		{"/v1/companies", `{"company_id":"513"}`},
		{"/v1/events", `{"request":{"time":"2026-11-24T10:00:00.000Z","uri":"https://api.acme.example/items","verb":"GET"},"response":{"time":"2026-11-24T10:00:00.010Z","status":200},"user_id":"513"}`},
	} {
		if code, _, b := r.do("POST", p.path, p.body, server.AppIDHeader, r.app); code != 200 {
			t.Fatalf("POST %s: %d %s", p.path, code, b)
		}
	}
	hash := scrub.KeyHash("ck_matrix")
	newKeyID, newTokenID := "", ""
	tr := "&timeRange=" + url.QueryEscape("11/01/2026 00:00~12/01/2026 00:00")
	cases := []struct {
		pattern, method, path, body string
		key                         string
		want                        int
	}{
		{"GET /v1/o/{org}/environments/{env}/events", "GET", "/v1/o/acme/environments/prod/events?limit=5", "", r.read, 200},
		{"GET /v1/o/{org}/e/{env}/events", "GET", "/v1/o/acme/e/prod/events", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/events/stream", "GET", "/v1/o/acme/environments/prod/events/stream?user_id=513", "", r.read, 200},
		{"GET /v1/o/{org}/e/{env}/events/stream", "GET", "/v1/o/acme/e/prod/events/stream", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/export", "GET", "/v1/o/acme/environments/prod/export?from=2026-11-01&to=2026-11-02", "", r.read, 200},
		{"GET /v1/o/{org}/e/{env}/export", "GET", "/v1/o/acme/e/prod/export?from=2026-11-01&to=2026-11-02&format=csv", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/users/{id}", "GET", "/v1/o/acme/environments/prod/users/513", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/users/{id}/quotas", "GET", "/v1/o/acme/environments/prod/users/513/quotas", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/companies/{id}/quotas", "GET", "/v1/o/acme/environments/prod/companies/abc/quotas", "", r.read, 200},
		{"GET /v1/o/{org}/environments/{env}/companies/{id}", "GET", "/v1/o/acme/environments/prod/companies/513", "", r.read, 200},
		{"GET /v1/session", "GET", "/v1/session", "", r.read, 200},
		{"POST /v1/keys", "POST", "/v1/keys", `{"scope":"read","name":"made over http"}`, r.admin, 201},
		{"GET /v1/keys", "GET", "/v1/keys", "", r.admin, 200},
		{"DELETE /v1/keys/{id}", "DELETE", "/v1/keys/", "", r.admin, 200}, // id filled in below
		{"PUT /v1/aliases", "PUT", "/v1/aliases", `{"org":"acme","env":"prod","key":"ck_matrix","user_id":"u1"}`, r.admin, 200},
		{"GET /v1/aliases", "GET", "/v1/aliases?org=acme&env=prod&user_id=u1", "", r.admin, 200},
		{"GET /v1/aliases/{key_hash}", "GET", "/v1/aliases/" + hash + "?org=acme&env=prod", "", r.admin, 200},
		{"DELETE /v1/aliases/{key_hash}", "DELETE", "/v1/aliases/" + hash + "?org=acme&env=prod", "", r.admin, 200},
		{"GET /v1/usage", "GET", "/v1/usage?org=acme&env=prod&period=2026-11", "", r.read, 200},
		// OpenMeter's API (docs/metering.md): the org is the key's.
		{"POST /api/v1/meters", "POST", "/api/v1/meters", `{"slug":"calls","eventType":"api-call","aggregation":"COUNT"}`, r.admin, 201},
		{"GET /api/v1/meters", "GET", "/api/v1/meters", "", r.read, 200},
		{"GET /api/v1/meters/{idOrSlug}", "GET", "/api/v1/meters/calls", "", r.read, 200},
		{"GET /api/v1/meters/{idOrSlug}/query", "GET", "/api/v1/meters/calls/query?env=prod", "", r.read, 200},
		// Billing (docs/metering.md): admin keys only.
		{"GET /v1/o/{org}/environments/{env}/billing/export", "GET", "/v1/o/acme/environments/prod/billing/export?period=2026-11", "", r.admin, 200},
		{"GET /v1/o/{org}/environments/{env}/billing/push-plan", "GET", "/v1/o/acme/environments/prod/billing/push-plan?period=2026-11", "", r.admin, 200},
		{"POST /v1/o/{org}/environments/{env}/billing/ledger", "POST", "/v1/o/acme/environments/prod/billing/ledger?period=2026-11", `{"meter":"calls","customer":"abc","period":"2026-11","state":"intent","cumulative":1,"identifier":"apm_matrix"}`, r.admin, 204},
		{"GET /v1/o/{org}/environments/{env}/billing/statement", "GET", "/v1/o/acme/environments/prod/billing/statement?period=2026-11&meter=calls&customer=513", "", r.admin, 200},
		{"GET /v1/o/{org}/environments/{env}/billing/key", "GET", "/v1/o/acme/environments/prod/billing/key", "", r.admin, 200},
		{"DELETE /api/v1/meters/{idOrSlug}", "DELETE", "/api/v1/meters/calls", "", r.admin, 204},
		{"POST /v1/portal/tokens", "POST", "/v1/portal/tokens", `{"company_id":"abc","ttl":"10m"}`, r.admin, 201},
		{"GET /v1/portal/tokens", "GET", "/v1/portal/tokens", "", r.admin, 200},
		{"DELETE /v1/portal/tokens/{id}", "DELETE", "/v1/portal/tokens/", "", r.admin, 200}, // id filled in below
	}
	for _, o := range []string{"/v1/o/{org}", "/v1/organizations/{org}"} {
		for _, e := range []string{"/environments/{env}", "/e/{env}"} {
			for _, s := range []string{"/stats", "/stats/{dims...}"} {
				p := strings.NewReplacer("{org}", "acme", "{env}", "prod", "{dims...}", "apiproxy").Replace(o + e + s)
				// Query parameters Apigee's clients add are ignored.
				cases = append(cases, struct {
					pattern, method, path, body string
					key                         string
					want                        int
				}{"GET " + o + e + s, "GET", p + "?select=sum(message_count)&timeUnit=day&_optimize=js&t=agg_percentile&accuracy=0" + tr, "", r.read, 200})
			}
		}
		for _, s := range []string{"", "/{$}", "/environments", "/environments/{env}", "/e/{env}"} {
			p := strings.NewReplacer("{org}", "acme", "{env}", "prod", "{$}", "").Replace(o + s)
			cases = append(cases, struct {
				pattern, method, path, body string
				key                         string
				want                        int
			}{"GET " + o + s, "GET", p, "", r.read, 200})
		}
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.pattern] = true
		path := c.path
		if c.pattern == "DELETE /v1/keys/{id}" {
			path += newKeyID
		}
		if c.pattern == "DELETE /v1/portal/tokens/{id}" {
			path += newTokenID
		}
		code, _, b := r.do(c.method, path, c.body, bearer(c.key)...)
		if code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, path, code, b, c.want)
			continue
		}
		if c.pattern == "POST /v1/keys" {
			var k auth.KeyJSON
			if err := json.Unmarshal(b, &k); err != nil || !strings.HasPrefix(k.Key, auth.Prefix) || k.Org != "acme" {
				t.Fatalf("POST /v1/keys: %s", b)
			}
			newKeyID = k.ID
			r.secrets = append(r.secrets, k.Key)
			// The key made over HTTP reads at once.
			if code, _, b := r.do("GET", "/v1/o/acme/environments/prod/events", "", bearer(k.Key)...); code != 200 {
				t.Errorf("key made over HTTP: %d %s", code, b)
			}
		}
		if c.pattern == "POST /v1/portal/tokens" {
			var tok portal.TokenJSON
			if err := json.Unmarshal(b, &tok); err != nil || !strings.HasPrefix(tok.Token, token.Prefix) || tok.Org != "acme" {
				t.Fatalf("POST /v1/portal/tokens: %s", b)
			}
			newTokenID = tok.ID
			r.secrets = append(r.secrets, tok.Token)
		}
		if c.pattern == "GET /v1/o/{org}" {
			var org struct {
				Name         string   `json:"name"`
				Environments []string `json:"environments"`
				Properties   struct {
					Property []any `json:"property"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(b, &org); err != nil || org.Name != "acme" || len(org.Environments) != 1 || org.Environments[0] != "prod" || org.Properties.Property == nil {
				t.Errorf("GET %s: %s, want Apigee's org shape with environments [prod]", path, b)
			}
		}
	}
	for _, rt := range r.in.Srv.Routes() {
		if !covered[rt.Pattern] {
			t.Errorf("route %s has no case here: add one", rt.Pattern)
		}
	}
	// The key revoked over HTTP no longer reads.
	if code, _, b := r.do("GET", "/v1/o/acme/environments/prod/events", "", bearer(r.secrets[len(r.secrets)-1])...); code != 401 {
		t.Errorf("key revoked over HTTP: %d %s, want 401", code, b)
	}
	r.checkNoKeysOnDisk()
}

// checkNoKeysOnDisk closes the server (so every file is written) and looks
// for every key, and its random part, in every file of the data directory.
func (r *authRig) checkNoKeysOnDisk() {
	r.t.Helper()
	if err := r.in.Close(); err != nil {
		r.t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(r.data, auth.FileName))
	if err != nil {
		r.t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		r.t.Errorf("%s has mode %v, want 0600", auth.FileName, st.Mode().Perm())
	}
	files := 0
	filepath.WalkDir(r.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			r.t.Fatal(err)
		}
		files++
		for _, s := range r.secrets {
			if bytes.Contains(b, []byte(strings.TrimPrefix(s, auth.Prefix))) {
				r.t.Errorf("a key is in clear in %s", path)
			}
		}
		return nil
	})
	if files < 3 {
		r.t.Errorf("looked in %d files only", files)
	}
}

// TestAuthNewRouteProtected: a route another part adds under
// /v1/o/{org}/... (an event stream, a dashboard read) is behind the key
// check with nothing more than Server.Handle.
func TestAuthNewRouteProtected(t *testing.T) {
	r := newAuthRig(t)
	r.in.Srv.Handle("GET /v1/o/{org}/environments/{env}/stream", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		g, _ := server.GrantFrom(req.Context())
		server.WriteJSON(w, 200, map[string]string{"org": g.Org})
	}))
	r.in.Srv.Handle("/v1/o/{org}/dashboard/{what}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		server.WriteJSON(w, 200, map[string]string{"ok": "yes"})
	}))
	for _, c := range []struct {
		method, path string
		hdr          []string
		want         int
	}{
		{"GET", "/v1/o/acme/environments/prod/stream", nil, 401},
		{"GET", "/v1/o/acme/environments/prod/stream", bearer(r.otherRead), 403},
		{"GET", "/v1/o/acme/environments/prod/stream", bearer(r.read), 200},
		{"GET", "/v1/o/acme/dashboard/x", bearer(r.read), 200},
		{"POST", "/v1/o/acme/dashboard/x", bearer(r.read), 403}, // no method in the pattern: writes need admin
		{"POST", "/v1/o/acme/dashboard/x", bearer(r.admin), 200},
		{"GET", "/healthz", nil, 200},
		{"GET", "/readyz", nil, 200},
		{"GET", "/metrics", nil, 200},
	} {
		if code, _, b := r.do(c.method, c.path, "", c.hdr...); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, b, c.want)
		}
	}
	for _, rt := range r.in.Srv.Routes() {
		if strings.Contains(rt.Pattern, "{org}") && rt.Scope < server.Read {
			t.Errorf("route %s is public", rt.Pattern)
		}
	}
}

// runCLI runs the apimeter command (this test binary as main) and returns its
// standard output.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("apimeter %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// TestKeysCLI: `apimeter keys create` beside a running server prints the
// key alone on its last line and the server takes it at once; `keys list`
// never shows it; `keys revoke` stops it within a second.
func TestKeysCLI(t *testing.T) {
	r := newAuthRig(t)
	out := runCLI(t, "keys", "create", "--data", r.data, "--org", "acme", "--env", "prod", "--scope", "read", "--name", "grafana")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, auth.Prefix) || strings.Contains(key, " ") {
		t.Fatalf("last line %q is not a key alone", key)
	}
	if code, _, b := r.do("GET", "/v1/o/acme/e/prod/events", "", bearer(key)...); code != 200 {
		t.Fatalf("new key: %d %s", code, b)
	}
	if code, _, _ := r.do("GET", "/v1/o/acme/e/test/events", "", bearer(key)...); code != 403 {
		t.Errorf("key of env prod on env test: %d, want 403", code)
	}
	list := runCLI(t, "keys", "list", "--data", r.data, "--org", "acme")
	if strings.Contains(list, strings.TrimPrefix(key, auth.Prefix)) || !strings.Contains(list, "grafana") {
		t.Fatalf("keys list:\n%s", list)
	}
	var id string
	for _, l := range strings.Split(list, "\n") {
		if strings.Contains(l, "grafana") {
			id = strings.Fields(l)[0]
		}
	}
	runCLI(t, "keys", "revoke", "--data", r.data, id)
	time.Sleep(1100 * time.Millisecond)
	if code, _, _ := r.do("GET", "/v1/o/acme/e/prod/events", "", bearer(key)...); code != 401 {
		t.Errorf("revoked key: %d, want 401", code)
	}
	r.secrets = append(r.secrets, key)
	r.checkNoKeysOnDisk()
}
