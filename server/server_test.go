package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

type env struct {
	t     testing.TB
	dir   string
	store *duckdb.Store
	http  *httptest.Server
	appID string
	key   string // read key of org acme
	srv   *server.Server
	keys  *auth.Keys
}

func newEnv(t testing.TB, cfg server.Config) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Apps = st, reg
	if cfg.Scrubber == nil {
		cfg.Scrubber = scrub.New(nil, nil, -1)
	}
	if cfg.Auth == nil {
		cfg.Auth = auth.New(auth.Config{Keys: keys})
	}
	srv := server.New(cfg)
	hs := httptest.NewServer(srv)
	e := &env{t: t, dir: dir, store: st, http: hs, appID: a.ID, key: key, srv: srv, keys: keys}
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return e
}

func (e *env) post(path string, body []byte, header ...string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(server.AppIDHeader, e.appID)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("POST %s: answer is not a JSON object: %q", path, b)
	}
	return resp.StatusCode, out
}

// read GETs a read route with the env's key.
func (e *env) read(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e.key)
	return http.DefaultClient.Do(req)
}

func (e *env) events(query string) []map[string]any {
	e.t.Helper()
	resp, err := e.read("/v1/o/acme/environments/prod/events?" + query)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	return out.Events
}

// readTestdata reads a file named from the module root.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// get walks a decoded JSON document along a dotted path.
func get(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestRoundTripMoesifBatch(t *testing.T) {
	e := newEnv(t, server.Config{})
	code, out := e.post("/v1/events/batch", readTestdata(t, "moesif/testdata/node-batch.json"))
	if code != http.StatusOK || out["stored"] != float64(2) {
		t.Fatalf("POST batch: got %d %v, want 200 with 2 stored", code, out)
	}
	evs := e.events("limit=10")
	if len(evs) != 2 {
		t.Fatalf("read back %d events, want 2", len(evs))
	}
	// Newest first: the GET at 09:15:05 then the POST at 09:15:04.
	post, get2 := evs[1], evs[0]

	fp := scrub.Fingerprint
	for _, c := range []struct {
		path string
		want any
	}{
		{"event_id", "3d7c6a2e-5f0b-4b8e-9c1a-7e2f4d6b8a01"},
		{"request.time", "2026-11-02T09:15:04.123Z"},
		{"request.uri", "https://api.acme.example/accounts/abcdef/message?verbose=1&api_key=" + fp("sk_live_query_secret_1")},
		{"request.verb", "POST"},
		{"request.api_version", "1.2.0"},
		{"request.ip_address", "203.0.113.7"},
		{"request.headers.host", "api.acme.example"},
		{"request.headers.user-agent", "curl/8.5.0"},
		{"request.headers.authorization", fp("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0")},
		{"request.headers.cookie", fp("session=cookie_secret_value_2")},
		{"request.headers.x-api-key", fp("sk_live_header_secret_3")},
		{"request.body.text", "hello"},
		{"request.body.n", float64(3)},
		{"response.time", "2026-11-02T09:15:04.170Z"},
		{"response.status", float64(201)},
		{"response.headers.set-cookie", fp("a=set_cookie_secret_4; Path=/, b=2")},
		{"response.headers.x-ratelimit-remaining", "98"},
		{"response.body.my_object.my_message", "Hello World!"},
		{"user_id", "513"},
		{"company_id", "abcdef"},
		{"session_token", fp("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0")},
		{"tags", "v1"},
		{"metadata.plan", "pro"},
		{"metadata.region", "eu"},
		{"direction", "Incoming"},
		{"weight", nil}, // 1 is the default and is left out
		{"api_key_id", fp("sk_live_header_secret_3")},
	} {
		if got := get(post, c.path); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("event 0 %s = %v, want %v", c.path, got, c.want)
		}
	}
	for _, c := range []struct {
		path string
		want any
	}{
		{"request.time", "2026-11-02T09:15:05.000Z"},
		{"request.verb", "GET"},
		{"request.headers.Proxy-Authorization", fp("Basic cHJveHlfc2VjcmV0XzU=")},
		{"response.body", "AAECAwQFBgcICQ=="},
		{"response.transfer_encoding", "base64"},
		{"response.status", float64(200)},
		{"direction", "Incoming"},
	} {
		if got := get(get2, c.path); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("event 1 %s = %v, want %v", c.path, got, c.want)
		}
	}
	if id, _ := get2["event_id"].(string); !strings.HasPrefix(id, "h-") {
		t.Errorf("event without an id got id %q, want a content hash id (h-...)", id)
	}
}

