package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/apimeter/apimeter/server"
)

// FuzzCollectorBatch posts arbitrary bodies to /v1/events/batch: the
// answer is always a 200 or a 4xx with a JSON error, never a 5xx or a
// panic.
func FuzzCollectorBatch(f *testing.F) {
	if b, err := os.ReadFile("../moesif/testdata/node-batch.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[" + goodEvent + "]"))
	f.Add([]byte(`[{"request":{"time":1}}]`))
	e := newEnv(f, server.Config{})
	h := e.http.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", bytes.NewReader(body))
		req.Header.Set(server.AppIDHeader, e.appID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || (rec.Code != 200 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`))) {
			t.Fatalf("body %q: answered %d %s", body, rec.Code, rec.Body.Bytes())
		}
	})
}

// FuzzCollectorEvent posts arbitrary bodies to /v1/events (one event,
// decoded by encoding/json): the answer is always a 200 or a 4xx with a
// JSON error, never a 5xx or a panic.
func FuzzCollectorEvent(f *testing.F) {
	f.Add([]byte(goodEvent))
	f.Add([]byte(`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{"":["` + "\xf0" + `"]}},"response":{"status":null},"metadata":{"a":"\ud800"}}`))
	f.Add([]byte(`{"request":{"time":"2200-12-31T23:00:00-05:00"}}`))
	e := newEnv(f, server.Config{})
	h := e.http.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set(server.AppIDHeader, e.appID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 || (rec.Code != 200 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`))) {
			t.Fatalf("body %q: answered %d %s", body, rec.Code, rec.Body.Bytes())
		}
	})
}

// FuzzProfiles posts arbitrary bodies to /v1/users and
// /v1/companies/batch: never a 5xx or a panic (invalid text is made valid
// before the store, which then takes every profile).
func FuzzProfiles(f *testing.F) {
	f.Add([]byte(`{"user_id":"513","company_id":"abcdef","modified_time":null,"metadata":{"name":"John Doe"}}`))
	f.Add([]byte(`[{"company_id":"abcdef","company_domain":"acme.example","metadata":{"plan":"pro"}}]`))
	f.Add([]byte(`{"user_id":"u` + "\xff" + `","session_token":"t","metadata":{"x":"\ud800"}}`))
	f.Add([]byte(`[{},{"user_id":"a"},null]`))
	e := newEnv(f, server.Config{})
	h := e.http.Config.Handler
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/v1/users", "/v1/companies/batch"} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set(server.AppIDHeader, e.appID)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 || (rec.Code != 200 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`))) {
				t.Fatalf("%s body %q: answered %d %s", path, body, rec.Code, rec.Body.Bytes())
			}
		}
	})
}
