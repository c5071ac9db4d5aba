package stats

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ClickHouse is the dialect of store/clickhouse (ClickHouse 18.16 and
// later). That SQL has neither WITH subqueries nor window functions, so
// Build renders whole plans for it its own way (buildClickHouse): ranking
// by ORDER BY ... LIMIT in nested subqueries, percentiles by
// quantileExactWeighted, the same answers as DuckDB's. It reads the events
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
	if p.Filter != nil {
		sb.WriteString(" AND (")
		b.expr(&sb, p.Filter)
		sb.WriteString(")")
	}
	return sb.String()
}

// chAggBlock groups the selected rows by keys with one column per
// selection (named by names) and mw, the largest weight.
func (b *sqlBuilder) chAggBlock(p *Plan, where string, keys bool, sels []Selection, names []string) string {
	var cols []string
	for i, d := range p.Dimensions {
		cols = append(cols, b.dimExpr(d)+" AS d"+strconv.Itoa(i))
	}
	var group []string
	for i := range p.Dimensions {
		group = append(group, "d"+strconv.Itoa(i))
	}
	if keys {
		cols = append(cols, b.d.Bucket(p.TimeUnit, "ts", b.tzo)+" AS b")
		group = append(group, "b")
	}
	for i, s := range sels {
		a := clickhouseAggs.expr(s)
		// Without keys ClickHouse answers an empty selection with one row
		// of zeros; DuckDB (and Apigee) with no value.
		if len(group) == 0 && s.Metric.kind != kindDistinct {
			a = "if(count() = 0, NULL, " + a + ")"
		}
		cols = append(cols, a+" AS "+names[i])
	}
	cols = append(cols, "max(weight) AS mw")
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(cols, ", "), b.src, where)
	if len(group) > 0 {
		q += " GROUP BY " + strings.Join(group, ", ")
	}
	return q
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
// an inner ORDER BY ... LIMIT topk, an outer one with LIMIT offset, limit,
// and, with time buckets, an inner join of the buckets on the ranked
// groups.
func buildClickHouse(p *Plan, d ClickHouse) Query {
	b := &sqlBuilder{d: d, src: d.source(), maxW: "weight"}
	where := b.chWhere(p)
	if p.TimeUnit != "" && p.TZO != 0 {
		b.tzo = b.arg(int64(p.TZO))
	}
	q := Query{Dims: len(p.Dimensions), Bucket: p.TimeUnit != ""}
	mNames := numbered("m", len(p.Select))
	metricCols := strings.Join(mNames, ", ")
	tsOrder := "DESC"
	if p.TSAscending {
		tsOrder = "ASC"
	}
	if len(p.Dimensions) == 0 {
		inner := b.chAggBlock(p, where, q.Bucket, p.Select, mNames)
		if q.Bucket {
			q.SQL = fmt.Sprintf("SELECT %s, %s, mw FROM (%s) ORDER BY b %s", d.BucketStart("b", b.tzo), metricCols, inner, tsOrder)
		} else {
			q.SQL = fmt.Sprintf("SELECT %s, mw FROM (%s)", metricCols, inner)
		}
		q.Args = b.args
		return q
	}
	sortSels := p.SortBy
	if len(sortSels) == 0 {
		sortSels = p.Select[:1]
	}
	dimKeys := numbered("d", len(p.Dimensions))
	kNames := numbered("k", len(sortSels))
	order := func(dir string) string {
		var parts []string
		for _, k := range kNames {
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
	topK := ""
	if p.TopK > 0 {
		topK = " LIMIT " + b.arg(int64(p.TopK))
	}
	page := func() string {
		return fmt.Sprintf(" LIMIT %s, %s", b.arg(int64(p.Offset)), b.arg(int64(p.Limit)))
	}
	if !q.Bucket {
		// One aggregate holds the metrics and the sort keys.
		sels := append(append([]Selection{}, p.Select...), sortSels...)
		names := append(append([]string{}, mNames...), kNames...)
		agg := b.chAggBlock(p, where, false, sels, names)
		q.SQL = fmt.Sprintf("SELECT %s, %s, mw FROM (SELECT * FROM (%s) ORDER BY %s%s) ORDER BY %s%s",
			strings.Join(dimKeys, ", "), metricCols, agg, order("DESC"), topK, order(dir), page())
		q.Args = b.args
		return q
	}
	// The ranking takes its own pass over the range; the buckets of the
	// groups it keeps are joined to it.
	rank := b.chAggBlock(p, where, false, sortSels, kNames)
	dimList := strings.Join(dimKeys, ", ")
	ranked := fmt.Sprintf("SELECT %s, %s FROM (SELECT * FROM (%s) ORDER BY %s%s) ORDER BY %s%s",
		dimList, strings.Join(kNames, ", "), rank, order("DESC"), topK, order(dir), page())
	// The buckets repeat the where clause's placeholders: the same $n.
	buckets := b.chAggBlock(p, where, true, p.Select, mNames)
	q.SQL = fmt.Sprintf("SELECT %s, %s, %s, mw FROM (%s) ALL INNER JOIN (%s) USING (%s) ORDER BY %s, b %s",
		dimList, d.BucketStart("b", b.tzo), metricCols, buckets, ranked, dimList, order(dir), tsOrder)
	q.Args = b.args
	return q
}
