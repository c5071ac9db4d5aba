package stats

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apimeter/apimeter/rollup"
	"github.com/apimeter/apimeter/store/detail"
)

// Rollups (package rollup) hold the events summed per hour and per day by a
// family's key columns. A query whose dimensions, filter fields and metrics
// a family has, with time buckets the periods align to, reads the whole
// days of its range from the family's day table, the other whole hours
// from its hour table and the rest (partial hours at the edges, periods
// not folded yet or with late events) from the events table, in one SQL
// statement: the answer is the same, with far fewer rows read.

// Cover is the part of a plan's time range read from rollup tables.
type Cover struct {
	Family rollup.Family
	// Parts are the ranges read from each table; ranges are ascending and
	// disjoint, and parts do not overlap.
	Parts []CoverPart
}

// CoverPart is the ranges of p's time range read from one rollup table.
type CoverPart struct {
	Grain  rollup.Grain
	Ranges [][2]time.Time
}

// Eligible returns the first rollup family that can answer p (its
// dimensions, filter fields, sort and metrics), or false.
func Eligible(p *Plan) (rollup.Family, bool) {
	if _, ok := grainsFor(p); !ok {
		return rollup.Family{}, false
	}
	for _, f := range rollup.Families {
		if familyAnswers(f, p) {
			return f, true
		}
	}
	return rollup.Family{}, false
}

// grainsFor are the grains whose periods fall inside p's time buckets:
// hours for buckets of an hour or more in a zone a whole number of hours
// from UTC, days as well for day, week and month buckets in UTC.
func grainsFor(p *Plan) ([]rollup.Grain, bool) {
	switch p.TimeUnit {
	case "":
		return []rollup.Grain{rollup.Hour, rollup.Day}, true
	case "hour", "day", "week", "month":
		if p.TZO%60 != 0 {
			return nil, false
		}
		if p.TimeUnit == "hour" || p.TZO != 0 {
			return []rollup.Grain{rollup.Hour}, true
		}
		return []rollup.Grain{rollup.Hour, rollup.Day}, true
	}
	return nil, false
}

func familyAnswers(f rollup.Family, p *Plan) bool {
	for _, d := range p.Dimensions {
		if !f.Has(d.column) {
			return false
		}
	}
	for _, s := range p.selections() {
		switch s.Metric.kind {
		case kindCount, kindError, kindTPS:
		case kindValue:
			if s.Metric.column != colLatency {
				return false
			}
			// Sums and averages come from lat_sum; min, max and
			// percentiles need the latency histogram.
			if s.Agg != aggSum && s.Agg != aggAvg && !f.Latency {
				return false
			}
		default:
			return false
		}
	}
	return exprOn(f, p.Filter)
}

func exprOn(f rollup.Family, e Expr) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *Logic:
		return exprOn(f, e.L) && exprOn(f, e.R)
	case *Cond:
		return f.Has(e.Dim.column)
	}
	return false
}

// built says whether a period can be read from the rollups.
type built func(g rollup.Grain, start time.Time) bool

// cover lays p's time range out over whole days (when allowed) and whole
// hours that ok accepts within [lo, hi); the rest is left to the events
// table.
func cover(p *Plan, f rollup.Family, lo, hi time.Time, ok built) *Cover {
	grains, _ := grainsFor(p)
	days := len(grains) == 2
	c := &Cover{Family: f}
	add := func(g rollup.Grain, from, to time.Time) {
		for i := range c.Parts {
			if c.Parts[i].Grain == g {
				rs := c.Parts[i].Ranges
				if n := len(rs); n > 0 && rs[n-1][1].Equal(from) {
					rs[n-1][1] = to
				} else {
					c.Parts[i].Ranges = append(rs, [2]time.Time{from, to})
				}
				return
			}
		}
		c.Parts = append(c.Parts, CoverPart{Grain: g, Ranges: [][2]time.Time{{from, to}}})
	}
	const day = 24 * time.Hour
	t := p.From
	if t.Before(lo) {
		t = lo
	}
	end := p.To
	if end.After(hi) {
		end = hi
	}
	for t.Before(end) {
		if days && t.Truncate(day).Equal(t) && !t.Add(day).After(p.To) && ok(rollup.Day, t) {
			add(rollup.Day, t, t.Add(day))
			t = t.Add(day)
			continue
		}
		if t.Truncate(time.Hour).Equal(t) && !t.Add(time.Hour).After(p.To) && ok(rollup.Hour, t) {
			add(rollup.Hour, t, t.Add(time.Hour))
			t = t.Add(time.Hour)
			continue
		}
		// Raw events up to the next hour.
		t = t.Truncate(time.Hour).Add(time.Hour)
	}
	if len(c.Parts) == 0 {
		return nil
	}
	sort.Slice(c.Parts, func(i, j int) bool { return c.Parts[i].Grain < c.Parts[j].Grain }) // "day" before "hour"
	return c
}

