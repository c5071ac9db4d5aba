package meter_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// benchEvents is the size of the meter query benchmarks' table:
// APIMETER_BENCH_EVENTS, else 10 million.
func benchEvents(b *testing.B) int {
	if v := os.Getenv("APIMETER_BENCH_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 10_000_000
}

// The table of the benchmarks: n usage events of type tokens over 30 days
// from 2026-10-01, 1,000 subjects, data {"tokens": i % 1000, "model": one
// of three}, as the ingest path flattens it. It is written with one
// INSERT ... SELECT rather than through AppendUsage: the benchmark
// measures the query.
const (
	benchFrom = "2026-10-01T00:00:00Z"
	benchTo   = "2026-10-31T00:00:00Z"
)

func benchStep(n int) int64 { return 30 * 24 * 3600 * 1000 / int64(n) }

var benchQueries = []struct{ name, meter, query string }{
	{"sum_total", "tokens", "from=" + benchFrom + "&to=" + benchTo},
	{"sum_day_berlin_by_model", "tokens", "from=" + benchFrom + "&to=" + benchTo + "&windowSize=DAY&windowTimeZone=Europe/Berlin&groupBy=model"},
	{"count_by_subject", "calls", "from=" + benchFrom + "&to=" + benchTo + "&groupBy=subject"},
	{"sum_hour_one_subject", "tokens", "from=" + benchFrom + "&to=" + benchTo + "&windowSize=HOUR&subject=c7"},
	// 20 subjects: 200,000 events, more than cost what the hour rows of
	// the month do (ClickHouse reads the hour rows).
	{"sum_hour_20_subjects", "tokens", "from=" + benchFrom + "&to=" + benchTo + "&windowSize=HOUR" + subjectParams(20)},
}

func subjectParams(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "&subject=c%d", i)
	}
	return b.String()
}

var benchMeters = map[string]*meter.Meter{
	"tokens": {Org: "o", Env: "prod", Slug: "tokens", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens", GroupBy: map[string]string{"model": "$.model"}},
	"calls":  {Org: "o", Env: "prod", Slug: "calls", EventType: "tokens", Aggregation: meter.Count},
}

// floors are the same answers by the simplest SQL that gives them, on the
// same table (the hand-written lower bound the meter query is held to):
// the same rows (org, env, type, time), the value at a known list
// position, UTC offsets as constants, no FINAL.
var floors = map[string]map[string]string{
	"DuckDB": {
		"sum_total":               "SELECT sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d",
		"sum_day_berlin_by_model": "SELECT (ts_ms + 3600000) // 86400000 AS d, data_str[2], sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d GROUP BY ALL",
		"count_by_subject":        "SELECT subject, count(*) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d GROUP BY ALL",
		"sum_hour_one_subject":    "SELECT ts_ms // 3600000 AS h, sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND subject = 'c7' AND ts_ms >= %d AND ts_ms < %d GROUP BY ALL",
		"sum_hour_20_subjects":    "SELECT ts_ms // 3600000 AS h, subject, sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND subject IN (" + subjectList(20) + ") AND ts_ms >= %d AND ts_ms < %d GROUP BY ALL",
	},
	"ClickHouse": {
		"sum_total":               "SELECT sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d",
		"sum_day_berlin_by_model": "SELECT intDiv(ts_ms + 3600000, 86400000) AS d, data_str[2] AS m, sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d GROUP BY d, m",
		"count_by_subject":        "SELECT subject, count() FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND ts_ms >= %d AND ts_ms < %d GROUP BY subject",
		"sum_hour_one_subject":    "SELECT intDiv(ts_ms, 3600000) AS h, sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND subject = 'c7' AND ts_ms >= %d AND ts_ms < %d GROUP BY h",
		"sum_hour_20_subjects":    "SELECT intDiv(ts_ms, 3600000) AS h, subject, sum(data_num[1]) FROM usage_events WHERE org = 'o' AND env = 'prod' AND type = 'tokens' AND subject IN (" + subjectList(20) + ") AND ts_ms >= %d AND ts_ms < %d GROUP BY h, subject",
	},
}

// subjectList is 'c0', ..., the first n subjects as an SQL list.
func subjectList(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'c%d'", i)
	}
	return b.String()
}

