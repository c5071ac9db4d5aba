package instance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
)

// openAPIFile is the HTTP API's description (docs/openapi.yaml), linted in
// CI by Redocly's CLI (docs/openapi-lint).
const openAPIFile = "../docs/openapi.yaml"

// catchAllPatterns are the patterns that answer a JSON 404 for every path
// no route takes: they are no routes to describe.
var catchAllPatterns = map[string]bool{
	"/":                        true, // server: no route for METHOD PATH
	"/portal/api/v1/{rest...}": true, // portal: no portal route for METHOD PATH
}

// loadOpenAPI parses docs/openapi.yaml and builds its model.
func loadOpenAPI(t *testing.T) (libopenapi.Document, *v3.Document) {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("%s: %v", openAPIFile, err)
	}
	return doc, &m.Model
}

// startFull starts an instance with every part that serves routes: the
// Metrics API, OTLP, meters, billing (a statement secret), the portal and
// the alert evaluator, as apimeter serve wires them. It returns the
// instance, an application id and an admin and a read key of org acme,
// env prod.
func startFull(t *testing.T) (in *Instance, appID, admin, read string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20,
		MaxBatchEvents: 100, DedupeHorizon: time.Hour, DailyInterval: -1,
		StatsConfig: StatsConfig{StatsQuota: -1, QueryTimeout: time.Minute}}
	f.BillingSecretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(f.BillingSecretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err = auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin, Name: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	_, read, err = auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead, Name: "read"})
	if err != nil {
		t.Fatal(err)
	}
	var stopAlerts func()
	in, err = StartWith(ctx, f, Options{wire: func(in *Instance) (err error) {
		stopAlerts, err = startAlerts(ctx, in, AlertsConfig{AlertsInterval: time.Hour}, f, "")
		return err
	}})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	in.beforeClose = func() error { stopAlerts(); return nil }
	t.Cleanup(func() {
		if err := in.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return in, app.ID, admin, read
}

// openAPIPath is the OpenAPI path of a ServeMux pattern's path: {$} (the
// path ends there) is left out, {name...} is {name}.
func openAPIPath(path string) string {
	path = strings.TrimSuffix(path, "{$}")
	return regexp.MustCompile(`\{([A-Za-z0-9_]+)\.\.\.\}`).ReplaceAllString(path, "{$1}")
}

// operations lists the document's operations as "METHOD path".
func operations(doc *v3.Document) map[string]bool {
	ops := map[string]bool{}
	for path, item := range doc.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops[strings.ToUpper(method)+" "+path] = true
		}
	}
	return ops
}

