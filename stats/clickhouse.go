package stats

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/store/detail"
)

// ClickHouse is the dialect of store/clickhouse (ClickHouse 18.16 and
// later). That SQL has neither WITH subqueries nor window functions, so
// Build renders whole plans for it its own way (buildClickHouse): ranking
// by ORDER BY ... LIMIT on the aggregate, time series of ranked groups in
// arrays, percentiles by quantileExactWeighted, the same answers as
// DuckDB's. It reads the events
// table alone (no daily table: ClickHouse aggregates the raw rows fast
// enough).
type ClickHouse struct {
	// NoFinal reads the events table without FINAL: faster, but an event
	// delivered twice to different processes counts twice until ClickHouse
	// merges the parts holding it. The zero value reads with FINAL.
	NoFinal bool
}

func (ClickHouse) Name() string { return "ClickHouse" }

// Placeholder is clickhouse-go's numbered form; the driver binds on the
// client side, so the same $n may appear more than once.
func (ClickHouse) Placeholder(n int) string { return "$" + strconv.Itoa(n) }

// Bucket keys are bucket starts in local seconds since the epoch (Int64).
func (ClickHouse) Bucket(unit, ts, off string) string {
	local := fmt.Sprintf("toInt64(toUInt32(%s))", ts)
	if off != "" {
		local = fmt.Sprintf("(%s + %s * 60)", local, off)
	}
	switch unit {
	case "second":
		return local
	case "minute", "hour", "day":
		n := map[string]int{"minute": 60, "hour": 3600, "day": 86400}[unit]
		return fmt.Sprintf("(intDiv(%s, %d) * %d)", local, n, n)
	case "week":
		// Day 0 of the epoch was a Thursday: (day + 3) % 7 is the number
		// of days since Monday.
		day := fmt.Sprintf("intDiv(%s, 86400)", local)
		return fmt.Sprintf("((%s - (%s + 3) %% 7) * 86400)", day, day)
	}
	return fmt.Sprintf("(toInt64(toUInt16(toStartOfMonth(toDateTime(%s, 'UTC')))) * 86400)", local)
}

func (ClickHouse) BucketStart(key, off string) string {
	if off == "" {
		return fmt.Sprintf("(%s * 1000000)", key)
	}
	return fmt.Sprintf("((%s - %s * 60) * 1000000)", key, off)
}

func (ClickHouse) Basepath(col string) string { return fmt.Sprintf("extract(%s, '^/[^/]*')", col) }
func (ClickHouse) Text(expr string) string    { return "toString(" + expr + ")" }

// JSONText reads a top-level string of a JSON column. store/clickhouse
// keeps detail's api_version in a column of its own, read directly.
func (ClickHouse) JSONText(col, key string) string {
	if col == "detail" && key == "api_version" {
		return "api_version"
	}
	return fmt.Sprintf("visitParamExtractString(%s, '%s')", col, key)
}

// Like: ClickHouse's LIKE takes backslash as its escape without saying so.
func (ClickHouse) Like(expr, pattern string, not bool) string {
	op := "LIKE"
	if not {
		op = "NOT LIKE"
	}
	return fmt.Sprintf("%s %s %s", expr, op, pattern)
}

func (d ClickHouse) source() string {
	if d.NoFinal {
		return Table
	}
	return Table + " FINAL"
}

// chWhere is where for ClickHouse: ts holds whole seconds, exact for
// bounds on whole seconds; a bound with a fraction also compares ts_us,
// the request time in microseconds.
func (b *sqlBuilder) chWhere(p *Plan) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "org = %s AND env = %s", b.arg(p.Org), b.arg(p.Env))
	bound := func(t time.Time, op, usOp string) {
		if t.Nanosecond() == 0 {
			fmt.Fprintf(&sb, " AND ts %s toDateTime(%s, 'UTC')", op, b.arg(t.Unix()))
			return
		}
		fmt.Fprintf(&sb, " AND ts %s= toDateTime(%s, 'UTC') AND ts_us %s %s", op[:1], b.arg(t.Unix()), usOp, b.arg(t.UnixMicro()))
	}
	bound(p.From, ">=", ">=")
	bound(p.To, "<", "<")
	sb.WriteString(b.andFilter(p))
	return sb.String()
}

