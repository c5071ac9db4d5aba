package stats

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ParamError is a bad request parameter; the HTTP answer is a 400 naming
// Param.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

func bad(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...)}
}

// Selection is one metric in select= (or sortby=), e.g. sum(message_count).
type Selection struct {
	// Name is the selection as the answer names it: "agg(metric)", or the
	// metric alone when it was selected bare.
	Name   string
	Metric metric
	// Agg is the function applied; for a bare metric, its first function
	// (none for tps and unique_users).
	Agg string
}

// Plan is a parsed Metrics API query, independent of any store.
type Plan struct {
	Org, Env   string
	Dimensions []dimension
	Select     []Selection
	// From and To bound the request time: From <= ts < To, in UTC.
	From, To time.Time
	// TimeUnit is "" for one value per metric, else second .. month.
	TimeUnit string
	// TZO is the time-zone offset in minutes east of UTC that time buckets
	// are aligned to.
	TZO    int
	Filter Expr
	// SortBy ranks the dimension groups; Desc is the order (sort=DESC is the
	// default). Without sortby the first selected metric ranks.
	SortBy      []Selection
	Desc        bool
	TopK        int // 0: all groups
	Limit       int
	Offset      int
	TSAscending bool
	// Cover, when set, is the part of the time range read from rollup
	// tables (see FindCover); nil reads the events table alone.
	Cover *Cover
	// Unordered, without timeUnit, answers Limit dimension groups in no
	// order, skipping the ranking (sortby, sort, topk, offset): for
	// callers that read every group (alerts).
	Unordered bool
	// Ranked says the answer was read from the ranks of the folded
	// periods (see runRanked) rather than by summing every group.
	Ranked bool
}

// selections are the selected metrics and the sort metrics, in that
// order (a metric both selected and sorted by appears twice).
func (p *Plan) selections() []Selection {
	return append(append([]Selection{}, p.Select...), p.SortBy...)
}

// Limits of the query language.
const (
	DefaultLimit  = 14400 // Apigee's default and maximum
	maxSelect     = 20
	maxDimensions = 5
	maxBuckets    = 100000
	maxTZO        = 14 * 60
)

var timeUnits = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"week":   7 * 24 * time.Hour,
	"month":  28 * 24 * time.Hour, // shortest month, for the bucket bound
}

// Parse reads a Metrics API request: dims is the path part after /stats/
// (comma-separated dimension names, may be empty) and q the query
// parameters. Every error is a *ParamError.
func Parse(org, env, dims string, q url.Values) (*Plan, error) {
	p := &Plan{Org: org, Env: env, Desc: true, Limit: DefaultLimit}
	if err := p.parseDimensions(dims); err != nil {
		return nil, err
	}
	for _, name := range []string{"select", "timeRange", "timeUnit", "tzo", "filter", "sortby", "sort", "topk", "limit", "offset", "tsAscending"} {
		if len(q[name]) > 1 {
			return nil, bad(name, "given %d times; give it once", len(q[name]))
		}
	}
	sel := q.Get("select")
	if strings.TrimSpace(sel) == "" {
		return nil, bad("select", "required, e.g. select=sum(message_count)")
	}
	var err error
	if p.Select, err = parseSelections("select", sel); err != nil {
		return nil, err
	}
	if p.From, p.To, err = ParseTimeRange(q.Get("timeRange")); err != nil {
		return nil, &ParamError{Param: "timeRange", Msg: err.Error()}
	}
	if v := q.Get("timeUnit"); v != "" {
		d, ok := timeUnits[v]
		if !ok {
			return nil, bad("timeUnit", "%q is not one of second, minute, hour, day, week, month", v)
		}
		if n := p.To.Sub(p.From) / d; n > maxBuckets {
			return nil, bad("timeUnit", "%s over this timeRange gives %d intervals, more than %d; use a longer unit or a shorter range", v, n, maxBuckets)
		}
		p.TimeUnit = v
	}
	if v := q.Get("tzo"); v != "" {
		if p.TZO, err = parseTZO(v); err != nil {
			return nil, &ParamError{Param: "tzo", Msg: err.Error()}
		}
	}
	if v := q.Get("filter"); strings.TrimSpace(v) != "" {
		if p.Filter, err = ParseFilter(v); err != nil {
			return nil, &ParamError{Param: "filter", Msg: err.Error()}
		}
	}
	if v := q.Get("sortby"); v != "" {
		if p.SortBy, err = parseSelections("sortby", v); err != nil {
			return nil, err
		}
	}
	switch v := q.Get("sort"); strings.ToUpper(v) {
	case "", "DESC":
	case "ASC":
		p.Desc = false
	default:
		return nil, bad("sort", "%q is not ASC or DESC", v)
	}
	if p.TopK, err = intParam(q, "topk", 0, 1, DefaultLimit); err != nil {
		return nil, err
	}
	if p.Limit, err = intParam(q, "limit", DefaultLimit, 1, DefaultLimit); err != nil {
		return nil, err
	}
	if p.Offset, err = intParam(q, "offset", 0, 0, 1<<31-1); err != nil {
		return nil, err
	}
	if v := q.Get("tsAscending"); v != "" {
		if p.TSAscending, err = strconv.ParseBool(v); err != nil {
			return nil, bad("tsAscending", "%q is not true or false", v)
		}
	}
	return p, nil
}

