package dataset

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/duckdb"
)

// load writes cfg's events with the DuckDB statements into a new store.
func load(t testing.TB, cfg Config) *duckdb.Store {
	t.Helper()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gen := New(cfg).DuckDB()
	for _, q := range gen.Setup {
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range gen.Chunks {
		if _, err := st.DB().ExecContext(ctx, gen.Insert, "demo", "prod", c.From, c.To); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range gen.Cleanup {
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestDuckDBShape checks the events DuckDB generates as TestShape checks
// the Generator's: as many as asked, each minute holding what Fill puts
// in it, in time order, unique ids, the users, companies, keys, APIs,
// routes, error share and whole-millisecond latencies of the model; and
// that the store reads them back as events and folds them.
func TestDuckDBShape(t *testing.T) {
	cfg := Config{Events: 100000, End: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Span: 7 * 24 * time.Hour, Seed: 1}
	st := load(t, cfg)
	var n, ids, users, companies, keys, apis, routes, disorder, errs, fractional int64
	var first, last time.Time
	err := st.DB().QueryRow(`SELECT count(*), count(DISTINCT id), count(DISTINCT user_id), count(DISTINCT company_id), count(DISTINCT api_key_id),
  count(DISTINCT api_name), count(DISTINCT route), count(*) FILTER (WHERE ts < prev), count(*) FILTER (WHERE status >= 400),
  count(*) FILTER (WHERE latency_ms <> round(latency_ms) OR latency_ms < 1), min(ts), max(ts)
FROM (SELECT *, lag(ts) OVER (ORDER BY rowid) AS prev FROM events)`).Scan(&n, &ids, &users, &companies, &keys, &apis, &routes, &disorder, &errs, &fractional, &first, &last)
	if err != nil {
		t.Fatal(err)
	}
	if n != cfg.Events || ids != n {
		t.Fatalf("%d events, %d ids, want %d", n, ids, cfg.Events)
	}
	if disorder != 0 {
		t.Errorf("%d events earlier than the one stored before them", disorder)
	}
	start := New(cfg).Config().Start()
	if first.Before(start) || !last.Before(cfg.End) {
		t.Errorf("events from %s to %s, outside [%s, %s)", first, last, start, cfg.End)
	}
	if apis != 8 || routes != 40 {
		t.Errorf("%d APIs and %d routes, want 8 and 40", apis, routes)
	}
	if users < 5000 || users > 50000 || companies > 2000 || companies < 1000 || keys <= users {
		t.Errorf("%d users, %d companies, %d keys", users, companies, keys)
	}
	if errs < n/100 || errs > n/5 {
		t.Errorf("%d errors of %d", errs, n)
	}
	if fractional != 0 {
		t.Errorf("%d latencies not whole milliseconds", fractional)
	}
	// The busiest user makes a few per cent of the calls (Zipf, s = 1.1).
	var top int64
	if err := st.DB().QueryRow(`SELECT max(c) FROM (SELECT count(*) AS c FROM events GROUP BY user_id)`).Scan(&top); err != nil {
		t.Fatal(err)
	}
	if top < n/200 || top > n/10 {
		t.Errorf("busiest user has %d of %d calls", top, n)
	}
	// Each minute holds the events the Generator puts in it.
	g := New(cfg)
	buf := make([]apimeter.Event, 4096)
	want := map[int64]int64{}
	for k := g.Fill(buf); k > 0; k = g.Fill(buf) {
		for _, e := range buf[:k] {
			want[e.RequestTime.Unix()/60]++
		}
	}
	rows, err := st.DB().Query(`SELECT epoch(ts)::BIGINT // 60, count(*) FROM events GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]int64{}
	for rows.Next() {
		var m, c int64
		if err := rows.Scan(&m, &c); err != nil {
			t.Fatal(err)
		}
		got[m] = c
	}
	rows.Close()
	diff := 0
	for m, c := range want {
		if got[m] != c {
			diff++
		}
	}
	if diff > len(want)/100 || len(got) != len(want) {
		t.Errorf("%d of %d minutes differ from the Generator's counts (%d minutes stored)", diff, len(want), len(got))
	}
	// Read back as events, and folded.
	evs, err := st.Events(context.Background(), apimeter.EventFilter{Org: "demo", Env: "prod", Limit: 5})
	if err != nil || len(evs) != 5 || evs[0].Direction != apimeter.Incoming || evs[0].UserID == "" {
		t.Fatalf("events read back: %v, %+v", err, evs)
	}
	if hours, err := st.BuildRollups(context.Background()); err != nil || hours != 7*24 {
		t.Fatalf("folded %d hours: %v", hours, err)
	}
}

// BenchmarkDuckDBLoad compares the dataset's INSERT ... SELECT with
// DuckDB's fastest load of as many similar rows (DuckDBFloor), in the same
// run. One op is one event; the fold of the rollups is not included.
//
//	go test ./internal/dataset -run XXX -bench DuckDBLoad -benchtime 1000000x
func BenchmarkDuckDBLoad(b *testing.B) {
	cfg := Config{Events: int64(b.N), Span: 30 * 24 * time.Hour, Seed: 1}
	b.Run("dataset", func(b *testing.B) {
		cfg.Events = int64(b.N)
		load(b, cfg)
	})
	b.Run("floor", func(b *testing.B) {
		cfg.Events = int64(b.N)
		st, err := duckdb.Open(context.Background(), filepath.Join(b.TempDir(), "events.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		if _, err := st.DB().Exec(New(cfg).DuckDBFloor(), "demo", "prod"); err != nil {
			b.Fatal(err)
		}
	})
}
