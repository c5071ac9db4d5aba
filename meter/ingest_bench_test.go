package meter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/dataset"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// BenchmarkIngestWithAggregates measures what the meters' aggregates cost
// at ingest: usage events (AppendUsage) and API calls (the collector's
// Append) stored by 8 writers in batches of 500, each round once into a
// scope with meters (usage events of a type with SUM, COUNT, AVG and
// LATEST meters grouped by two keys; calls of an org with COUNT and SUM
// meters over calls grouped by route) and once into a scope without,
// alternating, while fold passes run back to back (one a second, sixty
// times the default). The events are of the last 24 hours, so every pass
// refolds the hours they land in: the worst case of late events.
// APIMETER_BENCH_INGEST sets the events per round (100,000).
func BenchmarkIngestWithAggregates(b *testing.B) {
	per := 100_000
	if v := os.Getenv("APIMETER_BENCH_INGEST"); v != "" {
		per, _ = strconv.Atoi(v)
	}
	b.Run("DuckDB", func(b *testing.B) {
		st, err := duckdb.Open(context.Background(), filepath.Join(b.TempDir(), "i.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), duckdb.UsageOptions{FoldInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		ingestRounds(b, per, u, st, u.FoldMeters)
	})
	b.Run("ClickHouse", func(b *testing.B) {
		dsn := chtest.Shared(b).DSN(chtest.Database(b))
		st, err := clickhouse.Open(context.Background(), dsn, clickhouse.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), clickhouse.UsageOptions{FoldInterval: -1, FoldMargin: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		ingestRounds(b, per, u, st, u.FoldMeters)
	})
}

func ingestRounds(b *testing.B, per int, u meter.Store, st apimeter.Store, fold func(context.Context) error) {
	const rounds, clients, batch = 2, 8, 500
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Hour)
	for _, m := range []meter.Meter{
		{Slug: "t_sum", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens"},
		{Slug: "t_count", EventType: "tokens", Aggregation: meter.Count},
		{Slug: "t_avg", EventType: "tokens", Aggregation: meter.Avg, ValueProperty: "$.tokens"},
		{Slug: "t_latest", EventType: "tokens", Aggregation: meter.Latest, ValueProperty: "$.tokens"},
		{Slug: "calls", EventType: meter.CallType, Aggregation: meter.Count},
		{Slug: "bytes", EventType: meter.CallType, Aggregation: meter.Sum, ValueProperty: "$.responseBytes"},
	} {
		m.Org, m.Env, m.ID = "on", "prod", meter.NewID()
		m.GroupBy = map[string]string{"model": "$.model", "user": "$.user"}
		if m.EventType == meter.CallType {
			m.GroupBy = map[string]string{"route": "$.route"}
		}
		if err := u.PutMeter(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	// The batches, made before the clock starts: [round][on/off].
	type work struct {
		usage [][]meter.Event
		calls [][]apimeter.Event
	}
	ws := make([][2]work, rounds)
	seq := 0
	for r := range rounds {
		for k, org := range []string{"on", "off"} {
			var w work
			for sent := 0; sent < per; sent += batch {
				evs := make([]map[string]any, batch)
				for i := range evs {
					seq++
					evs[i] = map[string]any{"specversion": "1.0", "id": strconv.Itoa(seq), "source": "bench", "type": "tokens",
						"subject": "customer-" + strconv.Itoa(seq%500),
						"time":    end.Add(-time.Duration(seq%86400) * time.Second).Format(time.RFC3339),
						"data":    map[string]any{"tokens": seq % 1000, "model": []string{"gpt-4", "claude"}[seq%2], "user": "u" + strconv.Itoa(seq%50)}}
				}
				body, _ := json.Marshal(evs)
				got, err := meter.Decode(meter.ContentTypeBatch, body, org, "prod", time.Now(), meter.Limits{MaxEvents: batch})
				if err != nil {
					b.Fatal(err)
				}
				w.usage = append(w.usage, got)
			}
			g := dataset.New(dataset.Config{Events: int64(per), Org: org, Span: 24 * time.Hour, End: end, Seed: uint64(10 + r*2 + k), Users: 5000, Companies: 200})
			for {
				evs := make([]apimeter.Event, batch)
				n := g.Fill(evs)
				if n == 0 {
					break
				}
				w.calls = append(w.calls, evs[:n])
			}
			ws[r][k] = w
		}
	}
	run := func(n int, do func(i int) error) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := do(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	// Fold passes back to back while the rounds run.
	stop := make(chan struct{})
	done := make(chan struct{})
	var passes atomic.Int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			if err := fold(ctx); err != nil {
				b.Error(err)
				return
			}
			passes.Add(1)
		}
	}()
	var t [2][2]time.Duration // [usage/calls][on/off]
	b.ResetTimer()
	for r := range rounds {
		for k := range 2 {
			w := ws[r][k]
			t[0][k] += run(len(w.usage), func(i int) error { _, err := u.AppendUsage(ctx, w.usage[i]); return err })
			t[1][k] += run(len(w.calls), func(i int) error { _, err := st.Append(ctx, w.calls[i]); return err })
		}
	}
	b.StopTimer()
	close(stop)
	<-done
	n := float64(rounds * per)
	b.ReportMetric(n/t[0][0].Seconds(), "usage-metered-ev/s")
	b.ReportMetric(n/t[0][1].Seconds(), "usage-unmetered-ev/s")
	b.ReportMetric(t[0][1].Seconds()/t[0][0].Seconds(), "usage-metered/unmetered")
	b.ReportMetric(n/t[1][0].Seconds(), "calls-metered-ev/s")
	b.ReportMetric(n/t[1][1].Seconds(), "calls-unmetered-ev/s")
	b.ReportMetric(t[1][1].Seconds()/t[1][0].Seconds(), "calls-metered/unmetered")
	b.ReportMetric(float64(passes.Load()), "fold-passes")
	fmt.Fprintf(os.Stderr, "%s: %d fold passes\n", b.Name(), passes.Load())
}
