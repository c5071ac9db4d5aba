package stats

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// Bench data: 10 million events over 30 days, 50 APIs, 5,000 users.
const (
	benchEvents = 10_000_000
	benchDays   = 30
	benchAPIs   = 50
	benchUsers  = 5000
	benchRoutes = 40
	// benchAgent marks rows made by the current generator; a kept file
	// without it is regenerated.
	benchAgent = "bench-client/2"
)

// benchInsert generates the events inside DuckDB from range(): hash(i*16 + k)
// gives each row independent pseudo-random draws (hash(i, k) does not: its
// low bits are shared between k, which tied the method to the route). Latencies are whole
// milliseconds with a long tail; 10% of calls fail; 2% are sampled events
// of weight 10. Rows are stored in request-time order, as they arrive.
const benchInsert = `
INSERT INTO events (id, org, env, ingested_at, ts, api_name, method, uri, path, route,
  status, latency_ms, target_latency_ms, req_size, resp_size,
  user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, detail)
SELECT
  'ev' || i, 'bench', 'prod', TIMESTAMP '2026-02-01 00:00:00', ts,
  'api-' || (hash(i * 16 + 1) % {APIS}),
  CASE WHEN hash(i * 16 + 7) % 4 = 0 THEN 'POST' ELSE 'GET' END,
  'https://api.example.com/res' || r || '/42', '/res' || r || '/42', '/res' || r || '/{id}',
  CASE WHEN hash(i * 16 + 4) % 100 < 90 THEN 200 WHEN hash(i * 16 + 4) % 100 < 95 THEN 404 WHEN hash(i * 16 + 4) % 100 < 98 THEN 500 ELSE 503 END,
  lat, floor(lat * 0.8), CAST(hash(i * 16 + 9) % 2000 AS BIGINT), CAST(hash(i * 16 + 10) % 20000 AS BIGINT),
  'user-' || (hash(i * 16 + 2) % {USERS}), 'company-' || (hash(i * 16 + 2) % {USERS} % 300), 'key-' || (hash(i * 16 + 2) % {USERS}),
  '10.0.' || (hash(i * 16 + 8) % 256) || '.1', '{AGENT}', 'http://backend.internal',
  CASE WHEN hash(i * 16 + 11) % 100 < 2 THEN 10 ELSE 1 END,
  '{"direction":"Incoming","req":{},"resp":{}}'
FROM (
  SELECT i,
    TIMESTAMP '2026-01-01 00:00:00' + to_microseconds(CAST(hash(i * 16 + 0) % {SPAN} AS BIGINT)) AS ts,
    hash(i * 16 + 3) % {ROUTES} AS r,
    CAST(CASE WHEN hash(i * 16 + 5) % 100 < 5 THEN 500 + hash(i * 16 + 6) % 4500 ELSE 5 + hash(i * 16 + 6) % 300 END AS DOUBLE) AS lat
  FROM range({N}) t(i)
)
ORDER BY ts`