// aggFloors are the same answers by the simplest SQL over the meters'
// aggregates (%[1]s: the meter's Def; %[2]d, %[3]d: the range): the
// floor of an answer from the aggregates.
var aggFloors = map[string]map[string]string{
	"DuckDB": {
		"sum_total":               "SELECT sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 86400000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d",
		"sum_day_berlin_by_model": "SELECT bucket_ms, gv[2], sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms IN (165600000, 169200000) AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY ALL",
		"count_by_subject":        "SELECT subject, sum(n) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 86400000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY ALL",
		"sum_hour_one_subject":    "SELECT bucket_ms, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND subject = 'c7' AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY ALL",
		"sum_hour_20_subjects":    "SELECT bucket_ms, subject, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND subject IN (" + subjectList(20) + ") AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY ALL",
	},
	"ClickHouse": {
		"sum_total":               "SELECT sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 86400000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d",
		"sum_day_berlin_by_model": "SELECT bucket_ms, gv[2] AS m, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms IN (165600000, 169200000) AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY bucket_ms, m",
		"count_by_subject":        "SELECT subject, sum(n) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 86400000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY subject",
		"sum_hour_one_subject":    "SELECT bucket_ms, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND subject = 'c7' AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY bucket_ms",
		"sum_hour_20_subjects":    "SELECT bucket_ms, subject, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND subject IN (" + subjectList(20) + ") AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY bucket_ms, subject",
	},
}

// hourFloors are Berlin's days by model over the hour rows alone (what
// the query read before shifted days were kept), and blockFloors over
// UTC-aligned blocks of 12, 6 and 3 hours beside the hours (the other way
// to read fewer rows; the benchmark builds those blocks in a table of its
// own, bench_blocks): %[4]s reads the blocks, one SELECT per size.
var hourFloors = map[string]string{
	"DuckDB":     "SELECT (bucket_ms + 3600000) // 86400000 AS d, gv[2], sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY ALL",
	"ClickHouse": "SELECT intDiv(bucket_ms + 3600000, 86400000) AS d, gv[2] AS m, sum(sx) FROM meter_agg WHERE def = '%[1]s' AND span_ms = 3600000 AND bucket_ms >= %[2]d AND bucket_ms < %[3]d GROUP BY d, m",
}

var blockFloors = map[string]string{
	"DuckDB":     "SELECT (bucket_ms + 3600000) // 86400000 AS d, gv[2], sum(sx) FROM (%[4]s) AS u GROUP BY ALL",
	"ClickHouse": "SELECT intDiv(bucket_ms + 3600000, 86400000) AS d, gv[2] AS m, sum(sx) FROM (%[4]s) AS u GROUP BY d, m",
}

// blockHours are the block sizes (hours) of blockFloors, largest first.
var blockHours = []int64{24, 12, 6, 3, 1}

