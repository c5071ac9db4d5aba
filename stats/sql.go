package stats

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/apimeter/apimeter/store/detail"
)

// Dialect renders the parts of a query that differ between SQL engines.
// The planner writes everything else in the SQL both engines share.
type Dialect interface {
	// Name is the engine as metaData names it ("DuckDB").
	Name() string
	// Placeholder is the text of the n-th bound parameter (1-based); the
	// same n may appear more than once.
	Placeholder(n int) string
	// Bucket is the grouping key of the time bucket (second .. month;
	// weeks start on Monday) of timestamp column ts in the zone given by
	// offsetMinutes (a placeholder holding minutes east of UTC, or "" for
	// UTC). BucketStart turns such a key, after grouping, into the bucket's
	// start in microseconds since the Unix epoch.
	Bucket(unit, ts, offsetMinutes string) string
	BucketStart(key, offsetMinutes string) string
	// Basepath is the first segment of a path column, with its leading /.
	Basepath(col string) string
	// Text casts an expression to a string, for like on numbers.
	Text(expr string) string
	// JSONText is the string at top-level key of the JSON object in col,
	// or '' when absent.
	JSONText(col, key string) string
	// Like matches expr against the pattern placeholder with SQL's % and _
	// wildcards and backslash as the escape; not negates it.
	Like(expr, pattern string, not bool) string
}

// DuckDB is the dialect of the embedded store.
type DuckDB struct{}

func (DuckDB) Name() string             { return "DuckDB" }
func (DuckDB) Placeholder(n int) string { return "$" + strconv.Itoa(n) }
func (DuckDB) Bucket(unit, ts, off string) string {
	local := ts
	if off != "" {
		local = fmt.Sprintf("(%s + to_minutes(%s))", ts, off)
	}
	// Days, weeks and months group on a DATE, which DuckDB groups faster
	// than timestamps.
	switch unit {
	case "day":
		return fmt.Sprintf("CAST(%s AS DATE)", local)
	case "week", "month":
		return fmt.Sprintf("CAST(date_trunc('%s', CAST(%s AS DATE)) AS DATE)", unit, local)
	}
	return fmt.Sprintf("date_trunc('%s', %s)", unit, local)
}
func (DuckDB) BucketStart(key, off string) string {
	if off == "" {
		return fmt.Sprintf("epoch_us(CAST(%s AS TIMESTAMP))", key)
	}
	return fmt.Sprintf("(epoch_us(CAST(%s AS TIMESTAMP)) - %s * 60000000)", key, off)
}
func (DuckDB) Basepath(col string) string {
	return fmt.Sprintf("regexp_extract(%s, '^/[^/]*')", col)
}
func (DuckDB) Text(expr string) string { return "CAST(" + expr + " AS VARCHAR)" }
func (DuckDB) JSONText(col, key string) string {
	return fmt.Sprintf("coalesce(json_extract_string(%s, '$.%s'), '')", col, key)
}

// RegexLike: regexp_full_match is RE2 (see like).
func (DuckDB) RegexLike(expr, re string, not bool) string {
	if not {
		return "NOT regexp_full_match(" + expr + ", " + re + ")"
	}
	return "regexp_full_match(" + expr + ", " + re + ")"
}

func (DuckDB) Like(expr, pattern string, not bool) string {
	op := "LIKE"
	if not {
		op = "NOT LIKE"
	}
	return fmt.Sprintf("%s %s %s ESCAPE '\\'", expr, op, pattern)
}

// Query is a Plan rendered for one dialect: the SQL text and its bound
// arguments, and how to read the rows it returns.
type Query struct {
	SQL  string
	Args []any
	// Dims is how many dimension columns lead each row; Bucket says a
	// bucket timestamp follows them; then one column per selected metric,
	// then the largest weight in the group.
	Dims   int
	Bucket bool
	// Folded says each row is one group: its dimensions, then arrays of
	// its buckets' starts, of each metric's values and of the largest
	// weights (or the group's largest weight), in no order (Run orders
	// the buckets).
	Folded bool
}

