package stats

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/apimeter/apimeter/rollup"
)

// Top users (companies, API keys) by calls over a month is a dashboard's
// first question, and with a million users it is the costly one: the
// month's day rows hold a row per user and day, all of which the plain
// query sums to rank them. The embedded store ranks each folded period's
// values (rollup.TopTable): the TopN with the most calls, and a bound on
// the calls of every other value. From those, without reading the
// rollups:
//
//   - a value's calls over the range are at least the sum of its listed
//     calls (plus its calls in the events read for the rest of the range),
//     and at most that plus the bound of each period that does not list it;
//   - a value listed nowhere has at most the sum of all the bounds.
//
// When the page's last rank (offset + limit) has a lower bound L above
// that sum, only the values whose upper bound reaches L can be on the
// page; their calls are made exact from the lists and, for the periods
// that do not list one of them, from that value's own rows, and they are
// ranked among themselves. Otherwise (flat usage, a store ranked in part)
// the plain query runs.

// rankedColumn returns the column p ranks by calls when the ranks can
// answer it: one dimension that f ranks, groups ranked by their calls
// (most first, no topk cut inside the page) with no filter and no time
// buckets, and calls the only metric selected.
func rankedColumn(p *Plan, f rollup.Family) (string, bool) {
	if p.Cover == nil || f.Rank == "" || len(p.Dimensions) != 1 || p.Dimensions[0].column != f.Rank {
		return "", false
	}
	if p.Filter != nil || p.TimeUnit != "" || p.Unordered || !p.Desc || (p.TopK > 0 && p.TopK < p.Offset+p.Limit) {
		return "", false
	}
	if p.Offset+p.Limit > 10*rollup.TopN {
		return "", false
	}
	for _, s := range p.selections() {
		if s.Metric.kind != kindCount {
			return "", false
		}
	}
	return f.Rank, true
}

// period is one folded period of a cover, or edges: the rest of the
// range, read from the events.
type period struct {
	g  rollup.Grain
	ts time.Time
}

var edges = period{g: "events"}

// gapRows are the rows (col, weight) of the events in gaps, one branch per
// range (a plain range on ts lets DuckDB skip row groups, a disjunction of
// ranges does not), with cond ANDed when not empty.
func gapRows(b *sqlBuilder, p *Plan, col string, gaps [][2]time.Time, cond string) string {
	org, env := b.arg(p.Org), b.arg(p.Env)
	if cond != "" {
		cond = " AND " + cond
	}
	branches := make([]string, len(gaps))
	for i, g := range gaps {
		branches[i] = fmt.Sprintf("SELECT %s, weight FROM %s WHERE org = %s AND env = %s AND %s%s", col, Table, org, env, b.ranges("ts", [][2]time.Time{g}), cond)
	}
	return strings.Join(branches, " UNION ALL ")
}

// ranked is what the ranks and the events of the edges say of one value.
type ranked struct {
	lo, hi int64    // its calls over the range are within [lo, hi]
	maxW   int64    // the largest weight among the calls counted in lo
	in     []period // the periods with a bound that list it
}

