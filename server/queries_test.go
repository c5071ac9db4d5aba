package server_test

import (
	"io"
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