func TestFiltersOnEventStream(t *testing.T) {
	e := newEnv(t, server.Config{})
	e.post("/v1/events/batch", readTestdata(t, "moesif/testdata/node-batch.json"))
	for _, c := range []struct {
		query string
		want  int
	}{
		{"user_id=513", 1},
		{"user_id=nobody", 0},
		{"status=200", 1},
		{"errors=true", 0},
		{"from=2026-11-02T09:15:04.500Z", 1},
		{"to=2026-11-02T09:15:04.500Z", 1},
		{"limit=1", 1},
	} {
		if got := len(e.events(c.query)); got != c.want {
			t.Errorf("events?%s: %d events, want %d", c.query, got, c.want)
		}
	}
}

func TestSecretsNeverReachDisk(t *testing.T) {
	e := newEnv(t, server.Config{})
	secrets := []string{"sk_live_query_secret_1", "cookie_secret_value_2", "sk_live_header_secret_3",
		"set_cookie_secret_4", "cHJveHlfc2VjcmV0XzU=",
		"FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0"} // the JWT's signature
	if code, out := e.post("/v1/events/batch", readTestdata(t, "moesif/testdata/node-batch.json")); code != 200 {
		t.Fatalf("POST: %d %v", code, out)
	}
	// A user profile with a session token.
	if code, out := e.post("/v1/users", []byte(`{"user_id":"513","session_token":"profile_token_secret_6","metadata":{"email":"john@acme.example"}}`)); code != 200 {
		t.Fatalf("POST user: %d %v", code, out)
	}
	secrets = append(secrets, "profile_token_secret_6")

	// The write-ahead log holds the rows uncompressed: scan it now, then
	// the database file after the store is closed (checkpointed).
	// A control: a stored value the scan must see, so that an empty or
	// wrong directory cannot make the test pass.
	const control = "api.acme.example/accounts/abcdef/message"
	scan := func(when string) (sawControl bool) {
		t.Helper()
		filepath.Walk(e.dir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s: secret %q found in %s", when, s, filepath.Base(path))
				}
			}
			sawControl = sawControl || bytes.Contains(b, []byte(control))
			return nil
		})
		return sawControl
	}
	if !scan("before checkpoint") {
		t.Fatalf("the scan did not find the stored URI %q: it is not reading the data", control)
	}
	// And through SQL, which sees past any compression.
	for _, s := range secrets {
		var n int
		err := e.store.DB().QueryRow(`SELECT count(*) FROM events WHERE concat_ws('|', uri, detail, user_id, api_key_id) LIKE '%' || ? || '%'`, s).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("secret %q found in %d stored events", s, n)
		}
	}
	e.http.Close()
	e.store.Close()
	scan("after close")
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestGzipBody(t *testing.T) {
	e := newEnv(t, server.Config{})
	code, out := e.post("/v1/events/batch", gz(readTestdata(t, "moesif/testdata/node-batch.json")), "Content-Encoding", "gzip")
	if code != 200 || out["stored"] != float64(2) {
		t.Fatalf("gzip batch: got %d %v, want 200 with 2 stored", code, out)
	}
}

const goodEvent = `{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"response":{"time":"2026-11-02T09:00:00.010Z","status":200}}`

