package meter_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

type testServer struct {
	url                string
	admin, read, other string
	envKey             string // an admin key bound to env "test"
	app                apps.App
	usage              meter.Store
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.OpenUsage(context.Background(), duckdb.UsageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := apps.Create(dir, "acme", "staging")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{app: a, usage: u}
	_, ts.admin, _ = keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	_, ts.read, _ = keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	_, ts.other, _ = keys.Create(auth.Spec{Org: "globex", Scope: auth.ScopeAdmin})
	_, ts.envKey, _ = keys.Create(auth.Spec{Org: "acme", Envs: []string{"test"}, Scope: auth.ScopeAdmin})
	guard := auth.New(auth.Config{Keys: keys, IsAppID: func(id string) bool { _, ok := reg.Lookup(id); return ok }})
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1), Auth: guard})
	meter.NewHandler(meter.Config{Store: u, Dialect: meter.DuckDB{}, Auth: guard, Apps: reg,
		Limits: meter.Limits{MaxEvents: 5, MaxDataBytes: 200, MaxDepth: 4}}).Register(srv)
	hs := httptest.NewServer(srv)
	ts.url = hs.URL
	t.Cleanup(func() { hs.Close(); u.Close(); st.Close() })
	return ts
}

func (ts *testServer) do(t *testing.T, method, path, cred, ctype, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

const ok1 = `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"c","time":"2026-11-10T10:00:00Z","data":{"n":1}}`

// TestIngestErrors: every bad request is a 4xx naming the event and the
// field, and stores nothing.
func TestIngestErrors(t *testing.T) {
	ts := newTestServer(t)
	batch := meter.ContentTypeBatch
	cases := []struct {
		name, ctype, body string
		status            int
		index             float64
		field             string
	}{
		{"no id", batch, `[` + ok1 + `,{"specversion":"1.0","source":"s","type":"t","subject":"c"}]`, 400, 1, "id"},
		{"no subject", batch, `[{"specversion":"1.0","id":"2","source":"s","type":"t"}]`, 400, 0, "subject"},
		{"bad specversion", batch, `[{"specversion":"0.3","id":"2","source":"s","type":"t","subject":"c"}]`, 400, 0, "specversion"},
		{"bad time", batch, `[` + ok1 + `,` + ok1 + `,{"specversion":"1.0","id":"2","source":"s","type":"t","subject":"c","time":"yesterday"}]`, 400, 2, "time"},
		{"data not an object", batch, `[{"specversion":"1.0","id":"2","source":"s","type":"t","subject":"c","data":[1]}]`, 400, 0, "data"},
		{"id a number", meter.ContentTypeEvent, `{"specversion":"1.0","id":2,"source":"s","type":"t","subject":"c"}`, 400, 0, "id"},
		{"data too deep", batch, `[{"specversion":"1.0","id":"2","source":"s","type":"t","subject":"c","data":{"a":{"b":{"c":{"d":{"e":1}}}}}}]`, 400, 0, "data"},
		{"data too large", batch, `[{"specversion":"1.0","id":"2","source":"s","type":"t","subject":"c","data":{"a":"` + strings.Repeat("x", 300) + `"}}]`, 413, 0, "data"},
		{"too many events", batch, `[` + strings.Repeat(ok1+",", 5) + ok1 + `]`, 413, 5, ""},
		{"api-call type", batch, `[{"specversion":"1.0","id":"2","source":"s","type":"api-call","subject":"c"}]`, 400, 0, "type"},
		{"array as one event", meter.ContentTypeEvent, `[` + ok1 + `]`, 400, 0, ""},
		{"object as a batch", batch, ok1, 400, 0, ""},
		{"malformed", "application/json", `[{"specversion":`, 400, 0, ""},
		{"wrong type", "text/plain", ok1, 415, -1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := ts.do(t, "POST", "/api/v1/events", ts.admin, c.ctype, c.body)
			if status != c.status {
				t.Fatalf("status %d %v, want %d", status, body, c.status)
			}
			e, _ := body["error"].(map[string]any)
			if c.index >= 0 && e["index"] != c.index {
				t.Errorf("index %v, want %v: %v", e["index"], c.index, e)
			}
			if f, _ := e["field"].(string); f != c.field {
				t.Errorf("field %q, want %q: %v", f, c.field, e)
			}
		})
	}
	var n int
	ts.usage.DB().QueryRow("SELECT count(*) FROM usage_events").Scan(&n)
	if n != 0 {
		t.Fatalf("%d events stored from bad requests", n)
	}
}

