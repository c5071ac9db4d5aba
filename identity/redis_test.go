package identity_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
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