// andFilter is " AND (p's filter)", or "" without one.
func (b *sqlBuilder) andFilter(p *Plan) string {
	if p.Filter == nil {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(" AND (")
	b.expr(&sb, p.Filter)
	sb.WriteString(")")
	return sb.String()
}

// wholeSeconds says p's bounds fall on whole seconds, the unit of the
// events table's ts column.
func (p *Plan) wholeSeconds() bool {
	return p.From.Nanosecond() == 0 && p.To.Nanosecond() == 0
}

// How an aggregate block keys its groups by time bucket.
const (
	noBucket    = iota
	bucketKey   // by the bucket's key, b (see Bucket)
	bucketStart // by its start as the answer gives it (see BucketStart), b
)

// chAggBlock groups the selected rows by p's dimensions (d0, d1, ...) and
// bucket with one column per selection (named by names) and mw, the
// largest weight. It is one SELECT with no subquery of its own: every
// level of subqueries costs 18.16 another analysis of all below it, each
// branch of a cover included, which on a small range is most of the
// time the query takes.
func (b *sqlBuilder) chAggBlock(p *Plan, where string, bucket int, sels []Selection, names []string) string {
	cols := b.chDimCols(p)
	group := numbered("d", len(p.Dimensions))
	switch bucket {
	case bucketKey:
		cols = append(cols, b.d.Bucket(p.TimeUnit, "ts", b.tzo)+" AS b")
	case bucketStart:
		cols = append(cols, b.d.(ClickHouse).BucketStart(b.d.Bucket(p.TimeUnit, "ts", b.tzo), b.tzo)+" AS b")
	}
	if bucket != noBucket {
		group = append(group, "b")
	}
	for i, s := range sels {
		a := b.aggExpr(&clickhouseAggs, s)
		// Without keys ClickHouse answers an empty selection with one row
		// of zeros; DuckDB (and Apigee) with no value.
		if len(group) == 0 && s.Metric.kind != kindDistinct {
			a = "if(count() = 0, NULL, " + a + ")"
		}
		cols = append(cols, a+" AS "+names[i])
	}
	cols = append(cols, b.mwExpr()+" AS mw")
	return chSelect(cols, b.src, where, group)
}

// chDimCols are p's dimensions as the columns d0, d1, ...
func (b *sqlBuilder) chDimCols(p *Plan) []string {
	var cols []string
	for i, d := range p.Dimensions {
		cols = append(cols, b.dimExpr(d)+" AS d"+strconv.Itoa(i))
	}
	return cols
}

// chSelect is SELECT cols FROM src, with where when not empty, grouped by
// group when not empty.
func chSelect(cols []string, src, where string, group []string) string {
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + src
	if where != "" {
		q += " WHERE " + where
	}
	if len(group) > 0 {
		q += " GROUP BY " + strings.Join(group, ", ")
	}
	return q
}

// mwExpr is mw, the largest weight of a group's events: over rollup rows
// 2 for any sampled event (heavy counts those), else 1.
func (b *sqlBuilder) mwExpr() string {
	if b.rolled {
		return "toInt64(if(sum(heavy) > 0, 2, 1))"
	}
	return "max(weight)"
}

func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// buildClickHouse is Build for ClickHouse. Groups are ranked over the whole
// time range by the sort metrics (descending, ties by dimension values),
// the first topk kept, then ordered by sort and cut by offset and limit:
// an ORDER BY ... LIMIT offset, limit on the aggregate itself, preceded by
// an inner ORDER BY ... LIMIT topk when topk cuts before the page does;
// with time buckets, the groups' buckets ride along in an array (or, for
// sort metrics the buckets cannot be re-aggregated into, an inner join of
// the buckets on the ranked groups). Each shape keeps as few levels of
// subqueries as it can (see chAggBlock).
func buildClickHouse(p *Plan, d ClickHouse) Query {
	b := &sqlBuilder{d: d, src: d.source(), maxW: "weight"}
	if p.Cover != nil {
		b.src, b.rolled = b.chCoverSource(p, d), true
	}
	// Each branch of a cover holds only rows of org and env, within p's
	// range, that pass p's filter: checking every row again above the
	// UNION ALL is work 18.16 does not skip. (With a bound inside a
	// second, the events' branch reads whole seconds and ts_us cuts them
	// here.)
	where := ""
	if !p.chCovered() {
		where = b.chWhere(p)
	}
	if p.TimeUnit != "" && p.TZO != 0 {
		b.tzo = b.arg(int64(p.TZO))
	}
	q := Query{Dims: len(p.Dimensions), Bucket: p.TimeUnit != ""}
	mNames := numbered("m", len(p.Select))
	tsOrder := "DESC"
	if p.TSAscending {
		tsOrder = "ASC"
	}
	if len(p.Dimensions) == 0 {
		// The aggregate's columns are the answer's, in order.
		if q.Bucket {
			q.SQL = b.chAggBlock(p, where, bucketStart, p.Select, mNames) + " ORDER BY b " + tsOrder
		} else {
			q.SQL = b.chAggBlock(p, where, noBucket, p.Select, mNames)
		}
		q.Args = b.args
		return q
	}
	sortSels := p.SortBy
	if len(sortSels) == 0 {
		sortSels = p.Select[:1]
	}
	dimKeys := numbered("d", len(p.Dimensions))
	dimList := strings.Join(dimKeys, ", ")
	kNames := numbered("k", len(sortSels))
	order := func(keys []string, dir string) string {
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+" "+dir+" NULLS LAST")
		}
		for _, k := range dimKeys {
			parts = append(parts, k+" ASC")
		}
		return strings.Join(parts, ", ")
	}
	dir := "DESC"
	if !p.Desc {
		dir = "ASC"
	}
	page := func() string {
		return fmt.Sprintf(" LIMIT %s, %s", b.arg(int64(p.Offset)), b.arg(int64(p.Limit)))
	}
	// topKFirst says a topk cuts the groups before the page does.
	topKFirst := p.TopK != 0 && !(p.Desc && p.TopK >= p.Offset+p.Limit)
	// rankPage keeps the first topk groups of block by the sort keys,
	// then orders them for the page and cuts it, answering cols. With no
	// topk, or a topk the page does not reach past, that is one ORDER BY
	// ... LIMIT (a partial sort) on block itself, by keys, the sort keys'
	// expressions over its groups: sorting every group first is work
	// 18.16 does not skip. With a topk cut first, block must carry the
	// sort keys as columns kNames (keyCols), which the page is ordered by
	// above it.
	rankPage := func(block string, keys []string, cols string) string {
		if !topKFirst {
			return fmt.Sprintf("%s ORDER BY %s%s", block, order(keys, dir), page())
		}
		topK := " LIMIT " + b.arg(int64(p.TopK))
		return fmt.Sprintf("SELECT %s FROM (%s ORDER BY %s%s) ORDER BY %s%s", cols, block, order(kNames, "DESC"), topK, order(kNames, dir), page())
	}
	// keyCols are the sort keys as columns kNames of a block, when a
	// topk cuts first (see rankPage).
	keyCols := func(keys []string) []string {
		if !topKFirst {
			return nil
		}
		cols := make([]string, len(keys))
		for i, k := range keys {
			cols[i] = k + " AS " + kNames[i]
		}
		return cols
	}
	// folded are the columns of a Folded answer.
	folded := dimList + ", bs, " + strings.Join(mNames, "s, ") + "s, mws"
	metricCols := strings.Join(mNames, ", ")
	if p.Unordered && !q.Bucket {
		q.SQL = b.chAggBlock(p, where, noBucket, p.Select, mNames) + " LIMIT " + b.arg(int64(p.Limit))
		q.Args = b.args
		return q
	}
	if !q.Bucket {
		// One aggregate holds the metrics; it is ordered by the sort
		// keys' aggregates without answering them. With a topk cut first,
		// the keys are columns of its own for the page's order above it.
		sels, names := p.Select, mNames
		if topKFirst {
			sels = append(append([]Selection{}, p.Select...), sortSels...)
			names = append(append([]string{}, mNames...), kNames...)
		}
		var keys []string
		for _, s := range sortSels {
			keys = append(keys, b.chMetricRef(p, s, mNames))
		}
		q.SQL = rankPage(b.chAggBlock(p, where, noBucket, sels, names), keys, join(dimList, metricCols, "mw"))
		q.Args = b.args
		return q
	}
	if cols, ok := b.chSumMapped(p, sortSels); ok {
		// One aggregate, as a hand-written query would be: each group's
		// buckets summed by sumMap, one array per summed column, keyed by
		// the bucket start (Run unfolds them), and one mw for the whole
		// group (what the answer's flag needs of it). sumMap leaves out a
		// key whose sums are all zero: weight, at least 1 on every event
		// (apimeter.Event), keeps every bucket with rows.
		idx := map[string]int{}
		var vals []string
		for i, c := range cols {
			idx[c] = i + 2
			vals = append(vals, "["+c+"]")
		}
		start := d.BucketStart(d.Bucket(p.TimeUnit, "ts", b.tzo), b.tzo)
		// The arrays, all of integers, come as their text ("[1,2]"): the
		// driver reads an array an element at a time by reflection, about
		// 1 ms for a quarter's days of eight APIs, the text in one piece.
		arrays := []string{fmt.Sprintf("toString(tupleElement(sumMap([%s], %s) AS sm, 1)) AS bs", start, strings.Join(vals, ", "))}
		for i, s := range p.Select {
			arrays = append(arrays, fmt.Sprintf("toString(tupleElement(sm, %d)) AS %ss", idx[chSummed(s)], mNames[i]))
		}
		arrays = append(arrays, b.mwExpr()+" AS mws")
		var keys []string
		for _, s := range sortSels {
			keys = append(keys, b.aggExpr(&clickhouseAggs, s))
		}
		cols := append(append(b.chDimCols(p), keyCols(keys)...), arrays...)
		q.SQL = rankPage(chSelect(cols, b.src, where, dimKeys), keys, folded)
		q.Folded = true
		q.Args = b.args
		return q
	}
	if allRollup(sortSels) {
		// The buckets, then one row per group: its sort keys re-aggregated
		// from its buckets, its buckets in arrays (one per column, taken
		// from an array of tuples: groupArray skips NULLs, a tuple holding
		// one is kept) that Run unfolds. The aggregate holds every (group,
		// bucket) already; the arrays are that much again, not a second
		// read, and unfolding them in the query (ARRAY JOIN) would cost
		// another level of subqueries.
		sels := append(append([]Selection{}, p.Select...), sortSels...)
		sNames := numbered("s", len(sortSels))
		buckets := b.chAggBlock(p, where, bucketStart, sels, append(append([]string{}, mNames...), sNames...))
		var keys []string
		for i, s := range sortSels {
			keys = append(keys, fmt.Sprintf("%s(s%d)", strings.ToLower(rollupFunc(s)), i))
		}
		arrays := []string{"tupleElement(groupArray((b, " + metricCols + ", mw)) AS xs, 1) AS bs"}
		for i, m := range append(append([]string{}, mNames...), "mw") {
			arrays = append(arrays, fmt.Sprintf("tupleElement(xs, %d) AS %ss", i+2, m))
		}
		cols := append(append(append([]string{}, dimKeys...), keyCols(keys)...), arrays...)
		q.SQL = rankPage(chSelect(cols, "("+buckets+")", "", dimKeys), keys, folded)
		q.Folded = true
		q.Args = b.args
		return q
	}
	// The ranking takes its own pass over the range; the buckets of the
	// groups it keeps are joined to it.
	rank := b.chAggBlock(p, where, noBucket, sortSels, kNames)
	ranked := fmt.Sprintf("SELECT %s, %s FROM (%s)", dimList, strings.Join(kNames, ", "), rankPage(rank, kNames, "*"))
	// The buckets repeat the where clause's placeholders: the same $n.
	buckets := b.chAggBlock(p, where, bucketStart, p.Select, mNames)
	q.SQL = fmt.Sprintf("SELECT %s, b, %s, mw FROM (%s) ALL INNER JOIN (%s) USING (%s) ORDER BY %s, b %s",
		dimList, metricCols, buckets, ranked, dimList, order(kNames, dir), tsOrder)
	q.Args = b.args
	return q
}