func (p *Plan) parseDimensions(dims string) error {
	dims = strings.Trim(dims, "/")
	if dims == "" {
		return nil
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(dims, ",") {
		name = strings.TrimSpace(name)
		d, ok := lookupDimension(name)
		if !ok {
			return bad("dimension", "unknown dimension %q; known: %s", name, dimensionNames())
		}
		if seen[d.name] {
			return bad("dimension", "%q given twice", name)
		}
		seen[d.name] = true
		p.Dimensions = append(p.Dimensions, d)
	}
	if len(p.Dimensions) > maxDimensions {
		return bad("dimension", "at most %d dimensions", maxDimensions)
	}
	return nil
}

func parseSelections(param, s string) ([]Selection, error) {
	var out []Selection
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, bad(param, "empty entry in %q", s)
		}
		sel, err := parseSelection(param, item)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	if len(out) > maxSelect {
		return nil, bad(param, "at most %d metrics", maxSelect)
	}
	return out, nil
}

func parseSelection(param, item string) (Selection, error) {
	agg, name := aggNone, item
	if i := strings.IndexByte(item, '('); i >= 0 {
		if !strings.HasSuffix(item, ")") {
			return Selection{}, bad(param, "%q: missing )", item)
		}
		agg, name = strings.ToLower(strings.TrimSpace(item[:i])), strings.TrimSpace(item[i+1:len(item)-1])
	}
	m, ok := lookupMetric(name)
	if !ok {
		return Selection{}, bad(param, "unknown metric %q; known: %s", name, metricNames())
	}
	if !m.allows(agg) {
		if len(m.aggs) == 0 {
			return Selection{}, bad(param, "%s takes no aggregate function; select it as %s", m.name, m.name)
		}
		return Selection{}, bad(param, "%s(%s) is not allowed; the functions allowed for %s are: %s", agg, m.name, m.name, strings.Join(m.aggs, ", "))
	}
	sel := Selection{Name: item, Metric: m, Agg: agg}
	if agg == aggNone {
		sel.Name = m.name
		if len(m.aggs) > 0 {
			sel.Agg = m.aggs[0]
		}
	} else {
		sel.Name = agg + "(" + m.name + ")"
	}
	return sel, nil
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, bad(name, "%q is not a whole number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// ParseTimeRange parses Apigee's "MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM" (GMT;
// the space may arrive as %20 or +, both decoded to a space by the URL
// parser; a literal + is accepted too). 24:00 is rejected, as Apigee asks
// for 23:59 instead. The start must be before the end.
func ParseTimeRange(s string) (from, to time.Time, err error) {
	if s == "" {
		return from, to, fmt.Errorf("required, e.g. timeRange=03/01/2018 00:00~03/31/2018 23:59")
	}
	parts := strings.Split(s, "~")
	if len(parts) != 2 {
		return from, to, fmt.Errorf("%q: want start~end as MM/DD/YYYY HH:MM~MM/DD/YYYY HH:MM", s)
	}
	if from, err = parseInstant(parts[0]); err != nil {
		return from, to, fmt.Errorf("start: %w", err)
	}
	if to, err = parseInstant(parts[1]); err != nil {
		return from, to, fmt.Errorf("end: %w", err)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("start %s is not before end %s", strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1]))
	}
	return from, to, nil
}

