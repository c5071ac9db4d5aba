package server_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/server"
)

// TestEventsQueryTimeoutAnsweredAsDocumented: GET .../events past the
// query timeout (1 ns here, so the outcome does not depend on speed) is a
// 503 query_timeout naming the timeout, not a 500 or a wait.
func TestEventsQueryTimeoutAnsweredAsDocumented(t *testing.T) {
	e := newEnv(t, server.Config{QueryTimeout: time.Nanosecond})
	resp, err := e.read("/v1/o/acme/environments/prod/events")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"query_timeout"`) || !strings.Contains(string(b), "1ns") {
		t.Fatalf("GET events: %s %s, want 503 query_timeout naming 1ns", resp.Status, b)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
}

// TestEveryJSONAnswerSaysNosniff: answers written by WriteJSON and
// WriteError, successes and errors, collector and read routes, carry
// X-Content-Type-Options: nosniff (they did not), so that a browser never
// reads JSON echoing a client's input as HTML.
func TestEveryJSONAnswerSaysNosniff(t *testing.T) {
	e := newEnv(t, server.Config{})
	for _, c := range []struct{ method, path, key string }{
		{"GET", "/health/probe", ""},
		{"GET", "/no/such/route", ""},
		{"GET", "/v1/o/acme/environments/prod/events", e.key},
		{"GET", "/v1/o/acme/environments/prod/events", "wrong"},
		{"POST", "/v1/events", ""},
	} {
		req, _ := http.NewRequest(c.method, e.http.URL+c.path, strings.NewReader("<html>"))
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s (%s): X-Content-Type-Options %q, want nosniff", c.method, c.path, resp.Status, got)
		}
	}
	rec := httptest.NewRecorder()
	server.WriteError(rec, httptest.NewRequest("GET", "/", nil), slog.New(slog.DiscardHandler), &server.APIError{Status: 400, Code: "x", Message: "<b>"})
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("WriteError outside a Server: no nosniff")
	}
}
