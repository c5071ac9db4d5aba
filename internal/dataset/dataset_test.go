package dataset

import (
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestShape checks what the benchmarks rely on: events in request-time
// order inside the quarter, unique ids, the configured numbers of users and
// companies as bounds, several keys per user, 8 APIs and 40 routes, errors
// and whole-millisecond latencies, and the same events for the same seed.
func TestShape(t *testing.T) {
	cfg := Config{Events: 200000, End: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Seed: 1}
	g := New(cfg)
	buf := make([]apimeter.Event, 7000)
	users, companies, keys, apis, routes, ids := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	var last time.Time
	var errs, total int
	for {
		n := g.Fill(buf)
		if n == 0 {
			break
		}
		for _, e := range buf[:n] {
			if e.RequestTime.Before(last) || e.RequestTime.Before(g.Config().Start()) || !e.RequestTime.Before(cfg.End) {
				t.Fatalf("event %s at %s out of order or out of the quarter", e.ID, e.RequestTime)
			}
			last = e.RequestTime
			if ids[e.ID] {
				t.Fatalf("id %s twice", e.ID)
			}
			ids[e.ID] = true
			users[e.UserID], companies[e.CompanyID], keys[e.APIKeyID], apis[e.APIName], routes[e.Route] = true, true, true, true, true
			if e.Status >= 400 {
				errs++
			}
			if e.LatencyMs != float64(int64(e.LatencyMs)) || e.LatencyMs < 1 {
				t.Fatalf("latency %v is not whole milliseconds", e.LatencyMs)
			}
			total++
		}
	}
	if total != 200000 {
		t.Fatalf("%d events, want 200000", total)
	}
	if len(apis) != 8 || len(routes) != 40 {
		t.Errorf("%d APIs and %d routes, want 8 and 40", len(apis), len(routes))
	}
	if len(users) < 5000 || len(users) > 50000 || len(companies) > 2000 || len(companies) < 1000 || len(keys) <= len(users) {
		t.Errorf("%d users, %d companies, %d keys", len(users), len(companies), len(keys))
	}
	if errs < total/100 || errs > total/5 {
		t.Errorf("%d errors of %d", errs, total)
	}
	a, b := New(cfg), New(cfg)
	x, y := make([]apimeter.Event, 10), make([]apimeter.Event, 10)
	a.Fill(x)
	b.Fill(y)
	for i := range x {
		if x[i].ID != y[i].ID || x[i].UserID != y[i].UserID || !x[i].RequestTime.Equal(y[i].RequestTime) || x[i].LatencyMs != y[i].LatencyMs {
			t.Fatalf("same seed, different events: %+v / %+v", x[i], y[i])
		}
	}
}

func BenchmarkFill(b *testing.B) {
	g := New(Config{Events: int64(b.N), Seed: 1})
	buf := make([]apimeter.Event, 10000)
	b.ReportAllocs()
	for g.Fill(buf) > 0 {
	}
}
