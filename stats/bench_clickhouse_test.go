package stats

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// benchInsertClickHouse generates the bench events inside ClickHouse from
// numbers(): the distributions of benchInsert (DuckDB), drawn with
// cityHash64(i*16 + k).
const benchInsertClickHouse = `
INSERT INTO events (id, org, env, ingested_at, ts, ts_us, api_name, method, uri, path, route,
  status, latency_ms, target_latency_ms, req_size, resp_size,
  user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, api_version, detail)
SELECT
  concat('ev', toString(i)), 'bench', 'prod', toDateTime('2026-02-01 00:00:00', 'UTC'), toDateTime(intDiv(us, 1000000), 'UTC'), us,
  concat('api-', toString(cityHash64(i * 16 + 1) % {APIS})),
  if(cityHash64(i * 16 + 7) % 4 = 0, 'POST', 'GET'),
  concat('https://api.example.com/res', toString(r), '/42'), concat('/res', toString(r), '/42'), concat('/res', toString(r), '/{id}'),
  toInt32(multiIf(h4 < 90, 200, h4 < 95, 404, h4 < 98, 500, 503)),
  lat, floor(lat * 0.8), toInt64(cityHash64(i * 16 + 9) % 2000), toInt64(cityHash64(i * 16 + 10) % 20000),
  concat('user-', toString(u)), concat('company-', toString(u % 300)), concat('key-', toString(u)),
  concat('10.0.', toString(cityHash64(i * 16 + 8) % 256), '.1'), '{AGENT}', 'http://backend.internal',
  toInt64(if(cityHash64(i * 16 + 11) % 100 < 2, 10, 1)), '',
  '{"direction":"Incoming","req":{},"resp":{}}'
FROM (
  SELECT number AS i,
    toInt64(1767225600000000 + cityHash64(i * 16) % {SPAN}) AS us,
    cityHash64(i * 16 + 3) % {ROUTES} AS r,
    cityHash64(i * 16 + 2) % {USERS} AS u,
    cityHash64(i * 16 + 4) % 100 AS h4,
    toFloat64(if(cityHash64(i * 16 + 5) % 100 < 5, 500 + cityHash64(i * 16 + 6) % 4500, 5 + cityHash64(i * 16 + 6) % 300)) AS lat
  FROM numbers({HI}) WHERE number >= {LO}
)`

// benchFloorClickHouse are the simplest hand-written ClickHouse queries for
// the questions of benchQueries (no FINAL, no ranking, no weights where
// ClickHouse has a built-in), by name.
var benchFloorClickHouse = map[string]string{
	"MessagesByProxyPerDay":       "SELECT api_name, toDate(ts), sum(weight) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= toDateTime('2026-01-01 00:00:00') AND ts < toDateTime('2026-01-31 00:00:00') GROUP BY api_name, toDate(ts)",
	"Top10UsersByMessages":        "SELECT user_id, sum(weight) AS n FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= toDateTime('2026-01-01 00:00:00') AND ts < toDateTime('2026-01-31 00:00:00') GROUP BY user_id ORDER BY n DESC LIMIT 10",
	"FilteredP95ByRoute":          "SELECT route, quantileExact(0.95)(latency_ms) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= toDateTime('2026-01-01 00:00:00') AND ts < toDateTime('2026-01-31 00:00:00') AND method = 'GET' AND status < 500 GROUP BY route",
	"FilteredP95ByRouteLast7Days": "SELECT route, quantileExact(0.95)(latency_ms) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= toDateTime('2026-01-24 00:00:00') AND ts < toDateTime('2026-01-31 00:00:00') AND method = 'GET' AND status < 500 GROUP BY route",
	"FilteredP95ByRouteLastDay":   "SELECT route, quantileExact(0.95)(latency_ms) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= toDateTime('2026-01-30 00:00:00') AND ts < toDateTime('2026-01-31 00:00:00') AND method = 'GET' AND status < 500 GROUP BY route",
}

