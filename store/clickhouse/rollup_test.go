package clickhouse

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
	"github.com/apimeter/apimeter/stats"
)

// TestRollupMigrationFoldsStoredEvents: a database whose events were
// stored before the rollups existed gets them folded by the migration that
// creates the tables, so that the Metrics API's answers from the rollups
// equal those from the events table alone.
func TestRollupMigrationFoldsStoredEvents(t *testing.T) {
	ctx := context.Background()
	st, dsn := openTest(t, Options{})
	at := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var evs []apimeter.Event
	for i := range 500 {
		evs = append(evs, apimeter.Event{ID: fmt.Sprint("m", i), Org: "o", Env: "e", APIName: "api", Method: "GET", Path: "/x", Route: "/x",
			RequestTime: at.Add(time.Duration(i) * 7 * time.Minute), Status: []int{200, 404, 500}[i%3], LatencyMs: float64(1 + i%37),
			UserID: fmt.Sprint("u", i%5), Weight: int64(1 + i%2), RequestSize: -1, ResponseSize: -1})
	}
	if _, err := st.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// Back to the schema before the rollups: their tables and views gone,
	// the version table saying so.
	before := len(migrations) - 3*len(rollup.Grains)*len(rollup.Families)
	for _, f := range rollup.Families {
		for _, g := range rollup.Grains {
			for _, q := range []string{"DROP TABLE " + f.Table(g) + "_mv", "DROP TABLE " + f.Table(g)} {
				if err := st.conn.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := st.conn.Exec(ctx, "DROP TABLE schema_version"); err != nil {
		t.Fatal(err)
	}
	if err := st.conn.Exec(ctx, "CREATE TABLE schema_version (version UInt32, applied_at DateTime('UTC')) ENGINE = MergeTree ORDER BY version"); err != nil {
		t.Fatal(err)
	}
	b, err := st.conn.PrepareBatch(ctx, "INSERT INTO schema_version (version, applied_at)")
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= before; v++ {
		if err := b.Append(uint32(v), time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatalf("reopen (migrations): %v", err)
	}
	defer st.Close()
	for _, c := range []struct{ dims, sel, table string }{
		{"user_id", "sum(message_count),sum(is_error)", "rollup_user_day"},
		{"route", "p95(total_response_time),avg(total_response_time)", "rollup_api_latency_day"},
	} {
		q := url.Values{"select": {c.sel}, "timeRange": {"03/02/2026 00:00~03/05/2026 00:00"}, "timeUnit": {"day"}}
		p, err := stats.Parse("o", "e", c.dims, q)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := stats.Run(ctx, st.DB(), stats.ClickHouse{}, p)
		if err != nil {
			t.Fatal(err)
		}
		rolled, err := stats.RunRollups(ctx, st.DB(), stats.ClickHouse{}, p)
		if err != nil {
			t.Fatal(err)
		}
		notice := stats.Render(p, stats.ClickHouse{}, rolled).MetaData.Notices[1]
		if notice != "Table used: "+c.table {
			t.Errorf("%s: %s, want %s", c.sel, notice, c.table)
		}
		if fmt.Sprint(render(raw)) != fmt.Sprint(render(rolled)) || len(raw.Rows) == 0 {
			t.Errorf("%s by %s: rollups %v, events %v", c.sel, c.dims, render(rolled), render(raw))
		}
	}
}

func render(r *stats.Result) []string {
	var out []string
	for _, row := range r.Rows {
		s := fmt.Sprint(row.Dims, row.Bucket.Unix())
		for _, v := range row.Values {
			s += " " + stats.FormatNumber(v)
		}
		out = append(out, s)
	}
	return out
}