type sqlBuilder struct {
	d    Dialect
	args []any
	tzo  string // placeholder of the time-zone offset, "" for UTC
	// src is the table or subquery the rows come from, and maxW the
	// column with each row's largest event weight.
	src, maxW string
	// rolled says the rows are rollup rows (weight, err_weight, lat_sum;
	// see coverSource), not events.
	rolled bool
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return b.d.Placeholder(len(b.args))
}

// Table is the events table the Metrics API reads.
const Table = "events"

// Build renders p as SQL for d. Each row of the answer is one dimension
// group (and time bucket when p.TimeUnit is set), in answer order.
func Build(p *Plan, d Dialect) Query {
	if ch, ok := d.(ClickHouse); ok {
		return buildClickHouse(p, ch)
	}
	b := &sqlBuilder{d: d, src: Table, maxW: "weight"}
	if p.Cover != nil {
		b.src, b.maxW, b.rolled = b.coverSource(p, b.arg(p.Org), b.arg(p.Env)), "max_weight", true
	}
	where := b.where(p)
	if p.TimeUnit != "" && p.TZO != 0 {
		b.tzo = b.arg(int64(p.TZO))
	}
	var dimKeys []string
	for i := range p.Dimensions {
		dimKeys = append(dimKeys, "d"+strconv.Itoa(i))
	}
	keys := dimKeys
	if p.TimeUnit != "" {
		keys = append(append([]string{}, dimKeys...), "b")
	}
	sortSels := p.SortBy
	if len(sortSels) == 0 {
		sortSels = p.Select[:1]
	}
	// The ranking over the whole range is read from the bucketed
	// aggregate when the sort metrics can be re-aggregated from buckets;
	// otherwise it takes its own pass (s below).
	rankFromM := len(p.Dimensions) > 0 && (p.TimeUnit == "" || allRollup(sortSels))
	mainSels := p.Select
	// sortIdx is the column of m (mN) each sort metric is read from; a
	// sort metric that is also selected shares its column.
	var sortIdx []int
	if rankFromM {
		mainSels = append([]Selection{}, p.Select...)
		for _, ss := range sortSels {
			j := len(mainSels)
			for i, sel := range p.Select {
				if sel.Name == ss.Name {
					j = i
					break
				}
			}
			if j == len(mainSels) {
				mainSels = append(mainSels, ss)
			}
			sortIdx = append(sortIdx, j)
		}
	}
	var sb strings.Builder
	sb.WriteString("WITH m AS (")
	sb.WriteString(b.aggBlock(p, where, keys, mainSels))
	sb.WriteString(")")
	q := Query{Dims: len(p.Dimensions), Bucket: p.TimeUnit != ""}
	metricCols := make([]string, len(p.Select))
	for i := range p.Select {
		metricCols[i] = "m.m" + strconv.Itoa(i)
	}
	tsOrder := "DESC"
	if p.TSAscending {
		tsOrder = "ASC"
	}
	if len(p.Dimensions) == 0 {
		sb.WriteString(" SELECT ")
		if q.Bucket {
			sb.WriteString(b.d.BucketStart("m.b", b.tzo) + ", ")
		}
		sb.WriteString(strings.Join(metricCols, ", "))
		sb.WriteString(", m.mw FROM m")
		if q.Bucket {
			sb.WriteString(" ORDER BY m.b " + tsOrder)
		}
		q.SQL, q.Args = sb.String(), b.args
		return q
	}
	if p.Unordered && !q.Bucket {
		sb.WriteString(" SELECT ")
		for _, k := range dimKeys {
			sb.WriteString("m." + k + ", ")
		}
		fmt.Fprintf(&sb, "%s, m.mw FROM m LIMIT %s", strings.Join(metricCols, ", "), b.arg(int64(p.Limit)))
		q.SQL, q.Args = sb.String(), b.args
		return q
	}
	dir := "DESC"
	if !p.Desc {
		dir = "ASC"
	}
	if p.TimeUnit == "" && (p.TopK == 0 || (p.Desc && p.TopK >= p.Offset+p.Limit)) {
		// One row per group and no topk cut that the page could see: the
		// page is a plain ORDER BY ... LIMIT (a top-N sort), the same
		// order as the ranking below.
		var parts []string
		for _, j := range sortIdx {
			parts = append(parts, fmt.Sprintf("m.m%d %s NULLS LAST", j, dir))
		}
		for _, k := range dimKeys {
			parts = append(parts, "m."+k+" ASC")
		}
		sb.WriteString(" SELECT ")
		for _, k := range dimKeys {
			sb.WriteString("m." + k + ", ")
		}
		sb.WriteString(strings.Join(metricCols, ", "))
		fmt.Fprintf(&sb, ", m.mw FROM m ORDER BY %s LIMIT %s OFFSET %s", strings.Join(parts, ", "), b.arg(int64(p.Limit)), b.arg(int64(p.Offset)))
		q.SQL, q.Args = sb.String(), b.args
		return q
	}
	// Rank the dimension groups over the whole time range.
	// r ranks with sort keys k0.. taken from m, from a roll-up of m, or
	// from a separate pass s.
	rsrc := "m"
	var sortCols, sortExprs []string
	for i := range sortSels {
		sortCols = append(sortCols, "k"+strconv.Itoa(i))
	}
	switch {
	case p.TimeUnit == "":
		for i, j := range sortIdx {
			sortExprs = append(sortExprs, fmt.Sprintf("m%d AS k%d", j, i))
		}
	case rankFromM:
		var cols []string
		for i, j := range sortIdx {
			cols = append(cols, fmt.Sprintf("%s(m%d) AS k%d", rollupFunc(sortSels[i]), j, i))
			sortExprs = append(sortExprs, "k"+strconv.Itoa(i))
		}
		fmt.Fprintf(&sb, ", s AS (SELECT %s, %s FROM m GROUP BY %s)", strings.Join(dimKeys, ", "), strings.Join(cols, ", "), strings.Join(dimKeys, ", "))
		rsrc = "s"
	default:
		sb.WriteString(", s AS (")
		sb.WriteString(b.aggBlock(p, where, dimKeys, sortSels))
		sb.WriteString(")")
		rsrc = "s"
		for i := range sortSels {
			sortExprs = append(sortExprs, fmt.Sprintf("m%d AS k%d", i, i))
		}
	}
	order := func(dir string) string {
		var parts []string
		for _, c := range sortCols {
			parts = append(parts, c+" "+dir+" NULLS LAST")
		}
		for _, k := range dimKeys {
			parts = append(parts, k+" ASC")
		}
		return strings.Join(parts, ", ")
	}
	dimList := strings.Join(dimKeys, ", ")
	fmt.Fprintf(&sb, ", r AS (SELECT *, ROW_NUMBER() OVER (ORDER BY %s) AS tk FROM (SELECT %s, %s FROM %s) AS rk)",
		order("DESC"), dimList, strings.Join(sortExprs, ", "), rsrc)
	topWhere := ""
	if p.TopK > 0 {
		topWhere = " WHERE tk <= " + b.arg(int64(p.TopK))
	}
	fmt.Fprintf(&sb, ", o AS (SELECT %s, ROW_NUMBER() OVER (ORDER BY %s) AS rn FROM r%s)", dimList, order(dir), topWhere)
	sb.WriteString(" SELECT ")
	for _, k := range dimKeys {
		sb.WriteString("m." + k + ", ")
	}
	if q.Bucket {
		sb.WriteString(b.d.BucketStart("m.b", b.tzo) + ", ")
	}
	sb.WriteString(strings.Join(metricCols, ", "))
	sb.WriteString(", m.mw FROM m JOIN o ON ")
	sb.WriteString(joinOn("m", "o", dimKeys))
	off := b.arg(int64(p.Offset))
	fmt.Fprintf(&sb, " WHERE o.rn > %s AND o.rn <= %s + %s ORDER BY o.rn", off, off, b.arg(int64(p.Limit)))
	if q.Bucket {
		sb.WriteString(", m.b " + tsOrder)
	}
	q.SQL, q.Args = sb.String(), b.args
	return q
}

