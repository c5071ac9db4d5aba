package server_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestFailedAuthThrottledPerClient: after 3 wrong keys in a minute from
// one address, every keyed request from it (the right key too) is a 429
// with Retry-After until the minute ends, while another address is
// answered as before; memory stays bounded (two clients counted at most,
// the rest together). Before, wrong keys were answered without end.
func TestFailedAuthThrottledPerClient(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	lim := server.NewAuthLimiter(server.AuthLimitConfig{MaxFailures: 3, Window: time.Minute, MaxClients: 2, Now: clock.now})
	e := newEnv(t, server.Config{AuthLimiter: lim})
	h := e.http.Config.Handler
	call := func(addr, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/o/acme/environments/prod/events", nil)
		r.RemoteAddr = addr + ":40000"
		r.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	wrong := auth.NewKey()
	for i := range 3 {
		if rec := call("198.51.100.1", wrong); rec.Code != 401 {
			t.Fatalf("wrong key %d: %d %s, want 401", i+1, rec.Code, rec.Body)
		}
	}
	rec := call("198.51.100.1", wrong)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "60" {
		t.Fatalf("fourth wrong key: %d Retry-After %q %s, want 429 with Retry-After 60", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := call("198.51.100.1", e.key); rec.Code != http.StatusTooManyRequests {
		t.Errorf("right key from the throttled address: %d, want 429", rec.Code)
	}
	if rec := call("198.51.100.2", e.key); rec.Code != 200 {
		t.Errorf("right key from another address: %d %s, want 200", rec.Code, rec.Body)
	}
	if rec := call("198.51.100.2", wrong); rec.Code != 401 {
		t.Errorf("wrong key from another address: %d, want 401", rec.Code)
	}
	// Past MaxClients, new addresses share one count.
	for i, a := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if rec := call(a, wrong); rec.Code != 401 {
			t.Errorf("wrong key %d from a new address: %d, want 401", i+1, rec.Code)
		}
	}
	if rec := call("203.0.113.4", wrong); rec.Code != http.StatusTooManyRequests {
		t.Errorf("fourth wrong key from new addresses past MaxClients: %d, want 429", rec.Code)
	}
	clock.add(time.Minute)
	if rec := call("198.51.100.1", e.key); rec.Code != 200 {
		t.Errorf("right key after the window: %d %s, want 200", rec.Code, rec.Body)
	}
}
