package alerts_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// Sizes of BenchmarkTick: APIMETER_BENCH_ALERT_EVENTS events (default
// 1,000,000; the figure is 10,000,000) spread evenly over the 24
// hours before the evaluation, from benchUsers users in benchCompanies
// companies, 3% errors.
const (
	benchUsers     = 10000
	benchCompanies = 1000
	benchRules     = 100
)

func benchEvents() int {
	if v, err := strconv.Atoi(os.Getenv("APIMETER_BENCH_ALERT_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// benchRuleSet is 100 per-customer rules: error rate per company over
// 10 min, p95 latency per user over 5 min, errors per company over 15
// min, calls per user over 1 h; every fifth on one API only.
func benchRuleSet() []alerts.Rule {
	var rs []alerts.Rule
	for i := range benchRules {
		r := alerts.Rule{ID: fmt.Sprintf("r%03d", i), Org: "acme", Env: "prod"}
		switch i % 4 {
		case 0:
			r.Metric, r.Per, r.Window, r.Threshold, r.MinVolume = alerts.ErrorRate, alerts.PerCompany, d("10m"), 0.05+float64(i)/1000, 20
		case 1:
			r.Metric, r.Per, r.Window, r.Threshold = "p95(total_response_time)", alerts.PerUser, d("5m"), 450+float64(i)
		case 2:
			r.Metric, r.Per, r.Window, r.Threshold = "sum(is_error)", alerts.PerCompany, d("15m"), 3+float64(i%7)
		case 3:
			r.Metric, r.Per, r.Window, r.Threshold = "sum(message_count)", alerts.PerUser, d("1h"), 60+float64(i%11)
		}
		if i%5 == 0 {
			r.API = "api1"
		}
		rs = append(rs, r)
	}
	return rs
}

// floorSQL is the hand-written query of rules that share a window,
// customer split and API filter: one GROUP BY selecting every aggregate
// they need, no ranking. The least a tick can do for them.
func floorSQL(rs []alerts.Rule, ch bool) string {
	r := rs[0]
	cust := map[string]string{alerts.PerUser: "user_id", alerts.PerCompany: "company_id"}[r.Per]
	vals := map[string]bool{}
	for _, r := range rs {
		switch r.Metric {
		case alerts.ErrorRate, "sum(is_error)":
			vals["SUM(CASE WHEN status >= 400 OR status = 0 THEN weight ELSE 0 END)"] = true
		case "p95(total_response_time)":
			if ch {
				vals["quantileExact(0.95)(latency_ms)"] = true
			} else {
				vals["quantile_disc(latency_ms, 0.95)"] = true
			}
		}
	}
	sel := []string{cust, "SUM(weight)"}
	for v := range vals {
		sel = append(sel, v)
	}
	src, ts := "events", "ts >= ? AND ts < ?"
	if ch {
		src, ts = "events FINAL", "ts >= toDateTime(?, 'UTC') AND ts < toDateTime(?, 'UTC')"
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE org = 'acme' AND env = 'prod' AND %s", strings.Join(sel, ", "), src, ts)
	if r.API != "" {
		q += " AND api_name = 'api1'"
	}
	return q + " GROUP BY " + cust
}

// floorGroups splits the rules as hand-written queries would: per rule,
// or per (window, split, API) as the evaluator groups them.
func floorGroups(perRule bool) [][]alerts.Rule {
	var out [][]alerts.Rule
	idx := map[string]int{}
	for _, r := range benchRuleSet() {
		k := fmt.Sprint(r.Window, r.Per, r.API)
		if perRule {
			k = r.ID
		}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

// benchStore is a store filled once per engine and size for the
// benchmarks of this process.
type benchStore struct {
	db      *sql.DB
	dialect stats.Dialect
	engine  string
	now     time.Time
	close   func()
}

var (
	benchMu     sync.Mutex
	benchStores = map[string]*benchStore{}
)

func fillDuckDB(b *testing.B, n int, now time.Time) *benchStore {
	dir, err := os.MkdirTemp("", "apimeter-alerts-bench-")
	if err != nil {
		b.Fatal(err)
	}
	st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1, NoDedupe: true})
	if err != nil {
		b.Fatal(err)
	}
	start := now.Add(-24 * time.Hour)
	step := (24 * time.Hour).Microseconds() / int64(n)
	// Rows in time order, as a collector appends them.
	_, err = st.DB().Exec(`INSERT INTO events
SELECT 'e' || i, 'acme', 'prod', ts, ts, 'api' || (h % 5), 'GET', '/v1/items/' || (h % 100), '/v1/items/' || (h % 100), '/v1/items/{id}',
  CASE WHEN (h >> 8) % 100 < 3 THEN 500 ELSE 200 END, ((h >> 16) % 2000) / 4.0, NULL, NULL, NULL,
  'u' || ((h >> 24) % `+strconv.Itoa(benchUsers)+`), 'c' || ((h >> 24) % `+strconv.Itoa(benchUsers)+` % `+strconv.Itoa(benchCompanies)+`), 'fp_k', '10.0.0.1', 'bench', '', 1, '{}'
FROM (SELECT i, hash(i) AS h, CAST(? AS TIMESTAMP) + to_microseconds(CAST(i * ? AS BIGINT)) AS ts FROM range(?) t(i)) s`, start, step, n)
	if err != nil {
		b.Fatal(err)
	}
	return &benchStore{db: st.DB(), dialect: stats.DuckDB{}, engine: alerts.DuckDB, now: now, close: func() { st.Close(); os.RemoveAll(dir) }}
}

func fillClickHouse(b *testing.B, n int, now time.Time) *benchStore {
	dsn := chtest.Shared(b).DSN(chtest.Database(b))
	st, err := clickhouse.Open(context.Background(), dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		b.Fatal(err)
	}
	start := now.Add(-24 * time.Hour)
	stepUS := (24 * time.Hour).Microseconds() / int64(n)
	_, err = st.DB().Exec(fmt.Sprintf(`INSERT INTO events (id, org, env, ingested_at, ts, ts_us, api_name, method, uri, path, route, status, latency_ms, target_latency_ms, req_size, resp_size, user_id, company_id, api_key_id, client_ip, user_agent, target_url, weight, api_version, detail)
SELECT concat('e', toString(number)), 'acme', 'prod', toDateTime(intDiv(us, 1000000), 'UTC'), toDateTime(intDiv(us, 1000000), 'UTC'), us,
  concat('api', toString(h %% 5)), 'GET', '/v1/items/', '/v1/items/', '/v1/items/{id}',
  if(intDiv(h, 256) %% 100 < 3, 500, 200), toFloat64(intDiv(h, 65536) %% 2000) / 4, NULL, NULL, NULL,
  concat('u', toString(intDiv(h, 16777216) %% %d)), concat('c', toString(intDiv(h, 16777216) %% %d %% %d)), 'fp_k', '10.0.0.1', 'bench', '', 1, '', '{}'
FROM (SELECT number, cityHash64(number) AS h, toInt64(%d) + toInt64(number) * %d AS us FROM system.numbers LIMIT %d)`,
		benchUsers, benchUsers, benchCompanies, start.UnixMicro(), stepUS, n))
	if err != nil {
		st.Close()
		b.Fatal(err)
	}
	st.DB().Exec("OPTIMIZE TABLE events FINAL")
	return &benchStore{db: st.DB(), dialect: stats.ClickHouse{}, engine: alerts.ClickHouse, now: now, close: func() { st.Close() }}
}

func benchStoreFor(b *testing.B, engine string) *benchStore {
	benchMu.Lock()
	defer benchMu.Unlock()
	n := benchEvents()
	k := engine + "/" + strconv.Itoa(n)
	if s := benchStores[k]; s != nil {
		return s
	}
	now := time.Now().UTC().Truncate(time.Minute)
	start := time.Now()
	var s *benchStore
	if engine == alerts.DuckDB {
		s = fillDuckDB(b, n, now)
	} else {
		s = fillClickHouse(b, n, now)
	}
	b.Logf("%s: %d events loaded in %s", engine, n, time.Since(start).Round(time.Millisecond))
	benchStores[k] = s
	return s
}

// BenchmarkTick is one evaluation of 100 per-customer rules (one query
// each) over the store; BenchmarkFloor the same 100 windows read with
// hand-written GROUP BY queries, at the same parallelism: the least the
// work can cost. ns/op is per tick.
func BenchmarkTick(b *testing.B) {
	for _, engine := range []string{alerts.DuckDB, alerts.ClickHouse} {
		b.Run(engine, func(b *testing.B) {
			s := benchStoreFor(b, engine)
			st, err := alerts.NewSQLStore(context.Background(), s.db, s.engine)
			if err != nil {
				b.Fatal(err)
			}
			n := alerts.NewNotifier(alerts.NotifierConfig{Store: st})
			defer n.Close()
			ev, err := alerts.New(alerts.Config{Store: st, DB: s.db, Dialect: s.dialect, Notifier: n, Now: func() time.Time { return s.now }})
			if err != nil {
				b.Fatal(err)
			}
			rules := benchRuleSet()
			for i := range rules {
				if err := rules[i].Check(); err != nil {
					b.Fatal(err)
				}
			}
			ev.SetFileRules(rules)
			// The first tick stores every instance's first state.
			if err := ev.Tick(context.Background()); err != nil {
				b.Fatal(err)
			}
			var instances int
			for _, r := range ev.Rules("acme", "prod") {
				instances += len(r.Instances)
			}
			b.ResetTimer()
			for range b.N {
				if err := ev.Tick(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(instances), "instances")
			took := map[string]float64{}
			for _, r := range ev.Rules("acme", "prod") {
				took[fmt.Sprintf("%s per %s over %s api=%q", r.Metric, r.Per, r.Window.D(), r.API)] = r.LastTookMS
			}
			b.Logf("last query of each group, ms: %v", took)
		})
	}
}

func BenchmarkFloor(b *testing.B) {
	for _, engine := range []string{alerts.DuckDB, alerts.ClickHouse} {
		for _, split := range []string{"per-group", "per-rule"} {
			b.Run(engine+"/"+split, func(b *testing.B) {
				s := benchStoreFor(b, engine)
				groups := floorGroups(split == "per-rule")
				ch := engine == alerts.ClickHouse
				b.ReportMetric(float64(len(groups)), "queries")
				b.ResetTimer()
				for range b.N {
					sem := make(chan struct{}, 2) // the evaluator's default parallelism
					var wg sync.WaitGroup
					for _, rs := range groups {
						sem <- struct{}{}
						wg.Add(1)
						go func() {
							defer func() { <-sem; wg.Done() }()
							w := rs[0].Window.D()
							from, to := any(s.now.Add(-w)), any(s.now)
							if ch {
								from, to = s.now.Add(-w).Unix(), s.now.Unix()
							}
							rows, err := s.db.Query(floorSQL(rs, ch), from, to)
							if err != nil {
								b.Error(err)
								return
							}
							for rows.Next() {
							}
							rows.Close()
						}()
					}
					wg.Wait()
				}
			})
		}
	}
}