// joinOn matches group keys; dimension values and buckets are never NULL
// (text columns store unknown values as empty), so equality is enough.
func joinOn(l, r string, keys []string) string {
	if len(keys) == 0 {
		return "TRUE"
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s.%s = %s.%s", l, k, r, k)
	}
	return strings.Join(parts, " AND ")
}

// where renders the row selection shared by every aggregate of the query.
func (b *sqlBuilder) where(p *Plan) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "org = %s AND env = %s AND ts >= %s AND ts < %s",
		b.arg(p.Org), b.arg(p.Env), b.arg(p.From), b.arg(p.To))
	if p.Filter != nil {
		sb.WriteString(" AND (")
		b.expr(&sb, p.Filter)
		sb.WriteString(")")
	}
	return sb.String()
}

func (b *sqlBuilder) dimExpr(d dimension) string {
	switch d.column {
	case colBasepath:
		return b.d.Basepath("path")
	case colAPIVersion:
		return b.d.JSONText("detail", "api_version")
	}
	return d.column
}

var sqlOps = map[string]string{opEq: "=", opNe: "<>", opGt: ">", opLt: "<", opGe: ">=", opLe: "<="}

func (b *sqlBuilder) expr(sb *strings.Builder, e Expr) {
	switch e := e.(type) {
	case *Logic:
		sb.WriteString("(")
		b.expr(sb, e.L)
		sb.WriteString(" " + strings.ToUpper(e.Op) + " ")
		b.expr(sb, e.R)
		sb.WriteString(")")
	case *Cond:
		col := b.dimExpr(e.Dim)
		val := func(i int) string {
			if e.Nums != nil {
				return b.arg(e.Nums[i])
			}
			return b.arg(e.Values[i])
		}
		switch e.Op {
		case opEq, opNe, opGt, opLt, opGe, opLe:
			fmt.Fprintf(sb, "%s %s %s", col, sqlOps[e.Op], val(0))
		case opIn, opNotIn:
			ph := make([]string, len(e.Values))
			for i := range e.Values {
				ph[i] = val(i)
			}
			not := ""
			if e.Op == opNotIn {
				not = "NOT "
			}
			fmt.Fprintf(sb, "%s %sIN (%s)", col, not, strings.Join(ph, ", "))
		case opLike, opNotLike:
			if e.Dim.numeric {
				col = b.d.Text(col)
			}
			sb.WriteString(b.like(col, e.Values[0], e.Op == opNotLike))
		case opIsNull:
			// apimeter stores an unknown text value as the empty string.
			if e.Dim.numeric {
				fmt.Fprintf(sb, "%s IS NULL", col)
			} else {
				fmt.Fprintf(sb, "(%s IS NULL OR %s = '')", col, col)
			}
		case opIsNotNull:
			if e.Dim.numeric {
				fmt.Fprintf(sb, "%s IS NOT NULL", col)
			} else {
				fmt.Fprintf(sb, "(%s IS NOT NULL AND %s <> '')", col, col)
			}
		}
	}
}

