package stats

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Row is one dimension group (and time bucket) of an answer.
type Row struct {
	Dims   []string
	Bucket time.Time // zero without timeUnit
	// Values are the selected metrics, in select order; NaN-free, with
	// missing values (no data) as nil.
	Values []*float64
}

// Result is the answer to a Plan.
type Result struct {
	Rows []Row
	// Weighted says events standing for more than one call (sampled,
	// weight > 1) contributed to the answer.
	Weighted bool
	Elapsed  time.Duration
}

// Queryer runs SQL; *sql.DB is one.
type Queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Run renders p for d, runs it on db and reads the answer.
func Run(ctx context.Context, db Queryer, d Dialect, p *Plan) (*Result, error) {
	start := time.Now()
	q := Build(p, d)
	rows, err := db.QueryContext(ctx, q.SQL, q.Args...)
	if err != nil {
		return nil, fmt.Errorf("stats query: %w", err)
	}
	defer rows.Close()
	res := &Result{}
	if q.Folded {
		if err := readFolded(rows, p, q, res); err != nil {
			return nil, err
		}
		applyTPS(p, res)
		res.Elapsed = time.Since(start)
		return res, nil
	}
	n := q.Dims + len(p.Select) + 1
	if q.Bucket {
		n++
	}
	dims := make([]any, q.Dims)
	var bucket int64
	vals := make([]sql.NullFloat64, len(p.Select))
	var maxW sql.NullInt64
	dest := make([]any, 0, n)
	for i := range dims {
		dest = append(dest, &dims[i])
	}
	if q.Bucket {
		dest = append(dest, &bucket)
	}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	dest = append(dest, &maxW)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("stats query: read row: %w", err)
		}
		r := Row{Dims: make([]string, q.Dims), Values: make([]*float64, len(vals))}
		for i, v := range dims {
			r.Dims[i] = dimString(v)
		}
		if q.Bucket {
			r.Bucket = time.UnixMicro(bucket).UTC()
		}
		for i, v := range vals {
			if v.Valid {
				f := v.Float64
				r.Values[i] = &f
			}
		}
		if maxW.Valid && maxW.Int64 > 1 {
			res.Weighted = true
		}
		res.Rows = append(res.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stats query: %w", err)
	}
	applyTPS(p, res)
	res.Elapsed = time.Since(start)
	return res, nil
}

// readFolded reads the rows of a Folded query: one per group, its
// buckets in arrays, unfolded here into a row per bucket in p's time
// order.
func readFolded(rows *sql.Rows, p *Plan, q Query, res *Result) error {
	dims := make([]any, q.Dims)
	arrays := make([]any, len(p.Select)+2) // bucket starts, metrics, weights
	dest := make([]any, 0, q.Dims+len(arrays))
	for i := range dims {
		dest = append(dest, &dims[i])
	}
	for i := range arrays {
		dest = append(dest, &arrays[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("stats query: read row: %w", err)
		}
		starts, err := intArray(arrays[0])
		if err != nil {
			return fmt.Errorf("stats query: bucket starts: %w", err)
		}
		var weighted func(j int) bool
		switch w := arrays[len(arrays)-1].(type) {
		case []int64:
			if len(w) != len(starts) {
				return fmt.Errorf("stats query: %d weights for %d buckets", len(w), len(starts))
			}
			weighted = func(j int) bool { return w[j] > 1 }
		case int64: // the whole group's
			weighted = func(int) bool { return w > 1 }
		default:
			return fmt.Errorf("stats query: weights are %T", w)
		}
		values := make([][]*float64, len(p.Select))
		for i := range values {
			switch a := arrays[i+1].(type) {
			case []*float64:
				values[i] = a
			case []float64:
				values[i] = make([]*float64, len(a))
				for j := range a {
					values[i][j] = &a[j]
				}
			case string: // sums of calls, as text (sumMap)
				sums, err := intArray(a)
				if err != nil {
					return fmt.Errorf("stats query: values: %w", err)
				}
				fs := make([]float64, len(sums))
				values[i] = make([]*float64, len(sums))
				for j, v := range sums {
					fs[j] = float64(v)
					values[i][j] = &fs[j]
				}
			default:
				return fmt.Errorf("stats query: values are %T", a)
			}
			if len(values[i]) != len(starts) {
				return fmt.Errorf("stats query: %d values for %d buckets", len(values[i]), len(starts))
			}
		}
		order := make([]int, len(starts))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(i, j int) bool {
			if p.TSAscending {
				return starts[order[i]] < starts[order[j]]
			}
			return starts[order[i]] > starts[order[j]]
		})
		group := make([]string, q.Dims)
		for i, v := range dims {
			group[i] = dimString(v)
		}
		for _, j := range order {
			r := Row{Dims: group, Bucket: time.UnixMicro(starts[j]).UTC(), Values: make([]*float64, len(values))}
			for i := range values {
				if v := values[i][j]; v != nil {
					f := *v
					r.Values[i] = &f
				}
			}
			if weighted(j) {
				res.Weighted = true
			}
			res.Rows = append(res.Rows, r)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("stats query: %w", err)
	}
	return nil
}

// intArray reads an array of integers: the driver's []int64, or
// ClickHouse's text of one ("[1,-2,3]").
func intArray(v any) ([]int64, error) {
	switch v := v.(type) {
	case []int64:
		return v, nil
	case string:
		inner, open := strings.CutPrefix(v, "[")
		inner, closed := strings.CutSuffix(inner, "]")
		if !open || !closed {
			return nil, fmt.Errorf("%.40q is not an array", v)
		}
		if inner == "" {
			return nil, nil
		}
		parts := strings.Split(inner, ",")
		out := make([]int64, len(parts))
		for i, p := range parts {
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("an array of %T", v)
}

func dimString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	default:
		return fmt.Sprint(v)
	}
}

// applyTPS turns the weighted call counts of tps selections into calls per
// second of the interval each value covers: the whole time range, or the
// part of the time bucket inside it.
func applyTPS(p *Plan, res *Result) {
	for i, s := range p.Select {
		if s.Metric.kind != kindTPS {
			continue
		}
		for _, r := range res.Rows {
			if r.Values[i] == nil {
				continue
			}
			secs := p.To.Sub(p.From).Seconds()
			if p.TimeUnit != "" {
				start, end := BucketSpan(p, r.Bucket)
				if start.Before(p.From) {
					start = p.From
				}
				if end.After(p.To) {
					end = p.To
				}
				secs = end.Sub(start).Seconds()
			}
			v := 0.0
			if secs > 0 {
				v = *r.Values[i] / secs
			}
			r.Values[i] = &v
		}
	}
}

// BucketSpan is the interval [start, end) of the time bucket starting at
// b for p's timeUnit and time-zone offset.
func BucketSpan(p *Plan, b time.Time) (time.Time, time.Time) {
	loc := time.FixedZone("tzo", p.TZO*60)
	l := b.In(loc)
	var e time.Time
	switch p.TimeUnit {
	case "month":
		e = l.AddDate(0, 1, 0)
	case "week":
		e = l.AddDate(0, 0, 7)
	case "day":
		e = l.AddDate(0, 0, 1)
	default:
		e = l.Add(timeUnits[p.TimeUnit])
	}
	return b, e.UTC()
}
