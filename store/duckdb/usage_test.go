package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/meter"
)

func usageEvents(n int, prefix string) []meter.Event {
	out := make([]meter.Event, n)
	for i := range out {
		out[i] = meter.Event{Org: "o", Env: "prod", Source: "s", ID: fmt.Sprintf("%s%d", prefix, i), Type: "t", Subject: "c",
			Time: time.Date(2026, 11, 10, 0, 0, i, 0, time.UTC), Data: []byte(`{"n":1}`), Keys: []string{"n"}, Str: []string{"1"}, Num: []float64{1}}
	}
	return out
}

// TestUsageDedupeBeyondMemoryAndRestart: with a dedupe set too small for
// the horizon's ids, and after the store is opened again, a resent usage
// event is still found (in the table) and not stored twice.
func TestUsageDedupeBeyondMemoryAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "u.duckdb")
	open := func() (*Store, *Usage) {
		st, err := Open(ctx, path, Options{DailyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		// 1 KiB: 64 slots, far fewer than the 3,000 ids sent.
		u, err := st.OpenUsage(ctx, UsageOptions{DedupeMemory: 1024})
		if err != nil {
			t.Fatal(err)
		}
		return st, u
	}
	st, u := open()
	all := usageEvents(3000, "e")
	for i := 0; i < len(all); i += 300 {
		res, err := u.AppendUsage(ctx, all[i:i+300])
		if err != nil || res.Stored != 300 {
			t.Fatalf("batch %d: %+v %v", i/300, res, err)
		}
	}
	if u.seen.below == 0 {
		t.Fatal("the dedupe set forgot nothing; the test does not reach the table lookup")
	}
	res, err := u.AppendUsage(ctx, all[:500])
	if err != nil || res.Stored != 0 || res.Duplicates != 500 {
		t.Fatalf("resent beyond memory: %+v %v, want 500 duplicates", res, err)
	}
	u.Close()
	st.Close()
	st, u = open()
	defer st.Close()
	defer u.Close()
	res, err = u.AppendUsage(ctx, append(all[2500:], usageEvents(10, "new")...))
	if err != nil || res.Stored != 10 || res.Duplicates != 500 {
		t.Fatalf("resent after restart: %+v %v, want 10 stored and 500 duplicates", res, err)
	}
	var n int
	if err := u.DB().QueryRow("SELECT count(*) FROM usage_events").Scan(&n); err != nil || n != 3010 {
		t.Fatalf("%d rows (%v), want 3010", n, err)
	}
}
