package stats

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect renders the parts of a query that differ between SQL engines.
// The planner writes everything else in the SQL both engines share.
type Dialect interface {
	// Name is the engine as metaData names it ("DuckDB").
	Name() string
	// Placeholder is the text of the n-th bound parameter (1-based); the
	// same n may appear more than once.
	Placeholder(n int) string
	// Bucket truncates the timestamp column ts to the start of its unit
	// (second .. month; weeks start on Monday) in the zone offsetMinutes
	// (a placeholder holding minutes east of UTC), returned as UTC.
	Bucket(unit, ts, offsetMinutes string) string
	// Basepath is the first segment of a path column, with its leading /.
	Basepath(col string) string
	// Text casts an expression to a string, for like on numbers.
	Text(expr string) string
}

// DuckDB is the dialect of the embedded store.
type DuckDB struct{}

func (DuckDB) Name() string             { return "DuckDB" }
func (DuckDB) Placeholder(n int) string { return "$" + strconv.Itoa(n) }
func (DuckDB) Bucket(unit, ts, off string) string {
	return fmt.Sprintf("(date_trunc('%s', %s + to_minutes(%s)) - to_minutes(%s))", unit, ts, off, off)
}
func (DuckDB) Basepath(col string) string {
	return fmt.Sprintf("regexp_extract(%s, '^/[^/]*')", col)
}
func (DuckDB) Text(expr string) string { return "CAST(" + expr + " AS VARCHAR)" }

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
}

type sqlBuilder struct {
	d    Dialect
	args []any
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
	b := &sqlBuilder{d: d}
	where := b.where(p)
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
	mainSels := p.Select
	if p.TimeUnit == "" {
		mainSels = append(append([]Selection{}, p.Select...), sortSels...)
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
			sb.WriteString("m.b, ")
		}
		sb.WriteString(strings.Join(metricCols, ", "))
		sb.WriteString(", m.mw FROM m")
		if q.Bucket {
			sb.WriteString(" ORDER BY m.b " + tsOrder)
		}
		q.SQL, q.Args = sb.String(), b.args
		return q
	}
	// Rank the dimension groups over the whole time range.
	rsrc := "m"
	var sortCols []string
	if p.TimeUnit == "" {
		for i := range sortSels {
			sortCols = append(sortCols, "m"+strconv.Itoa(len(p.Select)+i))
		}
	} else {
		sb.WriteString(", s AS (")
		sb.WriteString(b.aggBlock(p, where, dimKeys, sortSels))
		sb.WriteString(")")
		rsrc = "s"
		for i := range sortSels {
			sortCols = append(sortCols, "m"+strconv.Itoa(i))
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
	dir := "DESC"
	if !p.Desc {
		dir = "ASC"
	}
	dimList := strings.Join(dimKeys, ", ")
	fmt.Fprintf(&sb, ", r AS (SELECT %s, %s, ROW_NUMBER() OVER (ORDER BY %s) AS tk FROM %s)",
		dimList, strings.Join(sortCols, ", "), order("DESC"), rsrc)
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
		sb.WriteString("m.b, ")
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

func joinOn(l, r string, keys []string) string {
	if len(keys) == 0 {
		return "TRUE"
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s.%s IS NOT DISTINCT FROM %s.%s", l, k, r, k)
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
	if d.column == colBasepath {
		return b.d.Basepath("path")
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
			not := ""
			if e.Op == opNotLike {
				not = "NOT "
			}
			fmt.Fprintf(sb, "%s %sLIKE %s ESCAPE '\\'", col, not, b.arg(e.Values[0]))
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

// aggExpr is the SQL aggregate of one selection over the events rows.
// Counts and sums count each row by its weight, averages are weighted;
// min and max are not affected by weights.
func aggExpr(s Selection) string {
	m := s.Metric
	switch m.kind {
	case kindCount, kindTPS:
		return "CAST(SUM(weight) AS DOUBLE)"
	case kindError:
		return "CAST(SUM(CASE WHEN status >= 400 THEN weight ELSE 0 END) AS DOUBLE)"
	case kindDistinct:
		return "CAST(COUNT(DISTINCT CASE WHEN user_id <> '' THEN user_id END) AS DOUBLE)"
	}
	c := m.column
	switch s.Agg {
	case aggSum:
		return fmt.Sprintf("CAST(SUM(%s * weight) AS DOUBLE)", c)
	case aggAvg:
		return fmt.Sprintf("CAST(SUM(%s * weight) AS DOUBLE) / CAST(SUM(CASE WHEN %s IS NOT NULL THEN weight END) AS DOUBLE)", c, c)
	case aggMin:
		return fmt.Sprintf("CAST(MIN(%s) AS DOUBLE)", c)
	case aggMax:
		return fmt.Sprintf("CAST(MAX(%s) AS DOUBLE)", c)
	}
	panic("stats: no SQL for " + s.Name)
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
		proj = append(proj, b.d.Bucket(p.TimeUnit, "ts", b.arg(int64(p.TZO)))+" AS b")
	}
	groupBy := ""
	if len(keys) > 0 {
		groupBy = " GROUP BY " + strings.Join(keys, ", ")
	}
	src := " FROM " + Table + " WHERE " + where
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
		cols = append(cols, aggExpr(s)+" AS m"+strconv.Itoa(i))
	}
	cols = append(cols, "MAX(weight) AS mw")
	inner := "SELECT " + strings.Join(proj, ", ")
	if len(proj) == 0 {
		inner = "SELECT 1 AS one"
	}
	// The projection gives dimension and bucket aliases to group on; the
	// raw columns stay visible for the aggregates.
	base := fmt.Sprintf("(SELECT *, %s%s)", strings.TrimPrefix(inner, "SELECT "), src)
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