func parseInstant(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		date, clock, ok = strings.Cut(s, "+")
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%q: want MM/DD/YYYY HH:MM", s)
	}
	clock = strings.TrimSpace(clock)
	dp := strings.Split(date, "/")
	if len(dp) != 3 || len(dp[2]) != 4 {
		return time.Time{}, fmt.Errorf("%q: date must be MM/DD/YYYY", date)
	}
	mo, err1 := atoiN(dp[0], 1, 2)
	day, err2 := atoiN(dp[1], 1, 2)
	yr, err3 := atoiN(dp[2], 4, 4)
	if err1 != nil || err2 != nil || err3 != nil {
		return time.Time{}, fmt.Errorf("%q: date must be MM/DD/YYYY", date)
	}
	hh, mm, ok := strings.Cut(clock, ":")
	h, err4 := atoiN(hh, 1, 2)
	m, err5 := atoiN(mm, 2, 2)
	if !ok || err4 != nil || err5 != nil {
		return time.Time{}, fmt.Errorf("%q: time must be HH:MM", clock)
	}
	if h == 24 {
		return time.Time{}, fmt.Errorf("%q: 24:00 wraps to 00:00; use 23:59", clock)
	}
	if h > 23 || m > 59 {
		return time.Time{}, fmt.Errorf("%q: no such time of day", clock)
	}
	if yr < 1970 || yr > 9999 {
		return time.Time{}, fmt.Errorf("%q: year out of range", date)
	}
	t := time.Date(yr, time.Month(mo), day, h, m, 0, 0, time.UTC)
	if t.Month() != time.Month(mo) || t.Day() != day {
		return time.Time{}, fmt.Errorf("%q: no such date", date)
	}
	return t, nil
}

// atoiN parses a decimal of minLen..maxLen ASCII digits.
func atoiN(s string, minLen, maxLen int) (int, error) {
	if len(s) < minLen || len(s) > maxLen {
		return 0, fmt.Errorf("bad length")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a digit")
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, nil
}

// parseTZO reads a time-zone offset: minutes east of UTC ("330", "-420")
// or "+05:30" / "-07:00".
func parseTZO(s string) (int, error) {
	sign := 1
	body := s
	if body != "" && (body[0] == '+' || body[0] == '-' || body[0] == ' ') {
		if body[0] == '-' {
			sign = -1
		}
		body = body[1:]
	}
	var n int
	if hh, mm, ok := strings.Cut(body, ":"); ok {
		h, err1 := atoiN(hh, 1, 2)
		m, err2 := atoiN(mm, 2, 2)
		if err1 != nil || err2 != nil || m > 59 {
			return 0, fmt.Errorf("%q: want minutes (330, -420) or +HH:MM", s)
		}
		n = h*60 + m
	} else {
		v, err := atoiN(body, 1, 4)
		if err != nil {
			return 0, fmt.Errorf("%q: want minutes (330, -420) or +HH:MM", s)
		}
		n = v
	}
	if n > maxTZO {
		return 0, fmt.Errorf("%q: offset beyond 14 hours", s)
	}
	return sign * n, nil
}
