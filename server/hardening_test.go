package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/server"
)

// serveAlloc answers one request in process and returns the answer and
// the bytes allocated meanwhile (runtime.MemStats.TotalAlloc: every
// allocation of the process, an upper bound of what the request held at
// once).
func serveAlloc(t *testing.T, h http.Handler, appID, path string, body []byte, header ...string) (*httptest.ResponseRecorder, uint64) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set(server.AppIDHeader, appID)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h.ServeHTTP(rec, req)
	runtime.ReadMemStats(&after)
	return rec, after.TotalAlloc - before.TotalAlloc
}

// fill repeats unit inside prefix...suffix up to about n bytes.
func fill(prefix, unit, suffix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(prefix)
	for k := 0; b.Len()+len(unit)+len(suffix) < n; k++ {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(unit)
	}
	b.WriteString(suffix)
	return b.Bytes()
}

// TestRequestMemoryBoundedByLimits sends small gzip bodies that decode to
// what costs most memory per byte of JSON (millions of {}, of headers, of
// header array elements, of profile keys) and checks that each is refused
// or taken with its allocations bounded by the limits, not by what the
// body holds. Before the fix, the first one allocated ~300 MB for a 1 MiB
// body limit.
func TestRequestMemoryBoundedByLimits(t *testing.T) {
	const maxBody = 1 << 20
	e := newEnv(t, server.Config{MaxBodyBytes: maxBody, MaxBatchEvents: 100})
	h := e.http.Config.Handler
	// Allocations of a request: the body (read into a growing buffer),
	// its decoding (at most twice the body by apimeter's count) and the
	// work per event; far below what the bodies expand to unbounded.
	const bound = 24 * maxBody
	ev := `{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{%s}},"response":{"status":200}}`
	manyHeaders := strings.TrimSuffix(strings.Repeat(`"":1,`, jsontext.MaxHeaders-1), ",")
	for _, c := range []struct {
		name, path string
		body       []byte
		status     int
		code       string
	}{
		{"millions of {}", "/v1/events/batch", fill("[", "{}", "]", maxBody), 413, "batch_too_large"},
		{"millions of {} to the slow decoder", "/v1/events/batch", fill("[", `{"Request":{}}`, "]", maxBody), 413, "batch_too_large"},
		{"millions of null", "/v1/events/batch", fill("[", `null`, "]", maxBody), 413, "batch_too_large"},
		{"headers of one event", "/v1/events/batch", []byte("[" + fmt.Sprintf(ev, string(fill("", `"":1`, "", maxBody-200))) + "]"), 413, "too_many_headers"},
		{"headers of one event, single", "/v1/events", []byte(fmt.Sprintf(ev, string(fill("", `"":1`, "", maxBody-200)))), 413, "too_many_headers"},
		{"headers over many events", "/v1/events/batch", fill("[", fmt.Sprintf(ev, manyHeaders), "]", maxBody), 413, "batch_too_large"},
		{"header array elements", "/v1/events/batch", []byte("[" + fmt.Sprintf(ev, `"a":[`+string(fill("", "1", "", maxBody-200))+`]`) + "]"), 400, "invalid_event"},
		{"users: millions of {}", "/v1/users/batch", fill("[", "{}", "]", maxBody), 413, "batch_too_large"},
		{"companies: millions of {}", "/v1/companies/batch", fill("[", "{}", "]", maxBody), 413, "batch_too_large"},
		{"user with a million keys", "/v1/users", fill("{", `"a":1`, "}", maxBody), 400, "invalid_event"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec, alloc := serveAlloc(t, h, e.appID, c.path, gz(c.body), "Content-Encoding", "gzip")
			var out struct{ Error server.APIError }
			json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != c.status || out.Error.Code != c.code {
				t.Errorf("answered %d %s, want %d %s", rec.Code, bytes.TrimSpace(rec.Body.Bytes()), c.status, c.code)
			}
			t.Logf("%d bytes of JSON (%d gzip): %d bytes allocated", len(c.body), len(gz(c.body)), alloc)
			if alloc > bound {
				t.Errorf("allocated %d MiB for a %d KiB gzip body, want at most %d MiB (the limits: body %d MiB, 100 events)",
					alloc>>20, len(gz(c.body))>>10, bound>>20, maxBody>>20)
			}
		})
	}
}