// covered are all the ranges read from rollups, ascending.
func (c *Cover) covered() [][2]time.Time {
	var all [][2]time.Time
	for _, pt := range c.Parts {
		all = append(all, pt.Ranges...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i][0].Before(all[j][0]) })
	return all
}

// Gaps are the parts of [from, to) outside the covered ranges: what a
// covered query reads from the events table.
func (c *Cover) Gaps(from, to time.Time) [][2]time.Time {
	var out [][2]time.Time
	start := from
	for _, r := range c.covered() {
		if start.Before(r[0]) {
			out = append(out, [2]time.Time{start, r[0]})
		}
		start = r[1]
	}
	if start.Before(to) {
		out = append(out, [2]time.Time{start, to})
	}
	return out
}

// FindCover returns the part of p's time range that f's tables answer on
// the embedded store, or nil: the periods folded, less those that received
// events ingested after they were folded (late events: retries, replays,
// backfills; those periods are read from the events table until the next
// pass folds them). q should be the transaction that then runs the query,
// so that both see one snapshot.
func FindCover(ctx context.Context, q Queryer, p *Plan, f rollup.Family) (*Cover, error) {
	from := p.From.Truncate(time.Hour)
	if from.Before(p.From) {
		from = from.Add(time.Hour)
	}
	to := p.To.Truncate(time.Hour)
	if !from.Before(to) {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT grain, start, built_at FROM `+rollup.PeriodsTable+` WHERE start >= $1 AND start < $2`, from.Truncate(24*time.Hour), to)
	if err != nil {
		return nil, fmt.Errorf("rollup periods: %w", err)
	}
	type key struct {
		g rollup.Grain
		t int64
	}
	builtAt := map[key]time.Time{}
	// lo and hi bound the periods found, so that a range of years around
	// them is not walked hour by hour.
	var oldest, lo, hi time.Time
	for rows.Next() {
		var g string
		var start, at time.Time
		if err := rows.Scan(&g, &start, &at); err != nil {
			rows.Close()
			return nil, err
		}
		builtAt[key{rollup.Grain(g), start.Unix()}] = at
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
		if lo.IsZero() || start.Before(lo) {
			lo = start
		}
		if start.After(hi) {
			hi = start
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(builtAt) == 0 {
		return nil, nil
	}
	// The newest ingest time per hour of the events ingested since the
	// oldest fold. Events are stored in ingest order, so the ingested_at
	// bound lets DuckDB skip every row group written before it.
	rows, err = q.QueryContext(ctx, `SELECT date_trunc('hour', ts) AS h, max(ingested_at) FROM `+Table+`
WHERE org = $1 AND env = $2 AND ingested_at >= $3 AND ts >= $4 AND ts < $5 GROUP BY h`, p.Org, p.Env, oldest, from, to)
	if err != nil {
		return nil, fmt.Errorf("late events: %w", err)
	}
	late := map[int64]time.Time{}
	for rows.Next() {
		var h, at time.Time
		if err := rows.Scan(&h, &at); err != nil {
			rows.Close()
			return nil, err
		}
		late[h.Unix()] = at
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ok := func(g rollup.Grain, start time.Time) bool {
		at, found := builtAt[key{g, start.Unix()}]
		if !found {
			return false
		}
		n := 1
		if g == rollup.Day {
			n = 24
		}
		for i := range n {
			if in, ok := late[start.Add(time.Duration(i)*time.Hour).Unix()]; ok && !in.Before(at) {
				return false
			}
		}
		return true
	}
	return cover(p, f, lo, hi.Add(24*time.Hour), ok), nil
}

// WholeCover is the cover of p's time range when every complete period is
// in f's tables (ClickHouse, where materialized views fill them as events
// are inserted): whole days and hours, the rest from the events table.
func WholeCover(p *Plan, f rollup.Family) *Cover {
	return cover(p, f, p.From, p.To, func(rollup.Grain, time.Time) bool { return true })
}

// rollupColumns are the columns every source row of a covered plan has.
func rollupColumns(f rollup.Family) string {
	return "org, env, ts, " + strings.Join(f.Columns(), ", ")
}

func (b *sqlBuilder) ranges(col string, rs [][2]time.Time) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("(%s >= %s AND %s < %s)", col, b.arg(r[0]), col, b.arg(r[1]))
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// coverSource is the rows of p's time range: the rollup tables' for the
// covered periods and the events table's for the rest, with the same
// columns (an event row as a rollup row of its own).
func (b *sqlBuilder) coverSource(p *Plan, org, env string) string {
	f := p.Cover.Family
	cols := rollupColumns(f)
	// One branch per range: a plain range on ts is what lets DuckDB skip
	// row groups by their min and max (a disjunction of ranges is not).
	var branches []string
	for _, pt := range p.Cover.Parts {
		for _, r := range pt.Ranges {
			branches = append(branches, fmt.Sprintf("SELECT %s, weight, err_weight, lat_sum, max_weight FROM %s WHERE org = %s AND env = %s AND %s",
				cols, f.Table(pt.Grain), org, env, b.ranges("ts", [][2]time.Time{r})))
		}
	}
	for _, g := range p.Cover.Gaps(p.From, p.To) {
		branches = append(branches, fmt.Sprintf("SELECT %s, weight, CASE WHEN %s THEN weight ELSE 0 END AS err_weight, latency_ms * weight AS lat_sum, weight AS max_weight FROM %s WHERE org = %s AND env = %s AND %s",
			cols, detail.IsErrorSQL, Table, org, env, b.ranges("ts", [][2]time.Time{g})))
	}
	return "(" + strings.Join(branches, " UNION ALL ") + ") AS src"
}

// tablesUsed names the tables p reads, for the metaData notice.
func tablesUsed(p *Plan) string {
	if p.Cover == nil {
		return Table
	}
	var names []string
	if p.Ranked {
		names = append(names, rollup.TopTable)
	}
	for _, pt := range p.Cover.Parts {
		names = append(names, p.Cover.Family.Table(pt.Grain))
	}
	if len(p.Cover.Gaps(p.From, p.To)) > 0 {
		names = append(names, Table)
	}
	return strings.Join(names, ", ")
}

// RunRollups runs p as Run does, reading what it can from the rollups
// (Eligible): on DuckDB the periods folded so far, found in the same
// transaction as the query runs in; on ClickHouse every complete period.
// It sets p.Cover.
func RunRollups(ctx context.Context, db *sql.DB, d Dialect, p *Plan) (*Result, error) {
	f, ok := Eligible(p)
	if !ok {
		return Run(ctx, db, d, p)
	}
	if _, isCH := d.(ClickHouse); isCH {
		p.Cover = WholeCover(p, f)
		return Run(ctx, db, d, p)
	}
	// DuckDB's driver has no read-only transactions. ctx's end cancels the
	// queries but does not roll back: database/sql would do that, and give
	// the connection back, on a goroutine of its own after this returned,
	// possibly after the store was closed; the deferred Rollback does it.
	tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("stats query: %w", err)
	}
	defer tx.Rollback()
	if p.Cover, err = FindCover(ctx, tx, p, f); err != nil {
		return nil, fmt.Errorf("stats query: %w", err)
	}
	if p.Cover != nil {
		if res, ok, err := runRanked(ctx, tx, d, p); ok || err != nil {
			return res, err
		}
	}
	return Run(ctx, tx, d, p)
}

// aggExpr is the aggregate of one selection in table t's SQL, over events
// rows or, when b reads a cover, over rollup rows: calls and errors are
// summed columns there, sums and averages of the latency come from lat_sum
// (the only value column Eligible lets through; min, max and percentiles
// read latency_ms as events rows do, the families that answer them keeping
// it as a key).
func (b *sqlBuilder) aggExpr(t *aggSQL, s Selection) string {
	if b.rolled {
		_, ch := b.d.(ClickHouse)
		m := s.Metric
		sum, div := "CAST(SUM(%s) AS DOUBLE)", "CAST(SUM(lat_sum) AS DOUBLE) / CAST(SUM(weight) AS DOUBLE)"
		if ch {
			sum, div = "toFloat64(sum(%s))", "(toFloat64(sum(lat_sum)) / toFloat64(sum(weight)))"
		}
		switch {
		case m.kind == kindCount || m.kind == kindTPS:
			return fmt.Sprintf(sum, "weight")
		case m.kind == kindError:
			return fmt.Sprintf(sum, "err_weight")
		case s.Agg == aggSum:
			return fmt.Sprintf(sum, "lat_sum")
		case s.Agg == aggAvg:
			return div
		}
	}
	return t.expr(s)
}