// readRanks reads the ranks of p's covered periods for col, and ranks the
// events of the rest of the range (p.Cover.Gaps) as one more period,
// edges. It returns the values seen, the most calls a value seen nowhere
// can have, the periods, and false when a covered period has no ranks
// (folded before the store kept them). The periods returned are those
// with a bound: one without lists every value it has, and holds nothing
// more for another.
func readRanks(ctx context.Context, q Queryer, d Dialect, p *Plan, col string) (map[string]*ranked, int64, []period, bool, error) {
	b := &sqlBuilder{d: d}
	var branches []string
	var periods []period
	dim := b.arg(col)
	for _, pt := range p.Cover.Parts {
		step := time.Hour
		if pt.Grain == rollup.Day {
			step = 24 * time.Hour
		}
		grain := b.arg(string(pt.Grain))
		// One branch per range: plain ranges on ts let DuckDB skip row
		// groups.
		for _, r := range pt.Ranges {
			branches = append(branches, fmt.Sprintf("SELECT grain, ts, rk, value, weight, max_weight, org, env FROM %s WHERE dim = %s AND grain = %s AND %s",
				rollup.TopTable, dim, grain, b.ranges("ts", [][2]time.Time{r})))
			for t := r[0]; t.Before(r[1]); t = t.Add(step) {
				periods = append(periods, period{pt.Grain, t})
			}
		}
	}
	query := fmt.Sprintf(`SELECT grain, ts, rk, value, weight, max_weight FROM (%s) AS r WHERE (org = %s AND env = %s) OR rk = 0`,
		strings.Join(branches, " UNION ALL "), b.arg(p.Org), b.arg(p.Env))
	rows, err := q.QueryContext(ctx, query, b.args...)
	if err != nil {
		return nil, 0, nil, false, fmt.Errorf("ranks: %w", err)
	}
	type listing struct {
		p     period
		v     string
		w, mw int64
	}
	marked := map[period]bool{}
	bound := map[period]int64{} // the calls of rank TopN+1: at least any unlisted value's
	var lists []listing
	for rows.Next() {
		var g, v string
		var ts time.Time
		var rk int
		var w, mw int64
		if err := rows.Scan(&g, &ts, &rk, &v, &w, &mw); err != nil {
			rows.Close()
			return nil, 0, nil, false, fmt.Errorf("ranks: %w", err)
		}
		pd := period{rollup.Grain(g), ts.UTC()}
		switch {
		case rk == 0:
			marked[pd] = true
		case rk > rollup.TopN:
			bound[pd] = w
		default:
			lists = append(lists, listing{pd, v, w, mw})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, nil, false, fmt.Errorf("ranks: %w", err)
	}
	if len(marked) != len(periods) {
		return nil, 0, nil, false, nil
	}
	// The rest of the range (the edges, periods not folded yet or with
	// late events) is ranked the same way from the events, as one more
	// period.
	if gaps := p.Cover.Gaps(p.From, p.To); len(gaps) > 0 {
		b := &sqlBuilder{d: d}
		query := fmt.Sprintf("SELECT %s AS v, SUM(weight) AS w, MAX(weight) FROM (%s) AS g GROUP BY 1 ORDER BY w DESC LIMIT %d",
			col, gapRows(b, p, col, gaps, ""), rollup.TopN+1)
		n := 0
		if err := scanSums(ctx, q, query, b.args, func(v string, w, mw int64) {
			if n++; n > rollup.TopN {
				bound[edges] = w
			} else {
				lists = append(lists, listing{edges, v, w, mw})
			}
		}); err != nil {
			return nil, 0, nil, false, fmt.Errorf("ranks: edges: %w", err)
		}
		periods = append(periods, edges)
	}
	var total int64
	for _, w := range bound {
		total += w
	}
	vals := map[string]*ranked{}
	for _, l := range lists {
		r := vals[l.v]
		if r == nil {
			r = &ranked{hi: total}
			vals[l.v] = r
		}
		r.lo += l.w
		r.hi += l.w - bound[l.p]
		r.maxW = max(r.maxW, l.mw)
		if _, ok := bound[l.p]; ok {
			r.in = append(r.in, l.p)
		}
	}
	// Only the periods with a bound are left to look up.
	var bounded []period
	for _, pd := range periods {
		if _, ok := bound[pd]; ok {
			bounded = append(bounded, pd)
		}
	}
	return vals, total, bounded, true, nil
}

// scanSums runs query, whose rows are (value, calls, largest weight).
func scanSums(ctx context.Context, q Queryer, query string, args []any, f func(v string, w, mw int64)) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v string
		var w, mw int64
		if err := rows.Scan(&v, &w, &mw); err != nil {
			return err
		}
		f(v, w, mw)
	}
	return rows.Err()
}

