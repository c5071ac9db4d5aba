package identity_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestRedisReplaceUsage: --usage-rebuild repairs Redis counters that missed
// increments (a collector killed between the store's commit and the
// counters) and drops counters the events table does not support.
func TestRedisReplaceUsage(t *testing.T) {
	rc := startRedis(t)
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var evs []apimeter.Event
	for i := 0; i < 40; i++ {
		at := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 24 * time.Hour)
		evs = append(evs, apimeter.Event{ID: fmt.Sprint(i), Org: "acme", Env: "prod", RequestTime: at, ResponseTime: at,
			Method: "GET", Direction: apimeter.Incoming, Status: 200 + 100*(i%4), RequestSize: -1, ResponseSize: 10,
			UserID: fmt.Sprintf("u%d", i%3), Weight: int64(1 + i%2)})
	}
	res, err := st.Append(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	r := identity.NewRedis(rc, identity.RedisOptions{Prefix: "rb:"})
	m := &identity.Meter{Counters: r}
	if err := m.Stored(ctx, res.Stored[:10]); err != nil { // the rest "lost"
		t.Fatal(err)
	}
	if err := r.AddUsage(ctx, map[identity.CounterKey]identity.Counts{
		{Org: "acme", Env: "prod", Period: "2026-11", Dim: identity.ByUser, ID: "ghost"}: {Calls: 5},
	}); err != nil {
		t.Fatal(err)
	}
	counts, err := identity.RebuildCounters(ctx, st.DB(), identity.Periods{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReplaceUsage(ctx, counts); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"2026-10", "2026-11"} {
		p, _ := identity.Periods{}.Parse(label, time.Now())
		for _, dim := range identity.Dimensions() {
			rows, err := r.Usage(ctx, "acme", "prod", label, dim)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]identity.Counts{}
			for _, row := range rows {
				got[row.ID] = row.Counts
			}
			want := storeUsage(t, st.DB(), "acme", "prod", p, dim)
			if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
				t.Errorf("period %s by %s after rebuild:\n redis %v\n store %v", label, dim, sorted(got), sorted(want))
			}
		}
	}
}

// TestRedisDownRefusesBatch: with the alias table unreachable the collector
// stores nothing (so nothing is counted for no one) and answers an error
// the sender will retry.
func TestRedisDownRefusesBatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, dir, a.ID, func(*testing.T, *duckdb.Store) (identity.Aliases, identity.Counters) {
		b := identity.NewRedis(rc, identity.RedisOptions{})
		return b, b
	})
	defer r.close()
	var res map[string]any
	code := r.do("POST", "/v1/events/batch", []map[string]any{
		call("down-1", "2026-11-02T00:00:00.000Z", "https://api.example/items", map[string]string{"X-Api-Key": "k"}, 200, 1),
	}, &res)
	if code < 500 {
		t.Fatalf("batch with Redis down: status %d (%v), want a 5xx", code, res)
	}
	var n int
	if err := r.st.DB().QueryRow(`SELECT count(*) FROM events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events stored with Redis down (%v), want 0", n, err)
	}
}
