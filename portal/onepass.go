package portal

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/rollup"
	"github.com/apimeter/apimeter/stats"
)

// DefaultOnePassLimit bounds the groups the one-pass usage query may
// return; a customer with more (a very busy one) is answered by the
// Metrics API's plans instead, so memory per request stays bounded.
const DefaultOnePassLimit = 200_000

// onePassSQL reads a customer's calls of a period once, grouped by what
// the usage answer shows (route, API, key, status), the minute and the
// latency, with the summed weight: an embedded store scans a column per
// query, and the six plans of the usage answer would scan the period six
// times (BenchmarkPortalUsage: docs/performance.md). Latency stays a key,
// so percentiles are exact. The rows come from callsQuery.branches.
const onePassSQL = `SELECT route, api_name, api_key_id, status, CAST(floor(epoch_ms(ts) / 60000) AS BIGINT) AS m, latency_ms, CAST(SUM(weight) AS BIGINT) AS w
FROM (%s) AS c
GROUP BY route, api_name, api_key_id, status, m, latency_ms
LIMIT %s`

// callsColumns are the columns of a branch of onePassSQL.
const callsColumns = "ts, route, api_name, api_key_id, status, latency_ms, weight"

// cell is one group of onePassSQL.
type cell struct {
	route, api, key string
	status          int32 // DuckDB's INTEGER: scanned as it is, not through its text
	minute          int64
	latency         float64
	w               int64
}

// usageOnePass fills out from one query on db; done is false (out
// untouched) when the customer has more than Config.OnePassLimit groups.
func (h *Handler) usageOnePass(ctx context.Context, db *sql.DB, t *Token, per identity.Period, out *UsageJSON) (done bool, err error) {
	// The days a company's calls are read from the fold's copy and the
	// rest from the events are decided in the transaction that reads
	// them, on one snapshot (as the Metrics API's rollups are). DuckDB's
	// driver has no read-only transactions; the deferred Rollback ends it
	// (ctx's end cancels the query, see stats.RunRollups).
	tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return false, fmt.Errorf("portal usage: %w", err)
	}
	defer tx.Rollback()
	from, to := per.Start.UTC(), per.End.UTC()
	q := &callsQuery{args: []any{t.Org, t.Env, t.Customer.ID}}
	var copied [][2]time.Time
	if t.Customer.Kind == KindCompany {
		if copied, err = copiedDays(ctx, tx, t, from, to); err != nil {
			return false, fmt.Errorf("portal usage: %w", err)
		}
	}
	branches := q.branches(t, from, to, copied)
	rows, err := tx.QueryContext(ctx, fmt.Sprintf(onePassSQL, strings.Join(branches, "\nUNION ALL\n"), q.arg(h.cfg.OnePassLimit+1)), q.args...)
	if err != nil {
		return false, fmt.Errorf("portal usage: %w", err)
	}
	defer rows.Close()
	var cells []cell
	for rows.Next() {
		var c cell
		if err := rows.Scan(&c.route, &c.api, &c.key, &c.status, &c.minute, &c.latency, &c.w); err != nil {
			return false, fmt.Errorf("portal usage: %w", err)
		}
		cells = append(cells, c)
		if len(cells) > h.cfg.OnePassLimit {
			return false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("portal usage: %w", err)
	}

	var total agg
	routes, apis, keys := map[string]*agg{}, map[string]*agg{}, map[string]*agg{}
	statuses := map[int32]int64{}
	series := map[int64]*PointJSON{}
	loc := per.Start.Location()
	for i := range cells {
		c := &cells[i]
		isErr := c.status >= 400 || c.status == 0 // apimeter.IsErrorSQL
		total.add(c, isErr)
		for _, g := range []struct {
			m    map[string]*agg
			name string
		}{{routes, c.route}, {apis, c.api}, {keys, c.key}} {
			a := g.m[g.name]
			if a == nil {
				a = &agg{}
				g.m[g.name] = a
			}
			a.add(c, isErr)
		}
		statuses[c.status] += c.w
		b := bucket(time.UnixMilli(c.minute*60000).In(loc), out.Series.Unit).UnixMilli()
		p := series[b]
		if p == nil {
			p = &PointJSON{T: b}
			series[b] = p
		}
		p.Calls += c.w
		if isErr {
			p.Errors += c.w
		}
	}
	out.Total = total.figures()
	out.Routes, out.APIs, out.Keys = top(routes), top(apis), top(keys)
	for st, n := range statuses {
		out.Statuses = append(out.Statuses, StatusJSON{Status: strconv.Itoa(int(st)), Calls: n})
	}
	sortStatuses(out.Statuses)
	for _, p := range series {
		out.Series.Points = append(out.Series.Points, *p)
	}
	out.Series.Points = fill(out.Series, per.Start, per.End)
	return true, nil
}

