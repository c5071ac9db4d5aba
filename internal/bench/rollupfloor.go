package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/apimeter/apimeter/stats"
)

// rollupFloor is one of the seven questions written by hand over the tables
// the Metrics API reads for it: the rollup tables for the periods it takes
// from them, the events table for the rest, one plain SELECT per range
// (what the API's cover is), and the simplest aggregate over their union.
// It is the floor the API's generated SQL is held to: the same rows read,
// without the API's generality.
//
// In the templates {T}, {W} and {E} stand for the row's time, its calls
// and its calls with an error status: columns of a rollup table, or
// expressions over an event row.
type rollupFloor struct {
	sel    string // the columns each source row gives
	filter string // a condition on both kinds of row, "" for none; $3 is the query's argument
	outer  string // the aggregate over the union (%s), on DuckDB
	outerC string // the same on ClickHouse, when it differs
}

// floorSQL renders f over the cover of p (nil: the events alone) for the
// store's dialect; its arguments are $1 org, $2 env and $3 the query's
// own, if any.
func (f rollupFloor) floorSQL(p *stats.Plan, cover *stats.Cover, ch bool) string {
	lit := func(t time.Time) string {
		if ch {
			return fmt.Sprintf("toDateTime(%d, 'UTC')", t.Unix())
		}
		return "TIMESTAMP '" + t.UTC().Format("2006-01-02 15:04:05.000") + "'"
	}
	branch := func(table, tcol, w, e string, r [2]time.Time) string {
		sel := strings.NewReplacer("{T}", tcol, "{W}", w, "{E}", e).Replace(f.sel)
		q := fmt.Sprintf("SELECT %s FROM %s WHERE org = $1 AND env = $2 AND %s >= %s AND %s < %s", sel, table, tcol, lit(r[0]), tcol, lit(r[1]))
		if f.filter != "" {
			q += " AND " + f.filter
		}
		return q
	}
	isErr := "CASE WHEN (status >= 400 OR status = 0) THEN weight ELSE 0 END"
	rt, rw, re := "ts", "weight", "err_weight"
	if ch {
		isErr, rt, rw, re = "if(status >= 400 OR status = 0, weight, 0)", "t", "calls", "err_calls"
	}
	var parts []string
	gaps := [][2]time.Time{{p.From, p.To}}
	if cover != nil {
		for _, pt := range cover.Parts {
			for _, r := range pt.Ranges {
				parts = append(parts, branch(cover.Family.Table(pt.Grain), rt, rw, re, r))
			}
		}
		gaps = cover.Gaps(p.From, p.To)
	}
	// The rest from the events: on ClickHouse in whole seconds, its time
	// column's unit, as the Metrics API reads it (the questions' bounds
	// are whole minutes).
	for _, g := range gaps {
		if ch {
			g = [2]time.Time{g[0].Truncate(time.Second), g[1].Add(time.Second - 1).Truncate(time.Second)}
		}
		parts = append(parts, branch("events", "ts", "weight", isErr, g))
	}
	outer := f.outer
	if ch && f.outerC != "" {
		outer = f.outerC
	}
	return fmt.Sprintf(outer, strings.Join(parts, " UNION ALL "))
}

// rollupFloors are the seven questions' floors over the API's tables, in
// benchQueries' order.
func rollupFloors(ch bool) []rollupFloor {
	day, hour := "epoch_ms(date_trunc('day', {T}))", "epoch_ms(date_trunc('hour', {T}))"
	if ch {
		day, hour = "toInt64(toUInt32(toStartOfDay({T}))) * 1000", "toInt64(toUInt32(toStartOfHour({T}))) * 1000"
	}
	const top = "SELECT k, sum(c) AS c FROM (%s) AS u GROUP BY k ORDER BY c DESC, k LIMIT 10"
	return []rollupFloor{
		{sel: "user_id AS k, {W} AS c", outer: top},
		{sel: "company_id AS k, {E} AS c", outer: top},
		{sel: day + " AS b, {W} AS c", filter: "user_id = $3", outer: "SELECT b, sum(c) FROM (%s) AS u GROUP BY b"},
		{sel: hour + " AS b, {W} AS c", filter: "company_id = $3", outer: "SELECT b, sum(c) FROM (%s) AS u GROUP BY b"},
		{sel: "route AS k, latency_ms AS v, {W} AS w",
			outer:  "SELECT k, min(v) FILTER (WHERE cw * 100 >= 95 * tw) FROM (SELECT k, v, sum(w) OVER (PARTITION BY k ORDER BY v) AS cw, sum(w) OVER (PARTITION BY k) AS tw FROM (SELECT k, v, sum(w) AS w FROM (%s) AS u GROUP BY k, v) AS g) AS c GROUP BY k",
			outerC: "SELECT k, quantileExactWeighted(0.95)(v, toUInt64(w)) FROM (%s) GROUP BY k"},
		{sel: "api_name AS k, " + day + " AS b, {W} AS c", outer: "SELECT k, b, sum(c) FROM (%s) AS u GROUP BY k, b"},
		{sel: "{W} AS c, {E} AS e", filter: "api_key_id = $3", outer: "SELECT sum(c), sum(e) FROM (%s) AS u"},
	}
}

// apiCover is the cover the Metrics API reads for a question: on DuckDB
// the periods folded (as of now), on ClickHouse every whole period; nil
// when the question is not one the rollups answer.
func apiCover(ctx context.Context, db *sql.DB, org, env, dims string, params url.Values, ch bool) (*stats.Plan, *stats.Cover, error) {
	p, err := stats.Parse(org, env, dims, params)
	if err != nil {
		return nil, nil, err
	}
	f, ok := stats.Eligible(p)
	if !ok {
		return p, nil, nil
	}
	if ch {
		return p, stats.WholeCover(p, f), nil
	}
	c, err := stats.FindCover(ctx, db, p, f)
	return p, c, err
}
