package billing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/duckdb"
)

// BenchmarkExport: a month's export of one SUM meter over 200,000 events
// of 100 customers on DuckDB, against its floor, the meter query alone
// (the export is that query plus a scan of the counted events), and the
// statement of one customer.
func BenchmarkExport(b *testing.B) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(b.TempDir(), "b.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	u, err := st.OpenUsage(ctx, duckdb.UsageOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { u.Close(); st.Close() }()
	m := meter.Meter{Org: "o", Env: "prod", ID: "t", Slug: "tokens", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens"}
	if err := u.PutMeter(ctx, m); err != nil {
		b.Fatal(err)
	}
	const n = 200_000
	for i := 0; i < n; i += 10_000 {
		var evs []meter.Event
		for j := i; j < i+10_000; j++ {
			body, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprint(j), "source": "b", "type": "tokens",
				"subject": fmt.Sprintf("c%03d", j%100), "time": nov.From.Add(time.Duration(j) * 12 * time.Second).Format(time.RFC3339),
				"data": map[string]any{"tokens": j % 1000}})
			e, err := meter.Decode(meter.ContentTypeEvent, body, "o", "prod", time.Now(), meter.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, e...)
		}
		if _, err := u.AppendUsage(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	bl := billing.New(billing.Config{Usage: u, Dialect: meter.DuckDB{}, Secret: []byte("0123456789abcdef0123456789abcdef")})
	b.Run("export", func(b *testing.B) {
		for b.Loop() {
			if lines, err := bl.Export(ctx, "o", "prod", nov); err != nil || len(lines) != 100 {
				b.Fatal(len(lines), err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("meter-query-floor", func(b *testing.B) {
		for b.Loop() {
			res, err := meter.Query(ctx, u.DB(), meter.DuckDB{}, &m, meter.Params{From: nov.From, To: nov.To, TimeZone: time.UTC, GroupBy: []string{"subject"}})
			if err != nil || len(res.Data) != 100 {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("statement", func(b *testing.B) {
		for b.Loop() {
			if ce, err := bl.Statement(ctx, "o", "prod", "tokens", "c007", nov); err != nil || ce.Statement.Events != n/100 {
				b.Fatal(err)
			}
		}
	})
}