// benchClickHouse opens the bench database on ClickHouse, generating the
// events when it does not hold them. APIMETER_CLICKHOUSE_BENCH_DSN names a
// server to use (and keep the data on between runs); without it the test
// binary's own server is started. APIMETER_CLICKHOUSE_BENCH_EVENTS sets a
// smaller event count on a machine that cannot load 10 million.
func benchClickHouse(b *testing.B) (*clickhouse.Store, int) {
	b.Helper()
	ctx := context.Background()
	n := benchEvents
	if s := os.Getenv("APIMETER_CLICKHOUSE_BENCH_EVENTS"); s != "" {
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			b.Fatalf("APIMETER_CLICKHOUSE_BENCH_EVENTS=%q: want a positive number", s)
		}
	}
	dsn := os.Getenv("APIMETER_CLICKHOUSE_BENCH_DSN")
	if dsn == "" {
		dsn = chtest.Shared(b).DSN("bench")
	}
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { st.Close() })
	var have uint64
	if err := st.Conn().QueryRow(ctx, "SELECT count() FROM events WHERE org = 'bench' AND user_agent = ?", benchAgent).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have != uint64(n) {
		start := time.Now()
		if err := st.Conn().Exec(ctx, "TRUNCATE TABLE events"); err != nil {
			b.Fatal(err)
		}
		// Half a million rows per INSERT keeps each under the driver's read
		// timeout on a busy machine.
		for lo := 0; lo < n; lo += 500_000 {
			q := strings.NewReplacer("{LO}", fmt.Sprint(lo), "{HI}", fmt.Sprint(min(lo+500_000, n)), "{APIS}", fmt.Sprint(benchAPIs), "{USERS}", fmt.Sprint(benchUsers),
				"{SPAN}", fmt.Sprint(int64(benchDays*24*time.Hour/time.Microsecond)), "{ROUTES}", fmt.Sprint(benchRoutes), "{AGENT}", benchAgent).Replace(benchInsertClickHouse)
			if err := st.Conn().Exec(ctx, q); err != nil {
				b.Fatalf("generate: %v", err)
			}
		}
		loaded := time.Since(start)
		// Merge each month's parts into one, as ClickHouse's background
		// merges end up doing, so that runs do not depend on merges under way.
		if err := st.Conn().Exec(ctx, "OPTIMIZE TABLE events FINAL"); err != nil {
			// The server goes on merging after the driver's read timeout.
			b.Logf("optimize: %v", err)
		}
		b.Logf("generated %d events in %s, merged in %s", n, loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
	}
	return st, n
}

// BenchmarkMetricsAPIClickHouse is BenchmarkMetricsAPI on ClickHouse: each
// query through the HTTP API and the same SQL sent straight to ClickHouse,
// alternating, with medians and their ratio, and the hand-written floor.
// Target: api/raw <= 1.25.
//
//	go test ./stats -run '^$' -bench MetricsAPIClickHouse -benchtime 10x
func BenchmarkMetricsAPIClickHouse(b *testing.B) {
	st, n := benchClickHouse(b)
	b.Logf("%d events", n)
	d := ClickHouse{}
	h := NewHandler(Config{DB: st.DB(), Dialect: d, QuotaPerMinute: -1})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	for _, bq := range benchQueries {
		b.Run(bq.name, func(b *testing.B) {
			v, err := url.ParseQuery(bq.query)
			if err != nil {
				b.Fatal(err)
			}
			tr := bq.timeRange
			if tr == "" {
				tr = benchRange
			}
			v.Set("timeRange", tr)
			p, err := Parse("bench", "prod", bq.dims, v)
			if err != nil {
				b.Fatal(err)
			}
			q := Build(p, d)
			u := srv.URL + "/v1/o/bench/environments/prod/stats/" + bq.dims + "?" + v.Encode()
			rawRows := runRaw(b, ctx, st.DB(), q)
			body := runAPI(b, u)
			floor := Query{SQL: benchFloorClickHouse[bq.name]}
			runRaw(b, ctx, st.DB(), floor)
			var api, raw, flo []time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				runRaw(b, ctx, st.DB(), q)
				t1 := time.Now()
				runAPI(b, u)
				t2 := time.Now()
				runRaw(b, ctx, st.DB(), floor)
				t3 := time.Now()
				raw = append(raw, t1.Sub(t0))
				api = append(api, t2.Sub(t1))
				flo = append(flo, t3.Sub(t2))
			}
			b.StopTimer()
			ma, mr := median(api), median(raw)
			b.ReportMetric(float64(median(flo))/1e6, "floor-ms")
			b.ReportMetric(float64(ma)/1e6, "api-ms")
			b.ReportMetric(float64(mr)/1e6, "raw-ms")
			b.ReportMetric(float64(ma)/float64(mr), "api/raw")
			b.Logf("%s: %d rows, %d-byte answer; median api %s raw %s", bq.name, rawRows, len(body), ma.Round(time.Microsecond), mr.Round(time.Microsecond))
		})
	}
}