// benchStore opens the bench database, generating it when absent. Set
// APIMETER_STATS_BENCH_DB to a file path to keep it between runs.
func benchStore(b *testing.B) *duckdb.Store {
	b.Helper()
	ctx := context.Background()
	path := os.Getenv("APIMETER_STATS_BENCH_DB")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.duckdb")
	} else if _, err := os.Stat(path); err == nil && !benchSchemaCurrent(b, ctx, path) {
		// A file kept from before a schema change: start again.
		b.Logf("%s has an older events table; regenerating", path)
		if err := errors.Join(os.Remove(path), removeIfExists(path+".wal")); err != nil {
			b.Fatal(err)
		}
	}
	st, err := duckdb.Open(ctx, path, duckdb.Options{DailyInterval: -1})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { st.Close() })
	var n int64
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM events WHERE org = 'bench' AND user_agent = ?", benchAgent).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != benchEvents {
		start := time.Now()
		if _, err := st.DB().ExecContext(ctx, "DELETE FROM events WHERE org = 'bench'"); err != nil {
			b.Fatal(err)
		}
		q := strings.NewReplacer("{N}", fmt.Sprint(benchEvents), "{APIS}", fmt.Sprint(benchAPIs), "{USERS}", fmt.Sprint(benchUsers),
			"{SPAN}", fmt.Sprint(int64(benchDays*24*time.Hour/time.Microsecond)), "{ROUTES}", fmt.Sprint(benchRoutes), "{AGENT}", benchAgent).Replace(benchInsert)
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			b.Fatalf("generate: %v", err)
		}
		if _, err := st.DB().ExecContext(ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
		b.Logf("generated %d events in %s", benchEvents, time.Since(start).Round(time.Millisecond))
	}
	// The rollups, as the store's background pass would have built them.
	start := time.Now()
	days, err := st.BuildRollups(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if days > 0 {
		if _, err := st.DB().ExecContext(ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
		var rows int64
		st.DB().QueryRowContext(ctx, "SELECT count(*) FROM rollup_api_latency_day WHERE org = 'bench'").Scan(&rows)
		b.Logf("folded %d hours into the rollups (%d rows in rollup_api_latency_day) in %s", days, rows, time.Since(start).Round(time.Millisecond))
	}
	return st
}

// benchSchemaCurrent says the events table in the file at path has the
// columns (names and types, in order) of the store's current schema.
func benchSchemaCurrent(b *testing.B, ctx context.Context, path string) bool {
	b.Helper()
	columns := func(dsn, ddl string) string {
		db, err := sql.Open("duckdb", dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if ddl != "" {
			if _, err := db.ExecContext(ctx, ddl); err != nil {
				b.Fatal(err)
			}
		}
		var cols string
		err = db.QueryRowContext(ctx, `SELECT coalesce(string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_index), '')
			FROM duckdb_columns() WHERE table_name = 'events'`).Scan(&cols)
		if err != nil {
			b.Fatal(err)
		}
		return cols
	}
	return columns(path, "") == columns("", duckdb.Schema)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// benchQueries are the three dashboard queries over the whole 30 days,
// then the filtered p95 over the last 7 days and the last day, which read
// only the row groups of their days (rows are in time order; DuckDB skips
// row groups whose ts range is outside the query's).
// floor is the simplest hand-written DuckDB query for the same question
// (no ranking, no weights where DuckDB has a built-in), shown as the
// engine's floor on this machine.
var benchQueries = []struct {
	name, dims, query string
	timeRange         string // "" for benchRange
	floor             string
}{
	{"MessagesByProxyPerDay", "apiproxy", "select=sum(message_count)&timeUnit=day", "",
		"SELECT api_name, CAST(ts AS DATE), SUM(weight) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= '2026-01-01' AND ts < '2026-01-31' GROUP BY 1, 2"},
	{"Top10UsersByMessages", "developer", "select=sum(message_count)&sortby=sum(message_count)&topk=10", "",
		"SELECT user_id, SUM(weight) AS n FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= '2026-01-01' AND ts < '2026-01-31' GROUP BY 1 ORDER BY n DESC LIMIT 10"},
	{"FilteredP95ByRoute", "route", benchP95, "",
		"SELECT route, quantile_disc(latency_ms, 0.95) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= '2026-01-01' AND ts < '2026-01-31' AND method = 'GET' AND status < 500 GROUP BY 1"},
	{"FilteredP95ByRouteLast7Days", "route", benchP95, "01/24/2026 00:00~01/31/2026 00:00",
		"SELECT route, quantile_disc(latency_ms, 0.95) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= '2026-01-24' AND ts < '2026-01-31' AND method = 'GET' AND status < 500 GROUP BY 1"},
	{"FilteredP95ByRouteLastDay", "route", benchP95, "01/30/2026 00:00~01/31/2026 00:00",
		"SELECT route, quantile_disc(latency_ms, 0.95) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= '2026-01-30' AND ts < '2026-01-31' AND method = 'GET' AND status < 500 GROUP BY 1"},
}

const benchP95 = "select=p95(total_response_time)&filter=(request_verb eq 'GET' and response_status_code lt 500)"

const benchRange = "01/01/2026 00:00~01/31/2026 00:00"

// BenchmarkMetricsAPI runs each query through the HTTP API (a real
// loopback server: parse, plan, SQL, JSON) and the same SQL directly on
// DuckDB, alternating, and reports the median of each and their ratio,
// with the simplest hand-written query for the same question as the floor,
// and the CPU time the raw query used (all threads), which does not depend
// on what else the machine runs.
// Target: api/raw <= 1.25 and api < 150 ms.
//
//	go test ./stats -run '^$' -bench MetricsAPI -benchtime 20x
func BenchmarkMetricsAPI(b *testing.B) {
	st := benchStore(b)
	// APIMETER_STATS_BENCH_THREADS sets DuckDB's worker threads for the
	// run (its default is one per core).
	if n := os.Getenv("APIMETER_STATS_BENCH_THREADS"); n != "" {
		threads, err := strconv.Atoi(n)
		if err != nil || threads < 1 {
			b.Fatalf("APIMETER_STATS_BENCH_THREADS=%q: want a positive number", n)
		}
		if _, err := st.DB().ExecContext(context.Background(), fmt.Sprintf("SET threads = %d", threads)); err != nil {
			b.Fatal(err)
		}
	}
	h := NewHandler(Config{DB: st.DB(), Rollups: true, QuotaPerMinute: -1})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// The same handler behind the key check, as apimeter serve runs it.
	keyed, key := keyedServer(b, h)
	defer keyed.Close()
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
			// The raw side runs the SQL the API runs, rollups included.
			if f, ok := Eligible(p); ok {
				if p.Cover, err = FindCover(ctx, st.DB(), p, f); err != nil {
					b.Fatal(err)
				}
			}
			q := Build(p, DuckDB{})
			u := srv.URL + "/v1/o/bench/environments/prod/stats/" + bq.dims + "?" + v.Encode()
			// Warm both paths once.
			rawRows := runRaw(b, ctx, st.DB(), q)
			body := runAPI(b, u)
			floor := Query{SQL: bq.floor}
			runRaw(b, ctx, st.DB(), floor)
			ku := keyed.URL + strings.TrimPrefix(u, srv.URL)
			runAPIKey(b, ku, key)
			var api, raw, flo, rawCPU, withKey []time.Duration
			b.ResetTimer()
			for i := range b.N {
				c0 := processCPU()
				t0 := time.Now()
				runRaw(b, ctx, st.DB(), q)
				t1 := time.Now()
				rawCPU = append(rawCPU, processCPU()-c0)
				// The API with and without the key check, in turns first.
				var a, k time.Duration
				if i%2 == 0 {
					a, k = timed(func() { runAPI(b, u) }), timed(func() { runAPIKey(b, ku, key) })
				} else {
					k, a = timed(func() { runAPIKey(b, ku, key) }), timed(func() { runAPI(b, u) })
				}
				t2 := time.Now()
				runRaw(b, ctx, st.DB(), floor)
				t3 := time.Now()
				raw = append(raw, t1.Sub(t0))
				api = append(api, a)
				withKey = append(withKey, k)
				flo = append(flo, t3.Sub(t2))
			}
			b.StopTimer()
			ma, mr := median(api), median(raw)
			b.ReportMetric(float64(median(withKey))/1e6, "keyed-api-ms")
			b.ReportMetric(float64(median(withKey))/float64(ma), "keyed/api")
			b.ReportMetric(float64(median(flo))/1e6, "floor-ms")
			// CPU time of the raw query, all threads: what the query costs
			// whatever else runs on the machine; half of it is the wall
			// time two idle cores could reach.
			b.ReportMetric(float64(median(rawCPU))/1e6, "raw-cpu-ms")
			b.ReportMetric(float64(ma)/1e6, "api-ms")
			b.ReportMetric(float64(mr)/1e6, "raw-ms")
			b.ReportMetric(float64(ma)/float64(mr), "api/raw")
			b.ReportMetric(float64(ma)/float64(150*time.Millisecond), "api/150ms")
			b.Logf("%s: %d rows, %d-byte answer; median api %s raw %s", bq.name, rawRows, len(body), ma.Round(time.Microsecond), mr.Round(time.Microsecond))
		})
	}
}

func runRaw(b *testing.B, ctx context.Context, db *sql.DB, q Query) int {
	rows, err := db.QueryContext(ctx, q.SQL, q.Args...)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return n
}

func runAPI(b *testing.B, u string) []byte {
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"environments"`) {
		b.Fatalf("GET %s: %s %s %v", u, resp.Status, body, err)
	}
	return body
}

func timed(f func()) time.Duration {
	t := time.Now()
	f()
	return time.Since(t)
}

// keyedServer serves h behind the key check of a server.Server, with a read
// key of org bench; it returns the server and the key.
func keyedServer(b *testing.B, h *Handler) (*httptest.Server, string) {
	dir := b.TempDir()
	_, key, err := auth.Create(dir, auth.Spec{Org: "bench", Scope: auth.ScopeRead})
	if err != nil {
		b.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(server.Config{Auth: auth.New(auth.Config{Keys: keys})})
	h.Register(srv)
	return httptest.NewServer(srv), key
}

func runAPIKey(b *testing.B, u, key string) []byte {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"environments"`) {
		b.Fatalf("GET %s: %s %s %v", u, resp.Status, body, err)
	}
	return body
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