// chSummed is the rollup column a call or error count sums, "" for other
// selections.
func chSummed(s Selection) string {
	switch s.Metric.kind {
	case kindCount, kindTPS:
		return "weight"
	case kindError:
		return "err_weight"
	}
	return ""
}

// chSumMapped gives the columns a bucketed plan sums when sumMap can
// answer it in one aggregate: over rollup rows, every selection and sort
// key a count of calls or errors, calls (weight) among them and first.
func (b *sqlBuilder) chSumMapped(p *Plan, sortSels []Selection) ([]string, bool) {
	if !b.rolled {
		return nil, false
	}
	used := map[string]bool{}
	for _, s := range append(append([]Selection{}, p.Select...), sortSels...) {
		c := chSummed(s)
		if c == "" {
			return nil, false
		}
		used[c] = true
	}
	if !used["weight"] {
		return nil, false
	}
	cols := []string{"weight"}
	if used["err_weight"] {
		cols = append(cols, "err_weight")
	}
	return cols, true
}

// chMetricRef is s's aggregate in a block with p's selections named
// names: the name of a selection with the same aggregate, else the
// aggregate itself.
func (b *sqlBuilder) chMetricRef(p *Plan, s Selection, names []string) string {
	a := b.aggExpr(&clickhouseAggs, s)
	for i, sel := range p.Select {
		if b.aggExpr(&clickhouseAggs, sel) == a {
			return names[i]
		}
	}
	return a
}