// buildBlocks copies def's hour and day rows into bench_blocks and adds
// blocks of 12, 6 and 3 hours folded from the hour rows, and returns the
// query of the fewest of them that make Europe/Berlin's days of
// [from, to): one SELECT per size, so that each filters one span.
func buildBlocks(b *testing.B, db *sql.DB, engine, def string, from, to time.Time) string {
	stmts := []string{"CREATE TABLE bench_blocks AS SELECT * FROM meter_agg WHERE false",
		fmt.Sprintf("INSERT INTO bench_blocks SELECT * FROM meter_agg WHERE def = '%s' AND span_ms IN (3600000, 86400000)", def)}
	if engine == "ClickHouse" {
		stmts[0] = "CREATE TABLE bench_blocks AS meter_agg"
	}
	for _, h := range blockHours[1 : len(blockHours)-1] {
		ms := h * 3_600_000
		q := fmt.Sprintf(`INSERT INTO bench_blocks SELECT def, %[1]d, version, bucket_ms // %[1]d * %[1]d AS b, subject, gv, sum(n), sum(sx), min(mn), max(mx), NULL, NULL
FROM meter_agg WHERE def = '%[2]s' AND span_ms = 3600000 GROUP BY def, version, b, subject, gv ORDER BY subject, b`, ms, def)
		if engine == "ClickHouse" {
			q = fmt.Sprintf(`INSERT INTO bench_blocks (def, span_ms, version, bucket_ms, subject, gv, n, sx, mn, mx, lt, lv)
SELECT def, %[1]d, version, intDiv(bucket_ms, %[1]d) * %[1]d AS b, subject, gv, sum(n), sum(sx), min(mn), max(mx), CAST(NULL AS Nullable(Int64)), CAST(NULL AS Nullable(Float64))
FROM meter_agg WHERE def = '%[2]s' AND span_ms = 3600000 GROUP BY def, version, b, subject, gv`, ms, def)
		}
		stmts = append(stmts, q)
	}
	if engine == "ClickHouse" {
		stmts = append(stmts, "OPTIMIZE TABLE bench_blocks FINAL")
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	lists := map[int64][]string{}
	for d := from.In(berlin); d.Before(to); {
		y, m, dd := d.Date()
		next := time.Date(y, m, dd+1, 0, 0, 0, 0, berlin)
		a, e := max(d.UnixMilli(), from.UnixMilli()), min(next.UnixMilli(), to.UnixMilli())
		for a < e {
			for _, h := range blockHours {
				ms := h * 3_600_000
				if a%ms == 0 && a+ms <= e {
					lists[h] = append(lists[h], strconv.FormatInt(a, 10))
					a += ms
					break
				}
			}
		}
		d = next
	}
	var terms []string
	rows := 0
	for _, h := range blockHours {
		if len(lists[h]) > 0 {
			terms = append(terms, fmt.Sprintf("SELECT bucket_ms, gv, sx FROM bench_blocks WHERE def = '%s' AND span_ms = %d AND bucket_ms IN (%s)", def, h*3_600_000, strings.Join(lists[h], ", ")))
			rows += len(lists[h])
		}
	}
	fmt.Fprintf(os.Stderr, "%s: Berlin's days read %d blocks (UTC-aligned blocks of 24, 12, 6, 3, 1 hours) per subject and group\n", b.Name(), rows)
	return strings.Join(terms, " UNION ALL ")
}

// foldShifted runs the benchmark's queries once (those with windows in
// a zone whose days start other than at UTC midnight ask for shifted
// days: they read hours this time), then folds again (the backfill of
// the shifted days), reporting how long that took.
func foldShifted(b *testing.B, db *sql.DB, d meter.Dialect, now time.Time, fold func(context.Context) error) {
	for _, bq := range benchQueries {
		m, p := benchParams(b, bq.meter, bq.query, now)
		if _, err := meter.Query(context.Background(), db, d, m, p); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	if err := fold(context.Background()); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%s: folded the shifted days asked for in %v\n", b.Name(), time.Since(t0))
}

// BenchmarkMeterQuery answers meter queries over APIMETER_BENCH_EVENTS
// (10 million) usage events on each store, after the meters' aggregates
// are folded (the fold's time is reported once), beside two floors: the
// hand-written SQL over the events, and over the aggregates. Each
// iteration runs the three in turn; the metrics are medians.
func BenchmarkMeterQuery(b *testing.B) {
	n := benchEvents(b)
	from, _ := time.Parse(time.RFC3339, benchFrom)
	to, _ := time.Parse(time.RFC3339, benchTo)
	b.Run("DuckDB", func(b *testing.B) {
		st, err := duckdb.Open(context.Background(), filepath.Join(b.TempDir(), "q.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), duckdb.UsageOptions{FoldInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		_, err = u.DB().Exec(fmt.Sprintf(`INSERT INTO usage_events SELECT 'o', 'prod', 'tokens', 'c' || (i %% 1000), %d + i * %d, 'bench', 'e' || i, 0, '{}',
['tokens', 'model'], [CAST(i %% 1000 AS VARCHAR), ['gpt-4', 'gpt-3.5', 'claude'][i %% 3 + 1]], [CAST(i %% 1000 AS DOUBLE), 'NaN'::DOUBLE]
FROM range(%d) t(i)`, from.UnixMilli(), benchStep(n), n))
		if err != nil {
			b.Fatal(err)
		}
		foldBench(b, u, u.FoldMeters)
		foldShifted(b, u.DB(), meter.DuckDB{}, to, u.FoldMeters)
		runBenchQueries(b, u.DB(), meter.DuckDB{}, "DuckDB", from, to)
	})
	b.Run("ClickHouse", func(b *testing.B) {
		dsn := chtest.Shared(b).DSN(chtest.Database(b))
		st, err := clickhouse.Open(context.Background(), dsn, clickhouse.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), clickhouse.UsageOptions{FoldInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		// In INSERTs of a million rows, each well within the driver's
		// read timeout.
		for lo := 0; lo < n; lo += 1_000_000 {
			err = st.Conn().Exec(context.Background(), fmt.Sprintf(`INSERT INTO usage_events (org, env, type, subject, ts, ts_ms, source, id, ingested_at, data, data_keys, data_str, data_num)
SELECT 'o', 'prod', 'tokens', concat('c', toString(k %% 1000)), toDateTime(intDiv(%d + k * %d, 1000), 'UTC'), %d + k * %d, 'bench', concat('e', toString(k)), toDateTime(0, 'UTC'), '{}',
['tokens', 'model'], [toString(k %% 1000), ['gpt-4', 'gpt-3.5', 'claude'][k %% 3 + 1]], [toFloat64(k %% 1000), nan]
FROM (SELECT number + %d AS k FROM numbers(%d))`, from.UnixMilli(), benchStep(n), from.UnixMilli(), benchStep(n), lo, min(1_000_000, n-lo)))
			if err != nil {
				b.Fatal(err)
			}
		}
		// Merged, as a table is once ingest has settled.
		if err := st.Conn().Exec(context.Background(), "OPTIMIZE TABLE usage_events FINAL"); err != nil {
			b.Fatal(err)
		}
		foldBench(b, u, u.FoldMeters)
		foldShifted(b, u.DB(), meter.ClickHouse{}, to, u.FoldMeters)
		if err := st.Conn().Exec(context.Background(), "OPTIMIZE TABLE meter_agg FINAL"); err != nil {
			b.Fatal(err)
		}
		runBenchQueries(b, u.DB(), meter.ClickHouse{}, "ClickHouse", from, to)
	})
}

// foldBench defines the benchmark's meters and folds their aggregates
// (a backfill of every event), reporting how long that took.
func foldBench(b *testing.B, u meter.Store, fold func(context.Context) error) {
	for _, m := range benchMeters {
		if err := u.PutMeter(context.Background(), *m); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	if err := fold(context.Background()); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "%s: folded %d meters in %v\n", b.Name(), len(benchMeters), time.Since(t0))
}

func median(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return float64(s[len(s)/2]) / 1e6
}

// benchParams are the meter and parameters of a benchmark query.
func benchParams(b *testing.B, slug, query string, now time.Time) (*meter.Meter, meter.Params) {
	m := benchMeters[slug]
	v, _ := url.ParseQuery(query)
	p, err := meter.ParseParams(v, m, now)
	if err != nil {
		b.Fatal(err)
	}
	return m, p
}

func runBenchQueries(b *testing.B, db *sql.DB, d meter.Dialect, engine string, from, to time.Time) {
	for _, bq := range benchQueries {
		m, p := benchParams(b, bq.meter, bq.query, to)
		q, _, err := meter.Plan(context.Background(), db, d, m, p)
		if err != nil {
			b.Fatal(err)
		}
		// Every query reads the aggregates but one subject's hours on
		// ClickHouse, which reads its events (subjecthours.go), and 20
		// subjects' hours, which read either, by the table's size.
		if events := engine == "ClickHouse" && bq.name == "sum_hour_one_subject"; bq.name != "sum_hour_20_subjects" && strings.Contains(q, meter.AggTable) == events {
			b.Fatalf("%s: reads the aggregates: %v, want %v: %s", bq.name, !events, events, q)
		}
		// Queries naming subjects are also timed on both paths, the
		// hours from the hour rows and from the events.
		var paths []meter.Dialect
		if len(p.Subjects) > 0 {
			paths = []meter.Dialect{meter.ClickHouse{SubjectEvents: -1}, meter.ClickHouse{SubjectEvents: 1 << 30}}
			if engine == "DuckDB" {
				paths = []meter.Dialect{meter.DuckDB{}, meter.DuckDB{SubjectEvents: 1 << 30}}
			}
		}
		floors := []string{
			fmt.Sprintf(floors[engine][bq.name], from.UnixMilli(), to.UnixMilli()),
			fmt.Sprintf(aggFloors[engine][bq.name], meter.Def(m), from.UnixMilli(), to.UnixMilli()),
		}
		if bq.name == "sum_day_berlin_by_model" {
			floors = append(floors,
				fmt.Sprintf(hourFloors[engine], meter.Def(m), from.UnixMilli(), to.UnixMilli()),
				fmt.Sprintf(blockFloors[engine], meter.Def(m), from.UnixMilli(), to.UnixMilli(), buildBlocks(b, db, engine, meter.Def(m), from, to)))
		}
		b.Run(bq.name, func(b *testing.B) {
			var meterT, rawT, aggT, hourT, blockT []time.Duration
			pathT := make([][]time.Duration, len(paths))
			for b.Loop() {
				// The query and its floors in turn, so that all three see
				// the same load.
				t0 := time.Now()
				res, err := meter.Query(context.Background(), db, d, m, p)
				if err != nil || len(res.Data) == 0 {
					b.Fatalf("%v, %d rows", err, len(res.Data))
				}
				meterT = append(meterT, time.Since(t0))
				for i, pd := range paths {
					t0 := time.Now()
					res, err := meter.Query(context.Background(), db, pd, m, p)
					if err != nil || len(res.Data) == 0 {
						b.Fatalf("%v, %d rows", err, len(res.Data))
					}
					pathT[i] = append(pathT[i], time.Since(t0))
				}
				for i, f := range floors {
					t0 := time.Now()
					rows, err := db.Query(f)
					if err != nil {
						b.Fatal(err)
					}
					for rows.Next() {
					}
					rows.Close()
					switch i {
					case 0:
						rawT = append(rawT, time.Since(t0))
					case 1:
						aggT = append(aggT, time.Since(t0))
					case 2:
						hourT = append(hourT, time.Since(t0))
					case 3:
						blockT = append(blockT, time.Since(t0))
					}
				}
			}
			b.ReportMetric(median(meterT), "meter-ms")
			b.ReportMetric(median(rawT), "events-floor-ms")
			b.ReportMetric(median(aggT), "agg-floor-ms")
			b.ReportMetric(median(meterT)/median(aggT), "meter/agg-floor")
			if len(paths) > 0 {
				b.ReportMetric(median(pathT[0]), "hour-rows-path-ms")
				b.ReportMetric(median(pathT[1]), "events-path-ms")
			}
			if len(hourT) > 0 {
				b.ReportMetric(median(hourT), "hours-floor-ms")
				b.ReportMetric(median(blockT), "blocks-floor-ms")
			}
		})
	}
}
