package stats

import (
	"fmt"

	"github.com/apimeter/apimeter/store/detail"
)

// aggSQL is how a dialect writes the aggregate of each metric over the
// events rows, every result a DOUBLE (Float64): one table that each
// dialect fills, so that a new aggregate or metric is added to both, in
// one place. A row stands for weight calls (sampling): counts and sums
// count each row by its weight and averages are weighted; min and max are
// not affected by weights.
type aggSQL struct {
	// count sums the calls; errors the calls that count as errors
	// (detail.IsErrorSQL); users counts the distinct non-empty user ids.
	count, errors, users string
	// sum, avg, min and max are formats of the value column (%[1]s).
	sum, avg, min, max string
	// percentile is a format of the column (%[1]s) and the percent
	// (%02[2]d), or "" where percentiles need a subquery of their own
	// (aggBlock's window query on DuckDB).
	percentile string
}

// duckdbAggs is DuckDB's aggregate SQL.
var duckdbAggs = aggSQL{
	count:  "CAST(SUM(weight) AS DOUBLE)",
	errors: "CAST(SUM(CASE WHEN " + detail.IsErrorSQL + " THEN weight ELSE 0 END) AS DOUBLE)",
	users:  "CAST(COUNT(DISTINCT CASE WHEN user_id <> '' THEN user_id END) AS DOUBLE)",
	sum:    "CAST(SUM(%[1]s * weight) AS DOUBLE)",
	avg:    "CAST(SUM(%[1]s * weight) AS DOUBLE) / CAST(SUM(CASE WHEN %[1]s IS NOT NULL THEN weight END) AS DOUBLE)",
	min:    "CAST(MIN(%[1]s) AS DOUBLE)",
	max:    "CAST(MAX(%[1]s) AS DOUBLE)",
}

// clickhouseAggs is ClickHouse's aggregate SQL, percentiles included.
var clickhouseAggs = aggSQL{
	count:      "toFloat64(sum(weight))",
	errors:     "toFloat64(sumIf(weight, " + detail.IsErrorSQL + "))",
	users:      "toFloat64(uniqExactIf(user_id, user_id != ''))",
	sum:        "toFloat64(sum(%[1]s * weight))",
	avg:        "(toFloat64(sum(%[1]s * weight)) / toFloat64(sumIf(weight, isNotNull(%[1]s))))",
	min:        "toFloat64(min(%[1]s))",
	max:        "toFloat64(max(%[1]s))",
	percentile: "toFloat64(quantileExactWeighted(0.%02[2]d)(%[1]s, toUInt64(weight)))",
}

// expr is the aggregate of one selection in t's dialect.
func (t *aggSQL) expr(s Selection) string {
	m := s.Metric
	switch m.kind {
	case kindCount, kindTPS:
		return t.count
	case kindError:
		return t.errors
	case kindDistinct:
		return t.users
	}
	var f string
	switch s.Agg {
	case aggSum:
		f = t.sum
	case aggAvg:
		f = t.avg
	case aggMin:
		f = t.min
	case aggMax:
		f = t.max
	case aggP50, aggP95, aggP99:
		f = t.percentile
	}
	switch {
	case f == "":
		panic("stats: no SQL for " + s.Name)
	case isPercentile(s.Agg):
		return fmt.Sprintf(f, m.column, percentilePercent(s.Agg))
	}
	return fmt.Sprintf(f, m.column)
}