func TestBadInput(t *testing.T) {
	e := newEnv(t, server.Config{MaxBodyBytes: 64 << 10, MaxBatchEvents: 3})
	replace := func(old, new string) string { return strings.Replace(goodEvent, old, new, 1) }
	batch := func(evs ...string) string { return "[" + strings.Join(evs, ",") + "]" }
	big := batch(strings.Replace(goodEvent, `"uri":"/a"`, `"uri":"/`+strings.Repeat("a", 70<<10)+`"`, 1))
	cases := []struct {
		name     string
		path     string
		body     string
		header   []string
		status   int
		code     string
		field    string
		index    any
		contains string
	}{
		{name: "malformed JSON", path: "/v1/events/batch", body: `[{"request":`, status: 400, code: "malformed_json", index: float64(0)},
		{name: "malformed second event", path: "/v1/events/batch", body: batch(goodEvent, `{"request": {"time": }`), status: 400, code: "malformed_json", index: float64(1)},
		{name: "not an array", path: "/v1/events/batch", body: goodEvent, status: 400, code: "invalid_batch"},
		{name: "empty batch", path: "/v1/events/batch", body: `[]`, status: 400, code: "empty_batch"},
		{name: "status as string", path: "/v1/events/batch", body: batch(goodEvent, replace(`"status":200`, `"status":"200"`)), status: 400, code: "invalid_type", field: "response.status", index: float64(1)},
		{name: "time as number", path: "/v1/events/batch", body: batch(replace(`"time":"2026-11-02T09:00:00Z"`, `"time":1730000000`)), status: 400, code: "invalid_type", field: "request.time", index: float64(0)},
		{name: "headers as array", path: "/v1/events/batch", body: batch(replace(`"verb":"GET"`, `"verb":"GET","headers":["a"]`)), status: 400, index: float64(0), contains: "headers"},
		{name: "missing request.time", path: "/v1/events/batch", body: batch(goodEvent, goodEvent, replace(`"time":"2026-11-02T09:00:00Z",`, ``)), status: 400, code: "invalid_event", field: "request.time", index: float64(2)},
		{name: "bad request.time", path: "/v1/events/batch", body: batch(replace(`2026-11-02T09:00:00Z`, `yesterday`)), status: 400, code: "invalid_event", field: "request.time", index: float64(0)},
		{name: "missing uri", path: "/v1/events/batch", body: batch(replace(`"uri":"/a",`, ``)), status: 400, code: "invalid_event", field: "request.uri", index: float64(0)},
		{name: "missing verb", path: "/v1/events/batch", body: batch(replace(`,"verb":"GET"`, ``)), status: 400, code: "invalid_event", field: "request.verb", index: float64(0)},
		{name: "missing response", path: "/v1/events/batch", body: batch(`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"}}`), status: 400, code: "invalid_event", field: "response", index: float64(0)},
		{name: "response before request", path: "/v1/events/batch", body: batch(replace(`2026-11-02T09:00:00.010Z`, `2026-11-02T08:00:00Z`)), status: 400, code: "invalid_event", field: "response.time", index: float64(0)},
		{name: "fractional weight", path: "/v1/events/batch", body: batch(replace(`{"request"`, `{"weight":0.5,"request"`)), status: 400, code: "invalid_event", field: "weight", index: float64(0)},
		{name: "negative weight", path: "/v1/events/batch", body: batch(replace(`{"request"`, `{"weight":-3,"request"`)), status: 400, code: "invalid_event", field: "weight", index: float64(0)},
		{name: "bad direction", path: "/v1/events/batch", body: batch(replace(`{"request"`, `{"direction":"sideways","request"`)), status: 400, code: "invalid_event", field: "direction", index: float64(0)},
		{name: "bad base64 body", path: "/v1/events/batch", body: batch(replace(`"verb":"GET"`, `"verb":"GET","body":"%%%","transfer_encoding":"base64"`)), status: 400, code: "invalid_event", field: "request.body", index: float64(0)},
		{name: "single event missing verb", path: "/v1/events", body: replace(`,"verb":"GET"`, ``), status: 400, code: "invalid_event", field: "request.verb"},
		{name: "too many events", path: "/v1/events/batch", body: batch(goodEvent, goodEvent, goodEvent, goodEvent), status: 413, code: "batch_too_large"},
		{name: "body too large", path: "/v1/events/batch", body: big, status: 413, code: "body_too_large"},
		{name: "body too large after gzip decoding", path: "/v1/events/batch", body: string(gz([]byte(big))), header: []string{"Content-Encoding", "gzip"}, status: 413, code: "body_too_large"},
		{name: "not gzip", path: "/v1/events/batch", body: batch(goodEvent), header: []string{"Content-Encoding", "gzip"}, status: 400, code: "invalid_gzip"},
		{name: "unknown encoding", path: "/v1/events/batch", body: batch(goodEvent), header: []string{"Content-Encoding", "br"}, status: 415, code: "unsupported_encoding"},
		{name: "missing application id", path: "/v1/events/batch", body: batch(goodEvent), header: []string{server.AppIDHeader, ""}, status: 401, code: "missing_application_id"},
		{name: "unknown application id", path: "/v1/events/batch", body: batch(goodEvent), header: []string{server.AppIDHeader, "eyJub3QiOiJrbm93biJ9.nope"}, status: 401, code: "unknown_application_id"},
		{name: "user without id", path: "/v1/users", body: `{"metadata":{}}`, status: 400, code: "invalid_event", field: "user_id"},
		{name: "company batch without id", path: "/v1/companies/batch", body: `[{"company_id":"a"},{"company_domain":"b"}]`, status: 400, code: "invalid_event", field: "company_id", index: float64(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.post(c.path, []byte(c.body), c.header...)
			if code != c.status {
				t.Fatalf("status %d, want %d (answer %v)", code, c.status, out)
			}
			errObj, _ := out["error"].(map[string]any)
			if errObj == nil || errObj["message"] == "" {
				t.Fatalf("answer %v has no error.message", out)
			}
			if c.code != "" && errObj["code"] != c.code {
				t.Errorf("error.code %v, want %s (message %v)", errObj["code"], c.code, errObj["message"])
			}
			if c.field != "" && errObj["field"] != c.field {
				t.Errorf("error.field %v, want %s (message %v)", errObj["field"], c.field, errObj["message"])
			}
			if c.index != nil && errObj["index"] != c.index {
				t.Errorf("error.index %v, want %v (message %v)", errObj["index"], c.index, errObj["message"])
			}
			if c.contains != "" && !strings.Contains(fmt.Sprint(errObj["message"]), c.contains) {
				t.Errorf("error.message %q does not mention %q", errObj["message"], c.contains)
			}
		})
	}
	// A rejected batch stores nothing (batches are atomic), and good data
	// sent afterwards is taken.
	if n := len(e.events("limit=100")); n != 0 {
		t.Fatalf("%d events stored from rejected batches, want 0", n)
	}
	if code, out := e.post("/v1/events/batch", []byte(batch(goodEvent))); code != 200 {
		t.Fatalf("good batch after bad ones: %d %v", code, out)
	}
}