// bucket is the start of the day (or hour) t falls in, in t's zone.
func bucket(t time.Time, unit string) time.Time {
	if unit == "hour" {
		return t.Truncate(time.Hour)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
}

// agg sums calls, errors and latency, and keeps the weight of each
// latency for percentiles.
type agg struct {
	calls, errors int64
	latSum        float64
	byLatency     map[float64]int64
}

func (a *agg) add(c *cell, isErr bool) {
	a.calls += c.w
	if isErr {
		a.errors += c.w
	}
	a.latSum += c.latency * float64(c.w)
	if a.byLatency == nil {
		a.byLatency = map[float64]int64{}
	}
	a.byLatency[c.latency] += c.w
}

// figures computes what the Metrics API computes: averages weighted, and
// the pN latency the smallest whose cumulative weight, in latency order,
// reaches N% of the weight (whole numbers compared, as its SQL does).
func (a *agg) figures() Figures {
	f := Figures{Calls: a.calls, Errors: a.errors}
	if a.calls == 0 {
		return f
	}
	avg := a.latSum / float64(a.calls)
	f.AvgMs = &avg
	lats := make([]float64, 0, len(a.byLatency))
	for l := range a.byLatency {
		lats = append(lats, l)
	}
	slices.Sort(lats)
	pct := func(n int64) *float64 {
		var cw int64
		for _, l := range lats {
			cw += a.byLatency[l]
			if cw*100 >= n*a.calls {
				return &l
			}
		}
		return nil
	}
	f.P50Ms, f.P95Ms, f.P99Ms = pct(50), pct(95), pct(99)
	return f
}

// top returns the GroupLimit busiest groups, busiest first, ties by name,
// as the Metrics API ranks them (sortby=sum(message_count)).
func top(m map[string]*agg) []GroupJSON {
	out := make([]GroupJSON, 0, len(m))
	for name, a := range m {
		out = append(out, GroupJSON{Name: name, Figures: a.figures()})
	}
	slices.SortFunc(out, func(x, y GroupJSON) int {
		if c := cmp.Compare(y.Calls, x.Calls); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out[:min(len(out), GroupLimit)]
}

// sortStatuses orders statuses by code.
func sortStatuses(s []StatusJSON) {
	slices.SortFunc(s, func(x, y StatusJSON) int {
		a, _ := strconv.Atoi(x.Status)
		b, _ := strconv.Atoi(y.Status)
		return cmp.Compare(a, b)
	})
}

// copiedDays are the whole UTC days of [from, to) whose calls of t's
// company can be read from rollup.CallsTable: folded, with no event
// ingested since (stats.FindCover's rules, the day periods of its cover).
func copiedDays(ctx context.Context, q stats.Queryer, t *Token, from, to time.Time) ([][2]time.Time, error) {
	p := &stats.Plan{Org: t.Org, Env: t.Env, From: from, To: to}
	c, err := stats.FindCover(ctx, q, p, rollup.Families[0])
	if err != nil || c == nil {
		return nil, err
	}
	for _, pt := range c.Parts {
		if pt.Grain == rollup.Day {
			return pt.Ranges, nil
		}
	}
	return nil, nil
}

// callsQuery numbers the arguments of onePassSQL: $1 org, $2 env, $3 the
// customer's id, then the ranges' bounds.
type callsQuery struct{ args []any }

func (q *callsQuery) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// branches are the SELECTs of t's calls of [from, to): one per range of
// copied days from rollup.CallsTable, one per range between them from the
// events table. Each is a plain range of ts, which lets DuckDB skip row
// groups by their bounds; in the copy, the company's key does so too.
func (q *callsQuery) branches(t *Token, from, to time.Time, copied [][2]time.Time) []string {
	var out []string
	events := func(a, b time.Time) {
		out = append(out, fmt.Sprintf("SELECT %s FROM %s WHERE org = $1 AND env = $2 AND %s = $3 AND ts >= %s AND ts < %s",
			callsColumns, stats.Table, t.Customer.Column(), q.arg(a), q.arg(b)))
	}
	start := from
	for _, r := range copied {
		if start.Before(r[0]) {
			events(start, r[0])
		}
		out = append(out, fmt.Sprintf("SELECT %s FROM %s WHERE ck = %s AND org = $1 AND env = $2 AND company_id = $3 AND ts >= %s AND ts < %s",
			callsColumns, rollup.CallsTable, q.arg(rollup.CompanyKey(t.Customer.ID)), q.arg(r[0]), q.arg(r[1])))
		start = r[1]
	}
	if start.Before(to) || len(out) == 0 {
		events(start, to)
	}
	return out
}