// rollupFunc is the aggregate that combines per-bucket values of sel into
// its value over all buckets, or "" when there is none.
func rollupFunc(sel Selection) string {
	switch sel.Metric.kind {
	case kindCount, kindError, kindTPS:
		return "SUM"
	case kindValue:
		switch sel.Agg {
		case aggSum:
			return "SUM"
		case aggMin:
			return "MIN"
		case aggMax:
			return "MAX"
		}
	}
	return ""
}

func allRollup(sels []Selection) bool {
	for _, s := range sels {
		if rollupFunc(s) == "" {
			return false
		}
	}
	return true
}

// aggBlock renders a subquery grouped by keys (d0.., b) with one column mN
// per selection. Weighted percentiles come from one window query per value
// column, joined on the keys: the pN of a group is the smallest value whose
// cumulative weight, in value order, reaches N% of the group's weight.
func (b *sqlBuilder) aggBlock(p *Plan, where string, keys []string, sels []Selection) string {
	var proj []string
	for i, d := range p.Dimensions {
		proj = append(proj, b.dimExpr(d)+" AS d"+strconv.Itoa(i))
	}
	hasBucket := len(keys) > len(p.Dimensions)
	if hasBucket {
		proj = append(proj, b.d.Bucket(p.TimeUnit, "ts", b.tzo)+" AS b")
	}
	groupBy := ""
	if len(keys) > 0 {
		groupBy = " GROUP BY " + strings.Join(keys, ", ")
	}
	if len(proj) == 0 {
		proj = []string{"1 AS one"}
	}
	// base gives dimension and bucket aliases to group on; the raw columns
	// stay visible for the aggregates (DuckDB reads only those used).
	base := fmt.Sprintf("(SELECT *, %s FROM %s WHERE %s)", strings.Join(proj, ", "), b.src, where)
	if fusable(sels) {
		return fusedBlock(base, keys, sels, b.maxW, b.rolled)
	}
	cols := append([]string{}, keys...)
	var pctCols []string // value columns that need a percentile subquery, in order
	pctOf := map[string]bool{}
	for i, s := range sels {
		if isPercentile(s.Agg) {
			if !pctOf[s.Metric.column] {
				pctOf[s.Metric.column] = true
				pctCols = append(pctCols, s.Metric.column)
			}
			cols = append(cols, "NULL AS m"+strconv.Itoa(i))
			continue
		}
		cols = append(cols, b.aggExpr(&duckdbAggs, s)+" AS m"+strconv.Itoa(i))
	}
	cols = append(cols, "MAX("+b.maxW+") AS mw")
	agg := fmt.Sprintf("SELECT %s FROM %s AS e%s", strings.Join(cols, ", "), base, groupBy)
	if len(pctCols) == 0 {
		return agg
	}
	// Replace the NULL placeholders by the joined percentile columns.
	var out []string
	out = append(out, prefixed("a", keys)...)
	for i, s := range sels {
		if isPercentile(s.Agg) {
			pi := indexOf(pctCols, s.Metric.column)
			out = append(out, fmt.Sprintf("p%d.%s AS m%d", pi, s.Agg, i))
		} else {
			out = append(out, fmt.Sprintf("a.m%d", i))
		}
	}
	out = append(out, "a.mw")
	var sb strings.Builder
	fmt.Fprintf(&sb, "SELECT %s FROM (%s) AS a", strings.Join(out, ", "), agg)
	for pi, col := range pctCols {
		part := ""
		if len(keys) > 0 {
			part = "PARTITION BY " + strings.Join(keys, ", ") + " "
		}
		keyList := ""
		if len(keys) > 0 {
			keyList = strings.Join(keys, ", ") + ", "
		}
		var qs []string
		for _, agg := range []string{aggP50, aggP95, aggP99} {
			// Whole-number arithmetic keeps the comparison exact.
			qs = append(qs, fmt.Sprintf("CAST(MIN(CASE WHEN cw * 100 >= %d * tw THEN v END) AS DOUBLE) AS %s",
				percentilePercent(agg), agg))
		}
		fmt.Fprintf(&sb, " LEFT JOIN (SELECT %s%s FROM (SELECT %sv, SUM(w) OVER (%sORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cw, SUM(w) OVER (%s) AS tw FROM (SELECT %s%s AS v, SUM(weight) AS w FROM %s AS e WHERE %s IS NOT NULL GROUP BY %sv) AS g) AS c%s) AS p%d ON %s",
			keyList, strings.Join(qs, ", "),
			keyList, part, strings.TrimSpace(part),
			keyList, col, base, col, keyList,
			groupBy, pi, joinOn("a", "p"+strconv.Itoa(pi), keys))
	}
	return sb.String()
}