// TestOpenAPICoversEveryRoute: every route a started server registers is
// described in docs/openapi.yaml, and every operation described there is
// registered and answered by the server's own mux (a request to it reaches
// a handler, not the JSON 404 of the catch-all), so that a route added
// without its description, or a description left behind by a removed
// route, fails here.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	_, doc := loadOpenAPI(t)
	in, _, _, _ := startFull(t)
	ops := operations(doc)
	if len(ops) < 50 {
		t.Fatalf("%s describes %d operations; the document did not load whole", openAPIFile, len(ops))
	}

	registered := map[string]bool{}
	for _, p := range in.Srv.Patterns() {
		method, path := splitMethod(p)
		if catchAllPatterns[path] && method == "" {
			continue
		}
		path = openAPIPath(path)
		if method == "" {
			// A pattern for every method: the path must be described.
			if doc.Paths.PathItems.GetOrZero(path) == nil {
				t.Errorf("route %q is served but %s has no path %s", p, openAPIFile, path)
			}
			continue
		}
		op := method + " " + path
		registered[op] = true
		if !ops[op] {
			t.Errorf("route %q is served but %s does not describe %s", p, openAPIFile, op)
		}
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		if !registered[op] {
			t.Errorf("%s describes %s, which the server does not register", openAPIFile, op)
			continue
		}
		method, path := splitMethod(op)
		// Path parameters get plain values; {org} and {env} a real org.
		concrete := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllStringFunc(path, func(p string) string {
			switch p {
			case "{org}":
				return "acme"
			case "{env}":
				return "prod"
			}
			return "x"
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, method, in.URL+concrete, nil)
		resp, err := client.Do(req)
		if err != nil {
			cancel()
			t.Errorf("%s: %v", op, err)
			continue
		}
		// The stream answers 401 without a key, so no body is left open.
		var body struct {
			Error struct{ Code, Message string }
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		cancel()
		json.Unmarshal(b, &body)
		if resp.StatusCode == http.StatusNotFound && body.Error.Code == "not_found" &&
			(strings.HasPrefix(body.Error.Message, "no route for ") || strings.HasPrefix(body.Error.Message, "no portal route for ")) {
			t.Errorf("%s: %s %s reached the catch-all: %s", op, method, concrete, body.Error.Message)
		}
	}
}

func splitMethod(p string) (method, path string) {
	if m, rest, ok := strings.Cut(p, " "); ok {
		return m, strings.TrimSpace(rest)
	}
	return "", p
}

// TestOpenAPIDocumentValid: docs/openapi.yaml is a valid OpenAPI 3.1
// document by the specification's own JSON Schema (Redocly's lint in CI
// checks it further).
func TestOpenAPIDocumentValid(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s (%s)", e.Message, e.Reason, e.HowToFix)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s", se.Reason, se.FieldPath)
			}
		}
	}
}

