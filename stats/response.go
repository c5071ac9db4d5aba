package stats

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Response is the JSON answer of the Metrics API, in Apigee's shape.
type Response struct {
	Environments []Environment `json:"environments"`
	MetaData     MetaData      `json:"metaData"`
}

// Environment holds either dimensions (grouped queries) or metrics (totals).
type Environment struct {
	// Dimensions is a pointer so that a grouped query with no groups
	// still answers "dimensions": [].
	Dimensions *[]DimensionResult `json:"dimensions,omitempty"`
	Metrics    []MetricResult     `json:"metrics,omitempty"`
	Name       string             `json:"name"`
}

// DimensionResult is one dimension group; Name joins the values of several
// dimensions with commas.
type DimensionResult struct {
	Metrics []MetricResult `json:"metrics"`
	Name    string         `json:"name"`
}

// MetricResult is one selected metric. Values are strings in Apigee's
// number format without timeUnit, or Points with it.
type MetricResult struct {
	Name   string `json:"name"`
	Values []any  `json:"values"`
}

// Point is one time bucket of a series.
type Point struct {
	Timestamp int64  `json:"timestamp"`
	Value     string `json:"value"`
}

// MetaData carries errors and notices, as Apigee's does.
type MetaData struct {
	Errors  []string `json:"errors"`
	Notices []string `json:"notices"`
}

// NoticeWeighted is the notice given when sampled events contributed.
const NoticeWeighted = "Sampled data: events standing for more than one call (weight > 1) contributed; counts are sums of weights, averages and percentiles are weighted"

// Render builds the JSON answer for p from res.
func Render(p *Plan, d Dialect, res *Result) *Response {
	env := Environment{Name: p.Env}
	series := func(rows []Row) []MetricResult {
		ms := make([]MetricResult, len(p.Select))
		for i, s := range p.Select {
			ms[i] = MetricResult{Name: s.Name, Values: []any{}}
			for _, r := range rows {
				v := FormatNumber(r.Values[i])
				if p.TimeUnit == "" {
					ms[i].Values = append(ms[i].Values, v)
				} else {
					ms[i].Values = append(ms[i].Values, Point{Timestamp: r.Bucket.UnixMilli(), Value: v})
				}
			}
		}
		return ms
	}
	if len(p.Dimensions) == 0 {
		env.Metrics = series(res.Rows)
	} else {
		dims := []DimensionResult{}
		for i := 0; i < len(res.Rows); {
			j := i + 1
			for j < len(res.Rows) && equalDims(res.Rows[i].Dims, res.Rows[j].Dims) {
				j++
			}
			dims = append(dims, DimensionResult{
				Metrics: series(res.Rows[i:j]),
				Name:    strings.Join(res.Rows[i].Dims, ","),
			})
			i = j
		}
		env.Dimensions = &dims
	}
	notices := []string{
		"Source:" + d.Name(),
		"Table used: " + tablesUsed(p),
		"query served by:apimeter",
		"query time:" + strconv.FormatFloat(float64(res.Elapsed)/float64(time.Millisecond), 'f', 2, 64) + " ms",
	}
	if res.Weighted {
		notices = append(notices, NoticeWeighted)
	}
	return &Response{Environments: []Environment{env}, MetaData: MetaData{Errors: []string{}, Notices: notices}}
}

func equalDims(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FormatNumber writes v as Java's Double.toString does, which is how
// Apigee's answers spell numbers: "1100.0", "0.25", "7.44944088E8",
// "1.0E-4". A missing value is "0.0".
func FormatNumber(v *float64) string {
	if v == nil {
		return "0.0"
	}
	return formatJava(*v)
}

func formatJava(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// Shortest digits that round-trip, and the decimal exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	digits := strings.Replace(mant, ".", "", 1)
	if f >= 1e-3 && f < 1e7 {
		var intPart, frac string
		if exp >= 0 {
			if len(digits) <= exp+1 {
				intPart, frac = digits+strings.Repeat("0", exp+1-len(digits)), "0"
			} else {
				intPart, frac = digits[:exp+1], digits[exp+1:]
			}
		} else {
			intPart, frac = "0", strings.Repeat("0", -exp-1)+digits
		}
		return sign + intPart + "." + frac
	}
	frac := digits[1:]
	if frac == "" {
		frac = "0"
	}
	return sign + digits[:1] + "." + frac + "E" + strconv.Itoa(exp)
}
