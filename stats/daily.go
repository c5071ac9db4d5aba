package stats

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// The daily table holds the events pre-aggregated per UTC day by org, env,
// route, method, status and latency, with the summed weight (and the
// largest) per row; it is built by the store (store/duckdb, BuildDaily).
// A query whose dimensions, filter fields and metrics are all among those
// columns, over a time range with whole UTC days that the table covers,
// reads those days from it and the rest of the range from the events
// table, in one SQL statement: answers are the same, with fewer rows to
// read. Latency is a key, so percentiles stay exact.

// Cover is the part of a plan's time range read from the daily table:
// ranges of whole UTC days, ascending and disjoint.
type Cover struct {
	Table  string
	Ranges [][2]time.Time
}

// dailyColumns are the events columns the daily table keeps.
var dailyColumns = map[string]bool{"route": true, "method": true, "status": true}

// DailyEligible says the daily table can answer p's metrics, dimensions
// and filter: counts, errors, tps and any aggregate of total_response_time,
// grouped and filtered by route, request_verb and response_status_code,
// without time buckets or with day, week or month buckets in UTC.
func DailyEligible(p *Plan) bool {
	switch p.TimeUnit {
	case "":
	case "day", "week", "month":
		if p.TZO != 0 {
			return false
		}
	default:
		return false
	}
	for _, d := range p.Dimensions {
		if !dailyColumns[d.column] {
			return false
		}
	}
	for _, s := range append(append([]Selection{}, p.Select...), p.SortBy...) {
		switch s.Metric.kind {
		case kindCount, kindError, kindTPS:
		case kindValue:
			if s.Metric.column != colLatency {
				return false
			}
		default:
			return false
		}
	}
	return exprOnDaily(p.Filter)
}

func exprOnDaily(e Expr) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *Logic:
		return exprOnDaily(e.L) && exprOnDaily(e.R)
	case *Cond:
		return dailyColumns[e.Dim.column]
	}
	return false
}

// FindCover returns the whole UTC days of p's time range that table
// answers, or nil when there are none: the days it has built, less the
// days that received events ingested after they were built (late events;
// those days are read from the events table until the store rebuilds
// them). q should be a transaction that then runs the query, so that both
// see one snapshot.
func FindCover(ctx context.Context, q Queryer, p *Plan, table string) (*Cover, error) {
	const day = 24 * time.Hour
	d0 := p.From.Truncate(day)
	if d0.Before(p.From) {
		d0 = d0.Add(day)
	}
	d1 := p.To.Truncate(day)
	if !d0.Before(d1) {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT day, built_at FROM `+table+`_days WHERE day >= $1 AND day < $2 ORDER BY day`, d0, d1)
	if err != nil {
		return nil, fmt.Errorf("daily table days: %w", err)
	}
	var days []time.Time
	var oldest time.Time
	for rows.Next() {
		var d, built time.Time
		if err := rows.Scan(&d, &built); err != nil {
			rows.Close()
			return nil, err
		}
		days = append(days, d.UTC())
		if oldest.IsZero() || built.Before(oldest) {
			oldest = built
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(days) == 0 {
		return nil, nil
	}
	// Events are stored in ingest order, so the ingested_at bound lets
	// DuckDB skip every row group written before the oldest build.
	rows, err = q.QueryContext(ctx, `SELECT DISTINCT d.day FROM `+Table+` e JOIN `+table+`_days d ON date_trunc('day', e.ts) = d.day
WHERE e.org = $1 AND e.env = $2 AND e.ingested_at >= $3 AND e.ingested_at >= d.built_at AND e.ts >= $4 AND e.ts < $5`,
		p.Org, p.Env, oldest, d0, d1)
	if err != nil {
		return nil, fmt.Errorf("late events: %w", err)
	}
	late := map[time.Time]bool{}
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, err
		}
		late[d.UTC()] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	c := &Cover{Table: table}
	for _, d := range days {
		if late[d] {
			continue
		}
		if n := len(c.Ranges); n > 0 && c.Ranges[n-1][1].Equal(d) {
			c.Ranges[n-1][1] = d.Add(day)
		} else {
			c.Ranges = append(c.Ranges, [2]time.Time{d, d.Add(day)})
		}
	}
	if len(c.Ranges) == 0 {
		return nil, nil
	}
	return c, nil
}

// gaps are the parts of [from, to) outside the covered ranges.
func (c *Cover) gaps(from, to time.Time) [][2]time.Time {
	var out [][2]time.Time
	start := from
	for _, r := range c.Ranges {
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

// coverSource is the rows of p's time range: the daily table's for the
// covered days and the events table's for the rest, with the same columns.
func (b *sqlBuilder) coverSource(p *Plan) string {
	const cols = "org, env, ts, route, method, status, latency_ms, weight"
	ranges := func(rs [][2]time.Time) string {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = fmt.Sprintf("(ts >= %s AND ts < %s)", b.arg(r[0]), b.arg(r[1]))
		}
		return strings.Join(parts, " OR ")
	}
	daily := fmt.Sprintf("SELECT %s, max_weight FROM %s WHERE %s", cols, p.Cover.Table, ranges(p.Cover.Ranges))
	gaps := p.Cover.gaps(p.From, p.To)
	if len(gaps) == 0 {
		return "(" + daily + ") AS src"
	}
	return fmt.Sprintf("(%s UNION ALL SELECT %s, weight AS max_weight FROM %s WHERE %s) AS src", daily, cols, Table, ranges(gaps))
}

// tablesUsed names the tables p reads, for the metaData notice.
func tablesUsed(p *Plan) string {
	if p.Cover == nil {
		return Table
	}
	if len(p.Cover.gaps(p.From, p.To)) == 0 {
		return p.Cover.Table
	}
	return p.Cover.Table + ", " + Table
}

// RunDaily runs p as Run does, reading the whole days that table covers
// from it when p allows (DailyEligible). The cover and the query are read
// in one transaction. It sets p.Cover.
func RunDaily(ctx context.Context, db *sql.DB, d Dialect, p *Plan, table string) (*Result, error) {
	if table == "" || !DailyEligible(p) {
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
	if p.Cover, err = FindCover(ctx, tx, p, table); err != nil {
		return nil, fmt.Errorf("stats query: %w", err)
	}
	return Run(ctx, tx, d, p)
}