// TestOpenAPIAnswersMatch sends real requests to a started server, one or
// more per group of routes, and checks each request and its answer
// (status, headers, body) against docs/openapi.yaml with
// libopenapi-validator. Requests meant to be refused are checked for their
// answer only.
func TestOpenAPIAnswersMatch(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	in, appID, admin, read := startFull(t)
	now := time.Now().UTC()
	month := now.Format("2006-01")
	evTime := now.Add(-time.Minute).Format(time.RFC3339Nano)
	timeRange := url.QueryEscape(now.Add(-time.Hour).Format("01/02/2006 15:04") + "~" + now.Add(time.Hour).Format("01/02/2006 15:04"))
	keyHash := strings.Repeat("ab", 32)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	type call struct {
		method, path string
		// auth: "app" (application id header), "admin", "read", a
		// token's value ("bearer:..."), or "" for none.
		auth        string
		contentType string
		body        any // marshalled to JSON unless a string
		want        int
		// refused: the request itself is outside the document (a bad
		// parameter, on purpose); only the answer is checked.
		refused bool
	}
	var portalToken, keyID, portalID string
	do := func(c call) []byte {
		t.Helper()
		var body []byte
		switch b := c.body.(type) {
		case nil:
		case string:
			body = []byte(b)
		default:
			body, _ = json.Marshal(b)
		}
		mk := func() *http.Request {
			req, _ := http.NewRequest(c.method, in.URL+c.path, bytes.NewReader(body))
			if body != nil {
				ct := c.contentType
				if ct == "" {
					ct = "application/json"
				}
				req.Header.Set("Content-Type", ct)
			}
			switch {
			case c.auth == "app":
				req.Header.Set("X-Moesif-Application-Id", appID)
			case c.auth == "admin":
				req.Header.Set("Authorization", "Bearer "+admin)
			case c.auth == "read":
				req.Header.Set("Authorization", "Bearer "+read)
			case strings.HasPrefix(c.auth, "bearer:"):
				req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(c.auth, "bearer:"))
			}
			return req
		}
		resp, err := client.Do(mk())
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, resp.StatusCode, c.want, got)
			return got
		}
		resp.Body = io.NopCloser(bytes.NewReader(got))
		req := mk()
		var ok bool
		var verrs []*verrors.ValidationError
		if c.refused {
			ok, verrs = v.ValidateHttpResponse(req, resp)
		} else {
			ok, verrs = v.ValidateHttpRequestResponse(req, resp)
		}
		if !ok {
			for _, e := range verrs {
				msg := fmt.Sprintf("%s %s (%d): %s: %s", c.method, c.path, c.want, e.Message, e.Reason)
				for _, se := range e.SchemaValidationErrors {
					msg += fmt.Sprintf("\n  %s at %s", se.Reason, se.FieldPath)
				}
				t.Error(msg + "\n  body: " + string(got))
			}
		}
		return got
	}
	event := func(i int) map[string]any {
		return map[string]any{
			"request":  map[string]any{"time": evTime, "uri": fmt.Sprintf("https://api.example/orders/%d", i), "verb": "GET", "headers": map[string]any{"User-Agent": "test"}},
			"response": map[string]any{"time": evTime, "status": 200, "body": map[string]any{"ok": true}},
			"user_id":  "u1", "company_id": "c1", "api_name": "orders", "route": "/orders/{id}", "event_id": fmt.Sprint("ev-", i),
		}
	}

	// Collector.
	do(call{method: "POST", path: "/v1/events", auth: "app", body: event(0), want: 200})
	do(call{method: "POST", path: "/v1/events/batch", auth: "app", body: []any{event(1), event(2)}, want: 200})
	do(call{method: "POST", path: "/v1/events/batch", auth: "app", body: []any{event(3), map[string]any{"request": map[string]any{"uri": "/x"}}}, want: 400, refused: true})
	do(call{method: "POST", path: "/v1/events", body: event(4), want: 401, refused: true})
	noResponse := event(5)
	noResponse["response"] = map[string]any{} // status 0: the call got no response
	do(call{method: "POST", path: "/v1/events", auth: "app", body: noResponse, want: 200})
	do(call{method: "POST", path: "/v1/users", auth: "app", body: map[string]any{"user_id": "u1", "metadata": map[string]any{"plan": "pro"}}, want: 200})
	do(call{method: "POST", path: "/v1/companies/batch", auth: "app", body: []any{map[string]any{"company_id": "c1"}}, want: 200})
	do(call{method: "POST", path: "/v1/subscriptions", auth: "app", body: map[string]any{"subscription_id": "s1", "company_id": "c1"}, want: 200})
	do(call{method: "POST", path: "/v1/actions/batch", auth: "app", body: []any{map[string]any{"action_name": "signed in", "user_id": "u1"}}, want: 200})
	do(call{method: "GET", path: "/v1/config", auth: "app", want: 200})
	do(call{method: "GET", path: "/v1/rules", auth: "app", want: 200})

	// Events and profiles.
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/events?limit=10&errors=false", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/events?limit=0", auth: "read", want: 400, refused: true})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/events", want: 401, refused: true})
	do(call{method: "GET", path: "/v1/o/other/e/prod/events", auth: "read", want: 403})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/users/u1", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/companies/nobody", auth: "read", want: 404})

	// The live stream: its status and headers, and its first lines.
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		mk := func() *http.Request {
			req, _ := http.NewRequestWithContext(ctx, "GET", in.URL+"/v1/o/acme/e/prod/events/stream?errors=true&status=500", nil)
			req.Header.Set("Authorization", "Bearer "+read)
			return req
		}
		resp, err := client.Do(mk())
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		defer resp.Body.Close()
		first := make([]byte, 64)
		n, _ := io.ReadAtLeast(resp.Body, first, len("retry: 2000\n"))
		resp.Body = io.NopCloser(bytes.NewReader(first[:n]))
		if ok, verrs := v.ValidateHttpRequestResponse(mk(), resp); !ok || resp.StatusCode != 200 || !strings.HasPrefix(string(first[:n]), "retry: ") {
			for _, e := range verrs {
				t.Errorf("stream: %s: %s", e.Message, e.Reason)
			}
			t.Errorf("stream: %d %q, want 200 and retry: first", resp.StatusCode, first[:n])
		}
	}()

	// Metrics API and the org routes.
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/stats?select=sum(message_count)&timeRange=" + timeRange, auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/organizations/acme/e/prod/stats/apis,developer?select=sum(message_count),avg(total_response_time)&timeUnit=hour&timeRange=" + timeRange, auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/stats/apis?select=cache_hit&timeRange=" + timeRange, auth: "read", want: 400})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/stats/apis?select=sum(message_count)&timeRange=" + timeRange, want: 401, refused: true})
	do(call{method: "GET", path: "/v1/organizations/acme", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/e/prod", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/nope", auth: "read", want: 404})

	// Usage and aliases.
	do(call{method: "GET", path: "/v1/usage?period=" + month + "&group=company_id", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/usage?group=planet", auth: "read", want: 400, refused: true})
	do(call{method: "PUT", path: "/v1/aliases", auth: "admin", body: map[string]any{"key_hash": keyHash, "user_id": "u1", "company_id": "c1"}, want: 200})
	do(call{method: "GET", path: "/v1/aliases?user_id=u1", auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/aliases/" + keyHash, auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/aliases/" + keyHash, auth: "read", want: 403})
	do(call{method: "DELETE", path: "/v1/aliases/" + keyHash, auth: "admin", want: 200})

	// Keys and sessions.
	var made struct{ ID string }
	json.Unmarshal(do(call{method: "POST", path: "/v1/keys", auth: "admin", body: map[string]any{"scope": "read", "envs": []string{"prod"}, "name": "grafana"}, want: 201}), &made)
	keyID = made.ID
	do(call{method: "GET", path: "/v1/keys", auth: "admin", want: 200})
	do(call{method: "DELETE", path: "/v1/keys/" + keyID, auth: "admin", want: 200})
	do(call{method: "POST", path: "/v1/session", body: map[string]any{"key": read}, want: 200})
	do(call{method: "POST", path: "/v1/session", contentType: "application/x-www-form-urlencoded", body: "key=" + url.QueryEscape(read), want: 200})
	do(call{method: "POST", path: "/v1/session", body: map[string]any{"key": "apmk_wrong"}, want: 401})
	do(call{method: "GET", path: "/v1/session", auth: "read", want: 200})
	do(call{method: "DELETE", path: "/v1/session", want: 200})
	do(call{method: "GET", path: "/signin?token=used", want: 401})

	// OTLP/HTTP.
	do(call{method: "POST", path: "/v1/traces", auth: "app", body: map[string]any{"resourceSpans": []any{}}, want: 200})
	do(call{method: "POST", path: "/v1/logs", auth: "app", contentType: "text/plain", body: "logs", want: 415, refused: true})

	// Usage events and meters.
	do(call{method: "POST", path: "/api/v1/events", auth: "app", contentType: "application/cloudevents+json",
		body: map[string]any{"specversion": "1.0", "id": "u-1", "source": "test", "type": "request", "subject": "c1", "time": evTime, "data": map[string]any{"tokens": 3}}, want: 204})
	do(call{method: "POST", path: "/api/v1/events", auth: "admin", contentType: "application/cloudevents-batch+json",
		body: []any{map[string]any{"specversion": "1.0", "id": "u-2", "source": "test", "type": "request", "subject": "c1", "data": map[string]any{"tokens": 4}}}, want: 204})
	do(call{method: "POST", path: "/api/v1/events", auth: "read", contentType: "application/cloudevents+json",
		body: map[string]any{"specversion": "1.0", "id": "u-3", "source": "test", "type": "request", "subject": "c1"}, want: 403})
	do(call{method: "POST", path: "/api/v1/meters", auth: "admin", body: map[string]any{"slug": "tokens", "eventType": "request", "aggregation": "SUM", "valueProperty": "$.tokens", "groupBy": map[string]string{"src": "$.src"}}, want: 201})
	do(call{method: "POST", path: "/api/v1/meters", auth: "admin", body: map[string]any{"slug": "tokens", "eventType": "request", "aggregation": "SUM", "valueProperty": "$.tokens"}, want: 409})
	do(call{method: "GET", path: "/api/v1/meters", auth: "read", want: 200})
	do(call{method: "GET", path: "/api/v1/meters/tokens", auth: "read", want: 200})
	do(call{method: "GET", path: "/api/v1/meters/tokens/query?windowSize=HOUR&groupBy=subject&subject=c1", auth: "read", want: 200})
	do(call{method: "GET", path: "/api/v1/meters/tokens/query?windowSize=WEEK", auth: "read", want: 400, refused: true})

	// Billing.
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/export?period=" + month, auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/export?format=csv&period=" + month, auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/push-plan?period=" + month, auth: "admin", want: 200})
	do(call{method: "POST", path: "/v1/o/acme/environments/prod/billing/ledger?period=" + month, auth: "admin",
		body: map[string]any{"meter": "tokens", "customer": "c1", "period": month, "state": "intent", "cumulative": 7, "identifier": "push-1"}, want: 204})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/statement?period=" + month + "&meter=tokens&customer=c1", auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/key", auth: "admin", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/billing/key", auth: "read", want: 403})

	// Alerts.
	rule := map[string]any{"id": "slow", "name": "Slow calls", "metric": "p95(total_response_time)", "window": "5m", "threshold": 250,
		"channels": []any{map[string]any{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}}}
	do(call{method: "POST", path: "/v1/o/acme/environments/prod/alerts/rules", auth: "admin", body: rule, want: 201})
	do(call{method: "POST", path: "/v1/o/acme/e/prod/alerts/rules", auth: "admin", body: rule, want: 409})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/alerts/rules", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/alerts/rules/slow", auth: "read", want: 200})
	rule["threshold"] = 300
	do(call{method: "PUT", path: "/v1/o/acme/e/prod/alerts/rules/slow", auth: "admin", body: rule, want: 200})
	do(call{method: "GET", path: "/v1/o/acme/environments/prod/alerts/state", auth: "read", want: 200})
	do(call{method: "GET", path: "/v1/o/acme/e/prod/alerts/notifications?limit=5", auth: "read", want: 200})
	do(call{method: "DELETE", path: "/v1/o/acme/environments/prod/alerts/rules/slow", auth: "admin", want: 204})

	// Portal. (GET /portal/{org}, a redirect, is left to
	// TestOpenAPICoversEveryRoute: the validator takes /portal/acme for
	// /portal/{org}/, whose trailing slash it ignores.)
	var tok struct{ ID, Token string }
	json.Unmarshal(do(call{method: "POST", path: "/v1/portal/tokens", auth: "admin", body: map[string]any{"company_id": "c1", "ttl": "1h", "name": "c1 portal"}, want: 201}), &tok)
	portalToken, portalID = tok.Token, tok.ID
	do(call{method: "GET", path: "/v1/portal/tokens", auth: "admin", want: 200})
	for _, p := range []string{"me", "usage?period=" + month, "stats/apis?select=sum(message_count)&timeRange=" + timeRange, "events?limit=5", "meters", "statements?period=" + month} {
		do(call{method: "GET", path: "/portal/api/v1/" + p, auth: "bearer:" + portalToken, want: 200})
	}
	do(call{method: "GET", path: "/portal/api/v1/quota", auth: "bearer:" + portalToken, want: 404})
	do(call{method: "GET", path: "/portal/api/v1/me", want: 401, refused: true})
	do(call{method: "GET", path: "/portal/acme/", want: 200})
	do(call{method: "DELETE", path: "/v1/portal/tokens/" + portalID, auth: "admin", want: 200})

	// Health, metrics, dashboard.
	do(call{method: "GET", path: "/healthz", want: 200})
	do(call{method: "GET", path: "/readyz", want: 200})
	do(call{method: "GET", path: "/health/probe", want: 200})
	do(call{method: "GET", path: "/metrics", want: 200})
	do(call{method: "GET", path: "/", want: 302})
	do(call{method: "GET", path: "/ui/", want: 200})
}