// fusable says sels can be answered in one pass over the events: the
// percentiles are all of total_response_time (never null) and every other
// selection can be combined from per-(group, latency) partial aggregates.
func fusable(sels []Selection) bool {
	pct := false
	for _, s := range sels {
		switch {
		case isPercentile(s.Agg):
			if s.Metric.column != colLatency {
				return false
			}
			pct = true
		case s.Metric.kind == kindDistinct:
			return false
		}
	}
	return pct
}

// fusedBlock groups the events once by (keys, latency), keeping partial
// aggregates, then runs the percentile window over those groups and
// combines the partials per key.
func fusedBlock(base string, keys []string, sels []Selection, maxW string, rolled bool) string {
	keyList, part, groupBy := "", "", ""
	if len(keys) > 0 {
		keyList = strings.Join(keys, ", ") + ", "
		part = "PARTITION BY " + strings.Join(keys, ", ") + " "
		groupBy = " GROUP BY " + strings.Join(keys, ", ")
	}
	var partials, finals []string
	for i, s := range sels {
		x := "x" + strconv.Itoa(i)
		m := s.Metric
		switch {
		case isPercentile(s.Agg):
			finals = append(finals, fmt.Sprintf("CAST(MIN(CASE WHEN cw * 100 >= %d * tw THEN v END) AS DOUBLE) AS m%d", percentilePercent(s.Agg), i))
			continue
		case m.kind == kindCount || m.kind == kindTPS:
			partials = append(partials, "SUM(weight) AS "+x)
		case m.kind == kindError && rolled:
			partials = append(partials, "SUM(err_weight) AS "+x)
		case m.kind == kindError:
			partials = append(partials, "SUM(CASE WHEN "+detail.IsErrorSQL+" THEN weight ELSE 0 END) AS "+x)
		case s.Agg == aggSum && rolled:
			partials = append(partials, "SUM(lat_sum) AS "+x)
		case s.Agg == aggAvg && rolled:
			partials = append(partials, fmt.Sprintf("SUM(lat_sum) AS %s, SUM(weight) AS %sd", x, x))
			finals = append(finals, fmt.Sprintf("CAST(SUM(%s) AS DOUBLE) / CAST(SUM(%sd) AS DOUBLE) AS m%d", x, x, i))
			continue
		case s.Agg == aggSum:
			partials = append(partials, fmt.Sprintf("SUM(%s * weight) AS %s", m.column, x))
		case s.Agg == aggMin:
			partials = append(partials, fmt.Sprintf("MIN(%s) AS %s", m.column, x))
			finals = append(finals, fmt.Sprintf("CAST(MIN(%s) AS DOUBLE) AS m%d", x, i))
			continue
		case s.Agg == aggMax:
			partials = append(partials, fmt.Sprintf("MAX(%s) AS %s", m.column, x))
			finals = append(finals, fmt.Sprintf("CAST(MAX(%s) AS DOUBLE) AS m%d", x, i))
			continue
		case s.Agg == aggAvg:
			partials = append(partials, fmt.Sprintf("SUM(%s * weight) AS %s, SUM(CASE WHEN %s IS NOT NULL THEN weight END) AS %sd", m.column, x, m.column, x))
			finals = append(finals, fmt.Sprintf("CAST(SUM(%s) AS DOUBLE) / CAST(SUM(%sd) AS DOUBLE) AS m%d", x, x, i))
			continue
		default:
			panic("stats: no partial aggregate for " + s.Name)
		}
		finals = append(finals, fmt.Sprintf("CAST(SUM(%s) AS DOUBLE) AS m%d", x, i))
	}
	partials = append(partials, "MAX("+maxW+") AS mw")
	finals = append(finals, "MAX(mw) AS mw")
	return fmt.Sprintf("SELECT %s%s FROM (SELECT *, SUM(w) OVER (%sORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cw, SUM(w) OVER (%s) AS tw FROM (SELECT %s%s AS v, SUM(weight) AS w, %s FROM %s AS e GROUP BY %sv) AS g) AS c%s",
		keyList, strings.Join(finals, ", "),
		part, strings.TrimSpace(part),
		keyList, colLatency, strings.Join(partials, ", "), base, keyList,
		groupBy)
}

func prefixed(t string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = t + "." + k
	}
	return out
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}