// TestInvalidTextNeverReachesTheStore sends invalid UTF-8 and lone
// surrogates in every part of events and profiles: each is stored with
// U+FFFD in their place (never a 5xx), and what is read back is valid,
// strict JSON.
func TestInvalidTextNeverReachesTheStore(t *testing.T) {
	e := newEnv(t, server.Config{})
	bad := []struct{ name, event string }{
		{"metadata", `{"request":{"time":"2026-11-02T09:00:00Z","uri":"/m","verb":"GET"},"response":{"status":200},"metadata":{"k":"a\xffb","\xfe":["\ud800"]}}`},
		{"metadata lone surrogate", `{"request":{"time":"2026-11-02T09:00:01Z","uri":"/s","verb":"GET"},"response":{"status":200},"metadata":{"k":"\udc00x\ud800"}}`},
		{"header name and value", `{"request":{"time":"2026-11-02T09:00:02Z","uri":"/h","verb":"GET","headers":{"X-\xff":"v\xf0","":["\xf0"]}},"response":{"status":200,"headers":{"A":"\xc3"}}}`},
		{"bodies", `{"request":{"time":"2026-11-02T09:00:03Z","uri":"/b","verb":"POST","body":{"a":"\xff\ud800"}},"response":{"status":200,"body":"x\xffy"}}`},
		{"strings", `{"request":{"time":"2026-11-02T09:00:04Z","uri":"/u\xff","verb":"G\xffT","api_version":"\xff","ip_address":"\xff"},"response":{"status":200},"user_id":"\xff","company_id":"\xfe","tags":"\xff","api_name":"\xff","route":"\xff"}`},
	}
	for _, c := range bad {
		code, out := e.post("/v1/events/batch", []byte(bin("["+goodEvent+","+c.event+"]")))
		if code != 200 {
			t.Errorf("%s: answered %d %v, want 200", c.name, code, out)
		}
	}
	// The whole stream, read back raw: valid UTF-8, no lone surrogate.
	resp, err := e.read("/v1/o/acme/environments/prod/events?limit=100")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !utf8.Valid(b) || !json.Valid(b) {
		t.Fatalf("event stream is not valid UTF-8 JSON: %q", b)
	}
	if lone := loneSurrogate(b); lone != "" {
		t.Errorf("event stream echoes a lone surrogate %s: %s", lone, b)
	}
	if !bytes.Contains(b, []byte(`a\ufffdb`)) && !bytes.Contains(b, []byte("a\uFFFDb")) {
		t.Errorf("metadata lost its valid text around the bad byte: %s", b)
	}
	// Profiles: no 500, valid text kept.
	for _, p := range []struct{ path, body string }{
		{"/v1/users", `{"user_id":"u\xff1","metadata":{"name":"J\xffD","x":"\ud800"}}`},
		{"/v1/companies/batch", `[{"company_id":"c\xff","metadata":{"\xff":1}}]`},
		{"/v1/users", `{"user_id":"u2","session_token":"t\xff","x\xff":"\udfff"}`},
	} {
		if code, out := e.post(p.path, []byte(bin(p.body))); code != 200 {
			t.Errorf("%s %q: answered %d %v, want 200", p.path, p.body, code, out)
		}
	}
	resp, err = e.read("/v1/o/acme/environments/prod/users/u%EF%BF%BD1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !utf8.Valid(b) || !json.Valid(b) || loneSurrogate(b) != "" || !strings.Contains(string(b), "J\uFFFDD") {
		t.Errorf("profile read back: %d %q", resp.StatusCode, b)
	}
}

// bin turns each \xHH of s into the byte HH (a raw string cannot hold
// invalid UTF-8); \uXXXX JSON escapes are left alone.
func bin(s string) string {
	return regexp.MustCompile(`\\x[0-9a-f]{2}`).ReplaceAllStringFunc(s, func(m string) string {
		var c byte
		fmt.Sscanf(m[2:], "%02x", &c)
		return string([]byte{c})
	})
}

// loneSurrogate returns the first \uD800-\uDFFF escape of b that is not
// half of a pair, or "".
func loneSurrogate(b []byte) string {
	s := string(b)
	for i := 0; i+6 <= len(s); i++ {
		if s[i] == '\\' {
			if s[i+1] != 'u' {
				i++
				continue
			}
			var r rune
			fmt.Sscanf(s[i+2:i+6], "%04x", &r)
			if r >= 0xD800 && r < 0xDC00 && i+12 <= len(s) && s[i+6:i+8] == `\u` {
				var r2 rune
				fmt.Sscanf(s[i+8:i+12], "%04x", &r2)
				if r2 >= 0xDC00 && r2 <= 0xDFFF {
					i += 11
					continue
				}
			}
			if r >= 0xD800 && r <= 0xDFFF {
				return s[i : i+6]
			}
		}
	}
	return ""
}

// TestSameContentIDOnEveryEndpoint posts an event without an id whose
// header value is invalid UTF-8 (the case the fuzzer found) to /v1/events,
// then the same JSON to /v1/events/batch: the second must be a duplicate.
func TestSameContentIDOnEveryEndpoint(t *testing.T) {
	for _, ev := range []string{
		`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{"":["\xf0"]}},"response":{"status":200}}`,
		`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{"h":"x\xffy"}},"response":{"status":200}}`,
		`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","body":{"a":"\xff"}},"response":{"status":200}}`,
		`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","body":{"a":"\ud800"}},"response":{"status":200}}`,
	} {
		ev = bin(ev)
		e := newEnv(t, server.Config{})
		if code, out := e.post("/v1/events", []byte(ev)); code != 200 || out["stored"] != float64(1) {
			t.Fatalf("%q to /v1/events: %d %v", ev, code, out)
		}
		code, out := e.post("/v1/events/batch", []byte("["+ev+"]"))
		if code != 200 || out["duplicates"] != float64(1) {
			t.Errorf("%q to /v1/events/batch after /v1/events: %d %v, want 1 duplicate (same content id)", ev, code, out)
		}
	}
}

