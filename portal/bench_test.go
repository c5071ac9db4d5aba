package portal_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
)

// benchInsert generates events inside DuckDB from range(), as the Metrics
// API's benchmark does (stats/bench_test.go): 5,000 users in 300
// companies, 40 routes, 50 APIs, whole-millisecond latencies with a long
// tail, 10% errors, 2% sampled events of weight 10, over the 30 days
// before {END} (the time it runs), each ingested two seconds after its
// request time, in request-time order.
const benchInsert = `
INSERT INTO events (id, org, env, ingested_at, ts, api_name, method, uri, path, route,
  status, latency_ms, target_latency_ms, req_size, resp_size,
  user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, detail)
SELECT
  'ev' || i, 'bench', 'prod', ts + INTERVAL 2 SECOND, ts,
  'api-' || (hash(i * 16 + 1) % 50),
  CASE WHEN hash(i * 16 + 7) % 4 = 0 THEN 'POST' ELSE 'GET' END,
  'https://api.example.com/res' || r || '/42', '/res' || r || '/42', '/res' || r || '/{id}',
  CASE WHEN hash(i * 16 + 4) % 100 < 90 THEN 200 WHEN hash(i * 16 + 4) % 100 < 95 THEN 404 WHEN hash(i * 16 + 4) % 100 < 98 THEN 500 ELSE 503 END,
  lat, floor(lat * 0.8), CAST(hash(i * 16 + 9) % 2000 AS BIGINT), CAST(hash(i * 16 + 10) % 20000 AS BIGINT),
  'user-' || (hash(i * 16 + 2) % 5000), 'company-' || (hash(i * 16 + 2) % 5000 % 300), 'fp_key' || (hash(i * 16 + 2) % 5000),
  '10.0.' || (hash(i * 16 + 8) % 256) || '.1', 'bench-client/portal', 'http://backend.internal',
  CASE WHEN hash(i * 16 + 11) % 100 < 2 THEN 10 ELSE 1 END,
  '{"direction":"Incoming","req":{},"resp":{}}'
FROM (
  SELECT i,
    TIMESTAMP '{END}' - INTERVAL 30 DAY + to_microseconds(CAST(hash(i * 16 + 0) % 2592000000000 AS BIGINT)) AS ts,
    hash(i * 16 + 3) % 40 AS r,
    CAST(CASE WHEN hash(i * 16 + 5) % 100 < 5 THEN 500 + hash(i * 16 + 6) % 4500 ELSE 5 + hash(i * 16 + 6) % 300 END AS DOUBLE) AS lat
  FROM range({N}) t(i)
)
ORDER BY ts`

