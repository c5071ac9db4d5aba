package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
)

type QueriesCmd struct {
	Data        string `placeholder:"DIR" help:"Data directory of the embedded store (from bench dataset)."`
	Org         string `default:"demo" help:"Organization of the events."`
	Env         string `default:"prod" help:"Environment of the events."`
	Rounds      int    `default:"5" help:"Timed rounds per query, after one warm-up; the median is reported."`
	MemoryLimit string `default:"256MB" help:"DuckDB's memory limit for the run."`
	instance.StoreConfig
}

// benchQuery is one dashboard question: its Metrics API request and the
// same question as a hand-written SQL scan of the raw events.
type benchQuery struct {
	name    string
	dims    string
	params  url.Values
	ranked  bool // the order of the groups is part of the answer
	floorDK string
	floorCH string
	args    []any
}

// benchQueries are the seven queries of the rollups' benchmark, relative
// to now (minutes, as the dashboard asks) on the store of org/env: a user
// and a company picked among the busiest, a key of that user.
func benchQueries(now time.Time, user, company, key string) []benchQuery {
	tr := func(d time.Duration) string {
		return now.Add(-d).Format("01/02/2006 15:04") + "~" + now.Format("01/02/2006 15:04")
	}
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	v := func(kv ...string) url.Values {
		out := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	// DuckDB floors bind $1 org, $2 env, $3 from, $4 to (timestamps);
	// ClickHouse's the same with from and to in Unix seconds.
	const whereDK = "org = $1 AND env = $2 AND ts >= $3 AND ts < $4"
	const whereCH = "org = $1 AND env = $2 AND ts >= toDateTime($3, 'UTC') AND ts < toDateTime($4, 'UTC')"
	const isErr = "(status >= 400 OR status = 0)"
	return []benchQuery{
		{name: "top 10 users by calls, 30 days", dims: "user_id", ranked: true,
			params:  v("select", "sum(message_count)", "sortby", "sum(message_count)", "limit", "10", "timeRange", tr(30*day)),
			floorDK: "SELECT user_id, sum(weight) AS c FROM events WHERE " + whereDK + " GROUP BY user_id ORDER BY c DESC, user_id LIMIT 10",
			floorCH: "SELECT user_id, sum(weight) AS c FROM events WHERE " + whereCH + " GROUP BY user_id ORDER BY c DESC, user_id LIMIT 10"},
		{name: "top 10 companies by errors, 7 days", dims: "company_id", ranked: true,
			params:  v("select", "sum(is_error)", "sortby", "sum(is_error)", "limit", "10", "timeRange", tr(7*day)),
			floorDK: "SELECT company_id, sum(CASE WHEN " + isErr + " THEN weight ELSE 0 END) AS c FROM events WHERE " + whereDK + " GROUP BY company_id ORDER BY c DESC, company_id LIMIT 10",
			floorCH: "SELECT company_id, sumIf(weight, " + isErr + ") AS c FROM events WHERE " + whereCH + " GROUP BY company_id ORDER BY c DESC, company_id LIMIT 10"},
		{name: "one user's daily series, 90 days",
			params:  v("select", "sum(message_count)", "timeUnit", "day", "filter", "(user_id eq '"+user+"')", "timeRange", tr(90*day)),
			floorDK: "SELECT epoch_ms(date_trunc('day', ts)) AS b, sum(weight) FROM events WHERE " + whereDK + " AND user_id = $5 GROUP BY b",
			floorCH: "SELECT toInt64(toUInt32(toStartOfDay(ts))) * 1000 AS b, sum(weight) FROM events WHERE " + whereCH + " AND user_id = $5 GROUP BY b",
			args:    []any{user}},
		{name: "one company's hourly series, 24 hours",
			params:  v("select", "sum(message_count)", "timeUnit", "hour", "filter", "(company_id eq '"+company+"')", "timeRange", tr(day)),
			floorDK: "SELECT epoch_ms(date_trunc('hour', ts)) AS b, sum(weight) FROM events WHERE " + whereDK + " AND company_id = $5 GROUP BY b",
			floorCH: "SELECT toInt64(toUInt32(toStartOfHour(ts))) * 1000 AS b, sum(weight) FROM events WHERE " + whereCH + " AND company_id = $5 GROUP BY b",
			args:    []any{company}},
		{name: "p95 latency by route, 30 days", dims: "route",
			params: v("select", "p95(total_response_time)", "timeRange", tr(30*day)),
			// The smallest latency whose cumulative weight reaches 95 %.
			floorDK: "SELECT route, min(v) FILTER (WHERE cw * 100 >= 95 * tw) FROM (SELECT route, v, sum(w) OVER (PARTITION BY route ORDER BY v) AS cw, sum(w) OVER (PARTITION BY route) AS tw FROM (SELECT route, latency_ms AS v, sum(weight) AS w FROM events WHERE " + whereDK + " GROUP BY route, v)) GROUP BY route",
			floorCH: "SELECT route, quantileExactWeighted(0.95)(latency_ms, toUInt64(weight)) FROM events WHERE " + whereCH + " GROUP BY route"},
		{name: "calls per API per day, 90 days", dims: "apiproxy",
			params:  v("select", "sum(message_count)", "timeUnit", "day", "timeRange", tr(90*day)),
			floorDK: "SELECT api_name, epoch_ms(date_trunc('day', ts)) AS b, sum(weight) FROM events WHERE " + whereDK + " GROUP BY api_name, b",
			floorCH: "SELECT api_name, toInt64(toUInt32(toStartOfDay(ts))) * 1000 AS b, sum(weight) FROM events WHERE " + whereCH + " GROUP BY api_name, b"},
		{name: "one API key's usage this month",
			params:  v("select", "sum(message_count),sum(is_error)", "filter", "(api_key eq '"+key+"')", "timeRange", month.Format("01/02/2006 15:04")+"~"+now.Format("01/02/2006 15:04")),
			floorDK: "SELECT sum(weight), sum(CASE WHEN " + isErr + " THEN weight ELSE 0 END) FROM events WHERE " + whereDK + " AND api_key_id = $5",
			floorCH: "SELECT sum(weight), sumIf(weight, " + isErr + ") FROM events WHERE " + whereCH + " AND api_key_id = $5",
			args:    []any{key}},
	}
}

// Run times the seven queries through the Metrics API (in-process HTTP,
// rollups on) and the hand-written scans, in alternating order, and checks
// that both give the same answer.
func (c *QueriesCmd) Run(ctx context.Context) error {
	if c.Rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	var db *sql.DB
	var dialect stats.Dialect
	ch := c.ClickHouse()
	if ch {
		st, err := clickhouse.Open(ctx, c.Store, clickhouse.Options{NoDedupe: true})
		if err != nil {
			return &instance.StoreError{Store: c.StoreConfig.String(), Err: err}
		}
		defer st.Close()
		db, dialect = st.DB(), stats.ClickHouse{}
	} else {
		if c.Data == "" {
			return errors.New("--data is required for the embedded store")
		}
		st, err := duckdb.Open(ctx, filepath.Join(c.Data, instance.DBFile), duckdb.Options{DailyInterval: -1, NoDedupe: true, MemoryLimit: c.MemoryLimit})
		if err != nil {
			return err
		}
		defer st.Close()
		// Whatever the background pass would have folded by now.
		if _, err := st.BuildRollups(ctx); err != nil {
			return err
		}
		db, dialect = st.DB(), stats.DuckDB{}
	}
	// The busiest user of the last 30 days, their company and busiest key.
	now := time.Now().UTC().Truncate(time.Minute)
	var user, company, key string
	q := "SELECT user_id, any_value(company_id), max(api_key_id) FROM events WHERE org = $1 AND env = $2 AND ts >= $3 GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
	var since any = now.Add(-30 * 24 * time.Hour)
	if ch {
		q = "SELECT user_id, any(company_id), max(api_key_id) FROM events WHERE org = $1 AND env = $2 AND ts >= toDateTime($3, 'UTC') GROUP BY user_id ORDER BY count() DESC LIMIT 1"
		since = now.Add(-30 * 24 * time.Hour).Unix()
	}
	if err := db.QueryRowContext(ctx, q, c.Org, c.Env, since).Scan(&user, &company, &key); err != nil {
		return fmt.Errorf("pick a user: %w (is there a dataset of %s/%s?)", err, c.Org, c.Env)
	}
	h := stats.NewHandler(stats.Config{DB: db, Dialect: dialect, Rollups: true, QuotaPerMinute: -1})
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	fmt.Printf("store %s, %s/%s, user %s, company %s, key %s; median of %d after a warm-up\n", c.StoreConfig, c.Org, c.Env, user, company, key, c.Rounds)
	fmt.Printf("| query | Metrics API | hand-written, same tables | API / same tables | hand-written scan of the events | API / scan | tables read | same answer |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n")
	allSame := true
	floors := rollupFloors(ch)
	for qi, bq := range benchQueries(now, user, company, key) {
		u := srv.URL + "/v1/o/" + c.Org + "/environments/" + c.Env + "/stats/" + bq.dims + "?" + bq.params.Encode()
		from, to, err := stats.ParseTimeRange(bq.params.Get("timeRange"))
		if err != nil {
			return err
		}
		floor, args := bq.floorDK, append([]any{c.Org, c.Env, any(from), any(to)}, bq.args...)
		if ch {
			floor, args[2], args[3] = bq.floorCH, from.Unix(), to.Unix()
		}
		// The same question by hand over the tables the API reads.
		p, cover, err := apiCover(ctx, db, c.Org, c.Env, bq.dims, bq.params, ch)
		if err != nil {
			return fmt.Errorf("%s: %w", bq.name, err)
		}
		same := floors[qi].floorSQL(p, cover, ch)
		var apiT, rawT, sameT []time.Duration
		var apiAns, rawAns, sameAns []string
		var table string
		// Each clock stops when the answer is in: the last byte of the
		// Metrics API's JSON, the last row from the driver. Decoding the
		// JSON and comparing the answers come after, for all three.
		for i := 0; i <= c.Rounds; i++ {
			t0 := time.Now()
			body, err := fetchAPI(ctx, u)
			if err != nil {
				return fmt.Errorf("%s: %w", bq.name, err)
			}
			t1 := time.Now()
			cols, rows, err := queryRows(ctx, db, floor, args)
			if err != nil {
				return fmt.Errorf("%s: hand-written scan: %w", bq.name, err)
			}
			t2 := time.Now()
			scols, srows, err := queryRows(ctx, db, same, append([]any{c.Org, c.Env}, bq.args...))
			if err != nil {
				return fmt.Errorf("%s: hand-written query of the same tables: %w", bq.name, err)
			}
			t3 := time.Now()
			if i > 0 {
				apiT, rawT, sameT = append(apiT, t1.Sub(t0)), append(rawT, t2.Sub(t1)), append(sameT, t3.Sub(t2))
			}
			if apiAns, table, err = apiAnswer(body); err != nil {
				return fmt.Errorf("%s: %w", bq.name, err)
			}
			if rawAns, err = flattenRows(cols, rows); err != nil {
				return fmt.Errorf("%s: hand-written scan: %w", bq.name, err)
			}
			if sameAns, err = flattenRows(scols, srows); err != nil {
				return fmt.Errorf("%s: hand-written query of the same tables: %w", bq.name, err)
			}
		}
		if !bq.ranked {
			sort.Strings(apiAns)
			sort.Strings(rawAns)
			sort.Strings(sameAns)
		}
		equal := slices.Equal(apiAns, rawAns) && slices.Equal(apiAns, sameAns)
		allSame = allSame && equal
		a, r, f := medianDur(apiT), medianDur(rawT), medianDur(sameT)
		fmt.Printf("| %s | %.1f ms | %.1f ms | %.2f | %.1f ms | %.2f | %s | %v (%d rows) |\n", bq.name, ms(a), ms(f), a.Seconds()/f.Seconds(), ms(r), a.Seconds()/r.Seconds(), table, equal, len(apiAns))
		if !equal {
			fmt.Fprintf(os.Stderr, "%s: answers differ\nAPI:  %.600v\nscan: %.600v\nsame tables: %.600v\n", bq.name, apiAns, rawAns, sameAns)
		}
	}
	printRSS()
	if !allSame {
		return errors.New("some answers differ")
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func medianDur(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// fetchAPI reads a Metrics API answer whole.
func fetchAPI(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return body, nil
}

// apiAnswer flattens a Metrics API answer to one line per group (and
// bucket): name, timestamp, values; and the table notice.
func apiAnswer(body []byte) ([]string, string, error) {
	var r struct {
		Environments []struct {
			Dimensions []struct {
				Name    string
				Metrics []struct{ Values []json.RawMessage }
			}
			Metrics []struct{ Values []json.RawMessage }
		}
		MetaData struct{ Notices []string }
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, "", err
	}
	table := ""
	for _, n := range r.MetaData.Notices {
		if t, ok := strings.CutPrefix(n, "Table used: "); ok {
			table = t
		}
	}
	var out []string
	flatten := func(name string, metrics []struct{ Values []json.RawMessage }) error {
		// Points per timestamp across the metrics (or one row).
		rows := map[int64][]string{}
		var order []int64
		for _, m := range metrics {
			for i, raw := range m.Values {
				var p struct {
					Timestamp int64
					Value     string
				}
				if err := json.Unmarshal(raw, &p); err != nil {
					if err := json.Unmarshal(raw, &p.Value); err != nil {
						return err
					}
					p.Timestamp = int64(i)
				}
				if _, ok := rows[p.Timestamp]; !ok {
					order = append(order, p.Timestamp)
				}
				rows[p.Timestamp] = append(rows[p.Timestamp], p.Value)
			}
		}
		for _, ts := range order {
			line := name
			if len(metrics[0].Values) > 0 && metrics[0].Values[0][0] == '{' {
				line += "\t" + strconv.FormatInt(ts, 10)
			}
			out = append(out, line+"\t"+strings.Join(rows[ts], "\t"))
		}
		return nil
	}
	for _, e := range r.Environments {
		if len(e.Metrics) > 0 {
			if err := flatten("", e.Metrics); err != nil {
				return nil, "", err
			}
		}
		for _, d := range e.Dimensions {
			if err := flatten(d.Name, d.Metrics); err != nil {
				return nil, "", err
			}
		}
	}
	return out, table, nil
}

// queryRows runs a hand-written query and reads its rows.
func queryRows(ctx context.Context, db *sql.DB, q string, args []any) ([]string, [][]any, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		out = append(out, vals)
	}
	return cols, out, rows.Err()
}

// flattenRows flattens a hand-written query's rows as apiAnswer does:
// text columns, then an integer timestamp when present, then the numbers
// as the Metrics API spells them.
func flattenRows(cols []string, rows [][]any) ([]string, error) {
	var out []string
	for _, vals := range rows {
		var parts []string
		if _, isText := vals[0].(string); !isText {
			parts = append(parts, "") // no dimension
		}
		for i, v := range vals {
			switch v := v.(type) {
			case string:
				parts = append(parts, v)
			case nil:
				parts = append(parts, stats.FormatNumber(nil))
			default:
				f, err := strconv.ParseFloat(fmt.Sprint(v), 64)
				if err != nil {
					return nil, fmt.Errorf("column %s: %v", cols[i], v)
				}
				if cols[i] == "b" {
					parts = append(parts, strconv.FormatInt(int64(f), 10))
				} else {
					parts = append(parts, stats.FormatNumber(&f))
				}
			}
		}
		out = append(out, strings.Join(parts, "\t"))
	}
	return out, nil
}

// printRSS prints this process's resident memory now and at its peak, from
// /proc/self/status (Linux).
func printRSS() {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			fmt.Println(strings.Join(strings.Fields(line), " "))
		}
	}
}