// TestIngestAuthAndEnv: an admin key and an application id ingest; a read
// key, a key of another org and no key do not. The env is the env
// parameter, else X-Apimeter-Env, else the key's only env, else prod; an
// application id writes to its own.
func TestIngestAuthAndEnv(t *testing.T) {
	ts := newTestServer(t)
	post := func(cred, id, query string, hdr ...string) int {
		body := strings.Replace(ok1, `"id":"1"`, `"id":"`+id+`"`, 1)
		s, _ := ts.do(t, "POST", "/api/v1/events"+query, cred, meter.ContentTypeEvent, body, hdr...)
		return s
	}
	for _, c := range []struct {
		name, cred, id, query string
		hdr                   []string
		status                int
	}{
		{"admin key, default env", ts.admin, "a", "", nil, 204},
		{"admin key, env parameter", ts.admin, "b", "?env=test", nil, 204},
		{"admin key, env header", ts.admin, "c", "", []string{meter.EnvHeader, "test"}, 204},
		{"key bound to one env", ts.envKey, "d", "", nil, 204},
		{"key bound to another env", ts.envKey, "e", "?env=prod", nil, 403},
		{"application id as Bearer", ts.app.ID, "f", "", nil, 204},
		{"application id header", "", "g", "", []string{server.AppIDHeader, ts.app.ID}, 204},
		{"read key", ts.read, "h", "", nil, 403},
		{"no key", "", "i", "", nil, 401},
		{"unknown key", "amk_nope", "j", "", nil, 401},
		{"resent", ts.admin, "a", "", nil, 204},
	} {
		if s := post(c.cred, c.id, c.query, c.hdr...); s != c.status {
			t.Errorf("%s: %d, want %d", c.name, s, c.status)
		}
	}
	got := map[string]string{}
	rows, err := ts.usage.DB().Query("SELECT id, env FROM usage_events WHERE org = 'acme'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, env string
		rows.Scan(&id, &env)
		got[id] += env
	}
	rows.Close()
	want := map[string]string{"a": "prod", "b": "test", "c": "test", "d": "test", "f": "staging", "g": "staging"}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for id, env := range want {
		if got[id] != env {
			t.Errorf("event %s in env %q, want %q", id, got[id], env)
		}
	}
	// The other org's key sees none of acme's meters and may not define
	// one there... its meters are its own.
	if s, _ := ts.do(t, "POST", "/api/v1/meters", ts.other, "application/json", `{"slug":"m","eventType":"t","aggregation":"COUNT"}`); s != 201 {
		t.Fatalf("other org's meter: %d", s)
	}
	if s, _ := ts.do(t, "GET", "/api/v1/meters/m", ts.admin, "", ""); s != 404 {
		t.Fatalf("acme reads globex's meter: %d, want 404", s)
	}
}

// TestMeterAPIErrors: meter definitions and queries that are wrong are
// 400s naming the field; a read key reads but does not define.
func TestMeterAPIErrors(t *testing.T) {
	ts := newTestServer(t)
	for _, c := range []struct {
		body, field string
		status      int
	}{
		{`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`, "", 201},
		{`{"slug":"tokens","eventType":"prompt","aggregation":"COUNT"}`, "", 409},
		{`{"slug":"Bad Slug","eventType":"prompt","aggregation":"COUNT"}`, "slug", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"MEDIAN"}`, "aggregation", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"SUM"}`, "valueProperty", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"SUM","valueProperty":"$.items[0].n"}`, "valueProperty", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"SUM","valueProperty":"$..n"}`, "valueProperty", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"COUNT","groupBy":{"m":"$[?(@.a)]"}}`, "groupBy.m", 400},
		{`{"slug":"x","eventType":"prompt","aggregation":"COUNT","filter":{"errors":true}}`, "filter", 400},
		{`{"slug":"x","eventType":"api-call","aggregation":"SUM","valueProperty":"$.route"}`, "valueProperty", 400},
		{`{"slug":"x","eventType":"api-call","aggregation":"SUM","valueProperty":"$.nope"}`, "valueProperty", 400},
		{`{"slug":"calls","eventType":"api-call","aggregation":"COUNT","filter":{"route":["/search"],"errors":false}}`, "", 201},
	} {
		s, body := ts.do(t, "POST", "/api/v1/meters", ts.admin, "application/json", c.body)
		e, _ := body["error"].(map[string]any)
		if f, _ := e["field"].(string); s != c.status || f != c.field {
			t.Errorf("%s: %d field %q (%v), want %d field %q", c.body, s, f, e, c.status, c.field)
		}
	}
	if s, _ := ts.do(t, "POST", "/api/v1/meters", ts.read, "application/json", `{"slug":"y","eventType":"t","aggregation":"COUNT"}`); s != 403 {
		t.Errorf("read key defines a meter: %d, want 403", s)
	}
	if s, _ := ts.do(t, "DELETE", "/api/v1/meters/tokens", ts.read, "", ""); s != 403 {
		t.Errorf("read key deletes a meter: %d, want 403", s)
	}
	for q, field := range map[string]string{
		"windowSize=WEEK":             "windowSize",
		"windowTimeZone=Mars/Olympus": "windowTimeZone",
		"from=yesterday":              "from",
		"from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z": "from",
		"groupBy=color":                "groupBy",
		"filterGroupBy%5Bcolor%5D=red": "filterGroupBy[color]",
		"windowsize=DAY":               "windowsize",
		"from=2026-11-01T00:00:00Z&from=2026-11-02T00:00:00Z": "from",
	} {
		s, body := ts.do(t, "GET", "/api/v1/meters/tokens/query?"+q, ts.read, "", "")
		e, _ := body["error"].(map[string]any)
		if f, _ := e["field"].(string); s != 400 || f != field {
			t.Errorf("query %s: %d field %q (%v), want 400 field %q", q, s, f, e, field)
		}
	}
	if s, _ := ts.do(t, "GET", "/api/v1/meters/nope/query", ts.read, "", ""); s != 404 {
		t.Errorf("unknown meter: %d, want 404", s)
	}
	if s, _ := ts.do(t, "GET", "/api/v1/meters/tokens/query", "", "", ""); s != 401 {
		t.Errorf("no key: %d, want 401", s)
	}
	s, body := ts.do(t, "GET", "/api/v1/meters/tokens/query?windowSize=DAY&windowTimeZone=Europe/Berlin", ts.read, "", "")
	if s != 200 || body["windowSize"] != "DAY" || body["data"] == nil {
		t.Errorf("empty query: %d %v", s, body)
	}
}