func TestBodiesCappedAndMarked(t *testing.T) {
	e := newEnv(t, server.Config{Scrubber: scrub.New(nil, nil, 16)})
	ev := strings.Replace(goodEvent, `"verb":"GET"`, `"verb":"GET","body":{"text":"0123456789abcdefghijklmnop"}`, 1)
	if code, out := e.post("/v1/events/batch", []byte("["+ev+"]")); code != 200 {
		t.Fatalf("POST: %d %v", code, out)
	}
	got := e.events("limit=1")[0]
	if body := get(got, "request.body"); body != `{"text":"0123456` {
		t.Errorf("capped body %q, want the first 16 bytes", body)
	}
	stored, err := e.store.Events(context.Background(), apimeter.EventFilter{Org: "acme", Env: "prod", Limit: 1})
	if err != nil || len(stored) != 1 || !stored[0].RequestBody.Truncated {
		t.Errorf("stored event not marked truncated: %+v %v", stored, err)
	}
}

func TestConfigAndRulesForSDKs(t *testing.T) {
	e := newEnv(t, server.Config{})
	for _, path := range []string{"/v1/config", "/v1/rules"} {
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
		req.Header.Set(strings.ToLower(server.AppIDHeader), e.appID) // SDKs send any case
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if path == "/v1/config" {
			var cfg map[string]any
			json.Unmarshal(b, &cfg)
			if cfg["sample_rate"] != float64(100) || cfg["regex_config"] == nil || cfg["user_sample_rate"] == nil {
				t.Errorf("config %s lacks what SDKs parse", b)
			}
		} else if strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("rules = %s, want []", b)
		}
	}
	if len(e.appID) < 50 {
		t.Errorf("application id %q is shorter than the 50 characters an SDK requires", e.appID)
	}
}

func TestProfilesKept(t *testing.T) {
	e := newEnv(t, server.Config{})
	if code, out := e.post("/v1/companies/batch", []byte(`[{"company_id":"abcdef","company_domain":"acme.example","metadata":{"plan":"pro"}}]`)); code != 200 {
		t.Fatalf("companies: %d %v", code, out)
	}
	if code, out := e.post("/v1/users", []byte(`{"user_id":"513","company_id":"abcdef","modified_time":null,"metadata":{"name":"John Doe"}}`)); code != 200 {
		t.Fatalf("users: %d %v", code, out)
	}
	resp, err := e.read("/v1/o/acme/environments/prod/users/513")
	if err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	json.NewDecoder(resp.Body).Decode(&u)
	resp.Body.Close()
	if get(u, "metadata.name") != "John Doe" || u["company_id"] != "abcdef" {
		t.Errorf("user profile %v", u)
	}
	// Joinable to events by user_id and company_id.
	e.post("/v1/events/batch", readTestdata(t, "moesif/testdata/node-batch.json"))
	var n int
	err = e.store.DB().QueryRow(`SELECT count(*) FROM events e JOIN profiles p ON p.org = e.org AND p.env = e.env AND p.kind = 'company' AND p.id = e.company_id`).Scan(&n)
	if err != nil || n != 1 {
		t.Errorf("events joined to company profiles: %d (%v), want 1", n, err)
	}
}

// TestPathNotCanonicalIsRefused: a path with "." or ".." segments or a
// doubled slash gets a 400 JSON error naming it, not ServeMux's redirect
// to another route; canonical paths are routed as before.
func TestPathNotCanonicalIsRefused(t *testing.T) {
	e := newEnv(t, server.Config{})
	for _, p := range []string{"/health/./probe", "/health/probe/..", "/v1//events", "/v1/o/acme/environments/prod/users/."} {
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		var out struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != http.StatusBadRequest || err != nil || out.Error.Code != "invalid_path" || !strings.Contains(out.Error.Message, p) {
			t.Errorf("GET %s: %d %q, want a 400 invalid_path naming the path", p, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health/probe", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /health/probe: %d %q", rec.Code, rec.Body)
	}
}