// benchDir returns a data directory whose events.duckdb holds the bench
// events (APIMETER_PORTAL_BENCH_EVENTS, default 1,000,000), generated
// when absent. APIMETER_PORTAL_BENCH_DIR keeps it between runs, and
// `apimeter serve --data DIR` then serves it (docs/performance.md).
func benchDir(b *testing.B) string {
	b.Helper()
	n := 1_000_000
	if v := os.Getenv("APIMETER_PORTAL_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := os.Getenv("APIMETER_PORTAL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var have int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM events WHERE org = 'bench'").Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have != n {
		start := time.Now()
		if _, err := st.DB().ExecContext(ctx, "DELETE FROM events WHERE org = 'bench'"); err != nil {
			b.Fatal(err)
		}
		// Up to a few seconds ago: an event ingested later than the fold
		// that follows would make its hour late, read from the events.
		end := time.Now().UTC().Add(-5 * time.Second).Truncate(time.Second)
		q := strings.NewReplacer("{N}", strconv.Itoa(n), "{END}", end.Format("2006-01-02 15:04:05")).Replace(benchInsert)
		if _, err := st.DB().ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
		// What the background pass would have folded by now.
		if _, err := st.BuildRollups(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := st.DB().ExecContext(ctx, "CHECKPOINT"); err != nil {
			b.Fatal(err)
		}
		b.Logf("generated and folded %d events in %v", n, time.Since(start).Round(time.Second))
	}
	return dir
}

// BenchmarkPortalUsage measures GET /portal/api/v1/usage (what the page's
// first view waits for) for a company token and a user token, this
// period and the previous one, through the handler ("api"), GET
// /portal/api/v1/view (the page's one request: usage and recent calls at
// once, "view") and the recent calls alone ("events"), next to the
// six SQL statements of its plans sent straight to the events table at
// once ("sql", what the handler did before it copied the customer's rows
// once), and the floor: one pass that reads the columns the usage needs
// of the customer's rows of the period, and nothing more ("scan").
func BenchmarkPortalUsage(b *testing.B) {
	dir := benchDir(b)
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	toks, err := token.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ps := identity.Periods{}
	h := portal.New(portal.Config{Tokens: toks, DB: st.DB(), Dialect: stats.DuckDB{}, Events: st, Periods: ps, RatePerMinute: -1})
	mux := server.New(server.Config{Store: st})
	h.Register(mux)
	for _, c := range []token.Customer{{Kind: token.KindCompany, ID: "company-7"}, {Kind: token.KindUser, ID: "user-7"}} {
		_, secret, err := toks.Create(ctx, token.Spec{Org: "bench", Env: "prod", Customer: c, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		for _, period := range []string{"current", "previous"} {
			// api: the usage route; view: the page's one request of its
			// first view, the usage and the 50 recent calls read at once;
			// events: the recent calls alone.
			for _, r := range []struct{ name, route string }{{"api", "usage?period=" + period}, {"view", "view?period=" + period}, {"events", "events?limit=50"}} {
				if r.name == "events" && period != "current" {
					continue
				}
				b.Run(c.Kind+"/"+period+"/"+r.name, func(b *testing.B) {
					for b.Loop() {
						req := httptest.NewRequest("GET", "/portal/api/v1/"+r.route, nil)
						req.Header.Set("Authorization", "Bearer "+secret)
						rec := httptest.NewRecorder()
						mux.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK {
							b.Fatalf("%d %s", rec.Code, rec.Body)
						}
					}
				})
			}
			b.Run(c.Kind+"/"+period+"/scan", func(b *testing.B) {
				per, _ := ps.Parse(period, time.Now())
				for b.Loop() {
					var n, w, status int64
					var route, api, key, user string
					var lat float64
					err := st.DB().QueryRowContext(ctx, "SELECT count(*), max(route), max(api_name), max(api_key_id), max(user_id), sum(weight), max(status), max(latency_ms) FROM events WHERE org = 'bench' AND env = 'prod' AND ts >= $1 AND ts < $2 AND "+c.Column()+" = $3",
						per.Start, per.End, c.ID).Scan(&n, &route, &api, &key, &user, &w, &status, &lat)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(c.Kind+"/"+period+"/sql", func(b *testing.B) {
				per, _ := ps.Parse(period, time.Now())
				var qs []stats.Query
				for _, q := range []struct{ dims, sel, extra string }{
					{"", "sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)", ""},
					{"", "sum(message_count),sum(is_error)", "&timeUnit=day&tsAscending=true"},
					{"route", "sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)", "&sortby=sum(message_count)&limit=50"},
					{"apiproxy", "sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)", "&sortby=sum(message_count)&limit=50"},
					{"api_key", "sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)", "&sortby=sum(message_count)&limit=50"},
					{"response_status_code", "sum(message_count)", "&sort=ASC"},
				} {
					v, _ := url.ParseQuery("select=" + q.sel + q.extra)
					v.Set("timeRange", "01/01/2000 00:00~01/02/2000 00:00")
					p, err := stats.Parse("bench", "prod", q.dims, v)
					if err != nil {
						b.Fatal(err)
					}
					p.From, p.To = per.Start, per.End
					if err := p.Restrict(c.Column(), c.ID); err != nil {
						b.Fatal(err)
					}
					qs = append(qs, stats.Build(p, stats.DuckDB{}))
				}
				for b.Loop() {
					var wg sync.WaitGroup
					for _, q := range qs {
						wg.Go(func() {
							rows, err := st.DB().QueryContext(ctx, q.SQL, q.Args...)
							if err != nil {
								b.Error(err)
								return
							}
							for rows.Next() {
							}
							rows.Close()
						})
					}
					wg.Wait()
				}
			})
		}
	}
}