// TestIngestRefusals: the smaller input defects, each a 400 naming the
// field.
func TestIngestRefusals(t *testing.T) {
	// The clock skew is raised to reach the parser's bound of 2200 (the
	// skew itself: TestEventsDatedBeyondClockSkewAreRefused).
	e := newEnv(t, server.Config{MaxHeaderValueBytes: 100, MaxURIBytes: 100, MaxMetadataBytes: 100, MaxClockSkew: 200 * 365 * 24 * time.Hour})
	replace := func(old, new string) string { return strings.Replace(goodEvent, old, new, 1) }
	for _, c := range []struct {
		name, body, field string
	}{
		{"status null", replace(`"status":200`, `"status":null`), "response.status"},
		{"metadata string", replace(`{"request"`, `{"metadata":"x","request"`), "metadata"},
		{"metadata array", replace(`{"request"`, `{"metadata":[1],"request"`), "metadata"},
		{"metadata number", replace(`{"request"`, `{"metadata":1,"request"`), "metadata"},
		{"metadata true", replace(`{"request"`, `{"metadata":true,"request"`), "metadata"},
		{"request time past 2200 in UTC", replace(`2026-11-02T09:00:00Z`, `2200-12-31T23:00:00-05:00`), "request.time"},
		{"request time before 1970 in UTC", replace(`2026-11-02T09:00:00Z`, `1970-01-01T00:30:00+01:00`), "request.time"},
		{"response time past 2200 in UTC", replace(`2026-11-02T09:00:00.010Z`, `2200-12-31T20:00:00-0500`), "response.time"},
		{"long URI", replace(`"uri":"/a"`, `"uri":"/`+strings.Repeat("a", 101)+`"`), "request.uri"},
		{"long header value", replace(`"verb":"GET"`, `"verb":"GET","headers":{"X-Big":"`+strings.Repeat("a", 101)+`"}`), "request.headers.X-Big"},
		{"long response header value", replace(`"status":200`, `"status":200,"headers":{"Y":["`+strings.Repeat("a", 60)+`","`+strings.Repeat("a", 60)+`"]}`), "response.headers.Y"},
		{"long metadata", replace(`{"request"`, `{"metadata":{"a":"`+strings.Repeat("a", 100)+`"},"request"`), "metadata"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/v1/events/batch", "/v1/events"} {
				body := c.body
				if path == "/v1/events/batch" {
					body = "[" + goodEvent + "," + body + "]"
				}
				code, out := e.post(path, []byte(body))
				if code != 400 || get(out, "error.field") != c.field {
					t.Errorf("%s: answered %d %v, want 400 naming %s", path, code, out, c.field)
				}
			}
		})
	}
	// At the caps, and a null status's neighbours, are taken.
	for _, body := range []string{
		replace(`"uri":"/a"`, `"uri":"/`+strings.Repeat("a", 99)+`"`),
		replace(`{"request"`, `{"metadata":null,"request"`),
		replace(`"status":200`, `"status":200,"status":null,"status":201`),
		strings.Replace(replace(`2026-11-02T09:00:00Z`, `2200-12-31T18:00:00-05:00`), `2026-11-02T09:00:00.010Z`, `2200-12-31T23:00:00Z`, 1),
	} {
		if code, out := e.post("/v1/events", []byte(body)); code != 200 {
			t.Errorf("%s: answered %d %v, want 200", body, code, out)
		}
	}
	if code, out := e.post("/v1/users", []byte(`{"user_id":"u","metadata":{"a":"`+strings.Repeat("a", 100)+`"}}`)); code != 400 || get(out, "error.field") != "metadata" {
		t.Errorf("profile with long metadata: %d %v, want 400 naming metadata", code, out)
	}
}

// TestRedisUnreachable: when the alias table's Redis does not answer, a
// batch is answered 503 with Retry-After (the sender retries), not 500.
func TestRedisUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	res := identity.NewResolver(identity.Config{Aliases: identity.NewRedis(rc, identity.RedisOptions{})})
	e := newEnv(t, server.Config{Identifier: res})
	ev := strings.Replace(goodEvent, `"verb":"GET"`, `"verb":"GET","headers":{"X-Api-Key":"k1"}`, 1)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, e.http.URL+"/v1/events/batch", strings.NewReader("["+ev+"]"))
	req.Header.Set(server.AppIDHeader, e.appID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !bytes.Contains(b, []byte(`"identity_unavailable"`)) {
		t.Errorf("with Redis unreachable: %d Retry-After=%q %s; want 503 identity_unavailable with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
}
