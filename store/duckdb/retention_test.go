package duckdb

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/storetest"
)

// TestRetentionDropsWholeDays: with a retention of 10 days, a pass deletes
// the events of every UTC day that ended more than 10 days ago, with their
// rollup rows and folded periods; the days after are untouched, and the
// Metrics API (rollups where they cover, events elsewhere) answers what a
// scan of the remaining events answers, before and after the next fold.
func TestRetentionDropsWholeDays(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{DailyInterval: -1, Retention: 10 * 24 * time.Hour, RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC)
	cutoff := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC) // the first day kept
	at := []time.Time{
		now.AddDate(0, 0, -40),
		time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 9, 23, 59, 59, 0, time.UTC), // the last instant dropped
		cutoff, // the first instant kept
		time.Date(2026, 11, 10, 11, 0, 0, 0, time.UTC),
		now.AddDate(0, 0, -2),
		now.Add(-time.Hour),
	}
	var evs []apimeter.Event
	for i, ts := range at {
		for j := range 3 {
			evs = append(evs, apimeter.Event{ID: fmt.Sprintf("e%d-%d", i, j), Org: "o", Env: "e", RequestTime: ts, ResponseTime: ts.Add(time.Millisecond),
				Method: "GET", Path: "/x", Route: "/x", Status: 200 + 300*(j%2), LatencyMs: float64(10 * (j + 1)), UserID: fmt.Sprintf("u%d", j), CompanyID: fmt.Sprintf("c%d", j%2), Weight: 1})
		}
	}
	if res, err := st.Append(ctx, evs); err != nil || len(res.Stored) != len(evs) {
		t.Fatalf("append: %+v %v", res, err)
	}
	if _, err := st.BuildRollups(ctx); err != nil {
		t.Fatal(err)
	}

	queries := []struct{ dims, q string }{
		{"user_id", "select=sum(message_count),sum(is_error)"},
		{"", "select=sum(message_count),p95(total_response_time)&timeUnit=day"},
		{"response_status_code", "select=sum(message_count)&timeUnit=hour"},
	}
	tr := "&timeRange=" + url.QueryEscape(now.AddDate(0, 0, -60).Format("01/02/2006 15:04")+"~"+now.Format("01/02/2006 15:04"))
	check := func(stage string) {
		t.Helper()
		for _, qq := range queries {
			q, _ := url.ParseQuery(qq.q + tr)
			p, err := stats.Parse("o", "e", qq.dims, q)
			if err != nil {
				t.Fatal(err)
			}
			api, err := stats.RunRollups(ctx, st.DB(), stats.DuckDB{}, p)
			if err != nil {
				t.Fatal(err)
			}
			p, _ = stats.Parse("o", "e", qq.dims, q)
			raw, err := stats.Run(ctx, st.DB(), stats.DuckDB{}, p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rowsOf(api), rowsOf(raw)) {
				t.Errorf("%s: /stats/%s?%s: Metrics API %v, scan of the events %v", stage, qq.dims, qq.q, rowsOf(api), rowsOf(raw))
			}
		}
	}
	check("before")

	d, err := st.DropExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Before.Equal(cutoff) || d.Events != 9 {
		t.Fatalf("dropped %+v, want the 9 events before %s", d, cutoff)
	}
	var n int
	var oldest time.Time
	st.DB().QueryRow(`SELECT count(*), min(ts) FROM events`).Scan(&n, &oldest)
	if n != 12 || !oldest.Equal(cutoff) {
		t.Errorf("events left: %d from %s, want 12 from %s", n, oldest, cutoff)
	}
	for _, f := range rollup.Families {
		for _, g := range rollup.Grains {
			var old, kept int
			st.DB().QueryRow(`SELECT count(*) FILTER (WHERE ts < $1), count(*) FILTER (WHERE ts >= $1) FROM `+f.Table(g), cutoff).Scan(&old, &kept)
			if old != 0 || kept == 0 {
				t.Errorf("%s: %d rows before %s (want 0) and %d after (want some)", f.Table(g), old, cutoff, kept)
			}
		}
	}
	var old, kept int
	st.DB().QueryRow(`SELECT count(*) FILTER (WHERE ts < $1), count(*) FILTER (WHERE ts >= $1) FROM `+rollup.CallsTable, cutoff).Scan(&old, &kept)
	if old != 0 || kept == 0 {
		t.Errorf("%s: %d rows before %s (want 0) and %d after (want some)", rollup.CallsTable, old, cutoff, kept)
	}
	var oldPeriods int
	st.DB().QueryRow(`SELECT count(*) FROM `+rollup.PeriodsTable+` WHERE start < $1`, cutoff).Scan(&oldPeriods)
	if oldPeriods != 0 {
		t.Errorf("%d folded periods before %s left", oldPeriods, cutoff)
	}
	check("after the drop")
	if _, err := st.BuildRollups(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the next fold")
	if d, err := st.DropExpired(ctx, now); err != nil || d.Events != 0 {
		t.Errorf("second pass: %+v %v, want nothing more", d, err)
	}
}

func rowsOf(r *stats.Result) []string {
	var out []string
	for _, row := range r.Rows {
		s := fmt.Sprint(row.Dims, row.Bucket.UTC().Format(time.RFC3339))
		for _, v := range row.Values {
			if v == nil {
				s += " nil"
			} else {
				s += fmt.Sprintf(" %.4f", *v)
			}
		}
		out = append(out, s)
	}
	return out
}

func TestRetentionSuite(t *testing.T) {
	storetest.RunRetention(t, func(t *testing.T, retention time.Duration) (apimeter.Store, func(time.Time) error) {
		st, err := Open(context.Background(), filepath.Join(t.TempDir(), "events.duckdb"), Options{DailyInterval: -1, Retention: retention, RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return st, func(now time.Time) error { _, err := st.DropExpired(context.Background(), now); return err }
	})
}