// candidates are the values that can be among the first n by calls, or
// false when the bounds do not settle it.
func candidates(vals map[string]*ranked, total int64, n int) ([]string, bool) {
	var out []string
	if len(vals) < n {
		if total > 0 {
			return nil, false // values seen nowhere may fill the page
		}
		for v := range vals {
			out = append(out, v)
		}
		return out, len(out) > 0
	}
	lows := make([]int64, 0, len(vals))
	for _, r := range vals {
		lows = append(lows, r.lo)
	}
	sort.Slice(lows, func(i, j int) bool { return lows[i] > lows[j] })
	floor := lows[n-1] // n values have at least this many calls
	if total >= floor {
		return nil, false // a value seen nowhere could reach the page
	}
	for v, r := range vals {
		if r.hi >= floor {
			out = append(out, v)
		}
	}
	return out, len(out) <= maxCandidates(n)
}

// maxCandidates bounds the values a ranked answer sums exactly.
func maxCandidates(n int) int { return 4*n + 100 }

// maxLookups bounds the (period, value) rows a ranked answer reads from the
// rollup tables for candidates some periods do not list.
const maxLookups = 256

// runRanked answers p from the ranks when they settle which values can
// be on its page; ok is false when the plain query must run. The page's
// values are exact: a candidate's calls are its listed calls, its calls
// in the events of the edges, and its rows of the periods that do not list
// it, read by value.
func runRanked(ctx context.Context, q Queryer, d Dialect, p *Plan) (res *Result, ok bool, err error) {
	start := time.Now()
	col, ok := rankedColumn(p, p.Cover.Family)
	if !ok {
		return nil, false, nil
	}
	vals, total, periods, ok, err := readRanks(ctx, q, d, p, col)
	if err != nil || !ok {
		return nil, false, err
	}
	cands, ok := candidates(vals, total, p.Offset+p.Limit)
	if !ok {
		return nil, false, nil
	}
	// The periods each candidate is not listed in are read from its rows.
	b := &sqlBuilder{d: d}
	gaps := p.Cover.Gaps(p.From, p.To)
	var branches []string
	for _, v := range cands {
		r := vals[v]
		if len(r.in) == len(periods) {
			continue
		}
		listed := make(map[period]bool, len(r.in))
		for _, pd := range r.in {
			listed[pd] = true
		}
		for _, pd := range periods {
			if listed[pd] {
				continue
			}
			if len(branches) == maxLookups {
				return nil, false, nil
			}
			if pd == edges {
				branches = append(branches, fmt.Sprintf("SELECT %s, weight, weight AS max_weight FROM (%s) AS g",
					col, gapRows(b, p, col, gaps, col+" = "+b.arg(v))))
				continue
			}
			branches = append(branches, fmt.Sprintf("SELECT %s, weight, max_weight FROM %s WHERE org = %s AND env = %s AND ts = %s AND %s = %s",
				col, p.Cover.Family.Table(pd.g), b.arg(p.Org), b.arg(p.Env), b.arg(pd.ts), col, b.arg(v)))
		}
	}
	// vals is this answer's own: the candidates' lo become their calls.
	if len(branches) > 0 {
		query := fmt.Sprintf("SELECT %s, SUM(weight), MAX(max_weight) FROM (%s) GROUP BY 1", col, strings.Join(branches, " UNION ALL "))
		if err := scanSums(ctx, q, query, b.args, func(v string, w, mw int64) {
			if r := vals[v]; r != nil {
				r.lo += w
				r.maxW = max(r.maxW, mw)
			}
		}); err != nil {
			return nil, false, fmt.Errorf("stats query: ranked values: %w", err)
		}
	}
	// Every value that can be on the page is in cands, and they rank
	// among themselves as among all: by calls, most first, then by value.
	sort.Slice(cands, func(i, j int) bool {
		a, b := vals[cands[i]].lo, vals[cands[j]].lo
		if a != b {
			return a > b
		}
		return cands[i] < cands[j]
	})
	res = &Result{}
	for i := p.Offset; i < len(cands) && i < p.Offset+p.Limit; i++ {
		r := vals[cands[i]]
		row := Row{Dims: []string{cands[i]}, Values: make([]*float64, len(p.Select))}
		for j := range row.Values {
			c := float64(r.lo)
			row.Values[j] = &c
		}
		if r.maxW > 1 {
			res.Weighted = true
		}
		res.Rows = append(res.Rows, row)
	}
	p.Ranked = true
	res.Elapsed = time.Since(start)
	return res, true, nil
}