// chCovered says the rows of p's source hold only what p's where clause
// would keep: a cover, whose branches apply it, with bounds on whole
// seconds, the unit of the branches' ranges.
func (p *Plan) chCovered() bool {
	return p.Cover != nil && p.wholeSeconds()
}

// chCoverSource is coverSource for ClickHouse: the rollup tables' rows for
// the covered periods (their period column t read as ts) and the events
// table's for the rest, with the same columns and types. p's filter is
// repeated in every branch: ClickHouse 18.16 does not push a condition on
// a UNION ALL down into its branches, and in a branch it is what lets
// ClickHouse read the filtered column first (PREWHERE) and the others
// only where it matches.
func (b *sqlBuilder) chCoverSource(p *Plan, d ClickHouse) string {
	f := p.Cover.Family
	// Only the columns read above the branches: 18.16 reads every column
	// a branch of a UNION ALL names, used above it or not. The filter's
	// are read there only when the where clause is (see chCovered).
	used := p.columns(!p.chCovered())
	var keep []string
	for _, c := range f.Columns() {
		if used[c] {
			keep = append(keep, c)
		}
	}
	// With whole-second bounds nothing above the branches reads org, env
	// or the time but a bucket (see buildClickHouse).
	whole := p.wholeSeconds()
	var rawCols, rollupCols []string
	for _, c := range []string{"org", "env"} {
		if !whole || used[c] { // a dimension or filter of its own, too
			rawCols, rollupCols = append(rawCols, c), append(rollupCols, c)
		}
	}
	if !whole || p.TimeUnit != "" {
		rawCols, rollupCols = append(rawCols, "ts"), append(rollupCols, "t AS ts")
	}
	if !whole {
		rawCols, rollupCols = append(rawCols, "ts_us"), append(rollupCols, "toInt64(toUInt32(t)) * 1000000 AS ts_us")
	}
	cols := strings.Join(append(rawCols, keep...), ", ")
	rcols := strings.Join(append(rollupCols, keep...), ", ")
	sums, rawSums := "heavy", "toUInt64(weight > 1) AS heavy"
	if used["weight"] {
		sums, rawSums = "calls AS weight, "+sums, "weight, "+rawSums
	}
	if used["err_weight"] {
		sums += ", err_calls AS err_weight"
		rawSums += ", toInt64(if(" + detail.IsErrorSQL + ", weight, 0)) AS err_weight"
	}
	if used["lat_sum"] {
		sums += ", lat_sum"
		rawSums += ", latency_ms * weight AS lat_sum"
	}
	org, env := b.arg(p.Org), b.arg(p.Env)
	ranges := func(col string, rs [][2]time.Time) string {
		parts := make([]string, len(rs))
		for i, r := range rs {
			parts[i] = fmt.Sprintf("(%s >= toDateTime(%s, 'UTC') AND %s < toDateTime(%s, 'UTC'))", col, b.arg(r[0].Unix()), col, b.arg(r[1].Unix()))
		}
		return "(" + strings.Join(parts, " OR ") + ")"
	}
	// The filter's placeholders, once: every branch names the same $n.
	filter := b.andFilter(p)
	// One branch per range, as on DuckDB: each a plain range of the
	// sorting key.
	var branches []string
	for _, pt := range p.Cover.Parts {
		for _, r := range pt.Ranges {
			branches = append(branches, fmt.Sprintf("SELECT %s FROM %s WHERE org = %s AND env = %s AND %s%s",
				join(rcols, sums), f.Table(pt.Grain), org, env, ranges("t", [][2]time.Time{r}), filter))
		}
	}
	if gaps := p.Cover.Gaps(p.From, p.To); len(gaps) > 0 {
		// Gaps are whole seconds apart from p's own bounds, which the
		// outer where applies with ts_us. The events table is read
		// without FINAL: the rollups count each INSERT of an event (see
		// store/clickhouse), and the edges count the same way; FINAL
		// would also keep ClickHouse from skipping parts by their
		// time range. The gaps are one branch: the events table's
		// primary key (api_name before ts) makes any range cost a
		// granule per API at least, so a branch per gap would pay that
		// for each.
		var rs [][2]time.Time
		for _, g := range gaps {
			end := g[1]
			if end.Truncate(time.Second).Before(end) {
				end = end.Truncate(time.Second).Add(time.Second)
			}
			rs = append(rs, [2]time.Time{g[0].Truncate(time.Second), end})
		}
		branches = append(branches, fmt.Sprintf("SELECT %s FROM %s WHERE org = %s AND env = %s AND %s%s",
			join(cols, rawSums), Table, org, env, ranges("ts", rs), filter))
	}
	return "(" + strings.Join(branches, " UNION ALL ") + ")"
}

// columns are the columns a covered plan reads from its source rows: the
// dimensions', the filter's when filter is set, latency_ms for the latency
// aggregates other than sums and averages, and the summed weight,
// err_weight and lat_sum when a selection needs them.
func (p *Plan) columns(filter bool) map[string]bool {
	used := map[string]bool{}
	for _, d := range p.Dimensions {
		used[d.column] = true
	}
	var walk func(Expr)
	walk = func(e Expr) {
		switch e := e.(type) {
		case *Logic:
			walk(e.L)
			walk(e.R)
		case *Cond:
			used[e.Dim.column] = true
		}
	}
	if filter {
		walk(p.Filter)
	}
	for _, s := range p.selections() {
		switch {
		case s.Metric.kind == kindError:
			used["err_weight"] = true
		case s.Metric.kind != kindValue:
			used["weight"] = true
		case s.Agg == aggSum:
			used["lat_sum"] = true
		case s.Agg == aggAvg:
			used["lat_sum"], used["weight"] = true, true
		default:
			used[s.Metric.column], used["weight"] = true, true
		}
	}
	return used
}

// join joins the non-empty column lists of a SELECT.
func join(lists ...string) string {
	var out []string
	for _, l := range lists {
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, ", ")
}
