package meter

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // windowTimeZone takes any IANA zone, on machines without a zone database too
)

// Window sizes of a query (OpenMeter's).
const (
	Minute = "MINUTE"
	Hour   = "HOUR"
	Day    = "DAY"
)

// Limits of a query, so that its time and memory stay bounded.
const (
	// MaxRows is the most rows an answer may hold.
	MaxRows = 100_000
	// MaxFilterValues bounds the values of subject and filterGroupBy.
	MaxFilterValues = 1000
	// MaxZoneSegments bounds the offset changes of windowTimeZone within
	// [from, to) (two a year in zones with daylight saving time).
	MaxZoneSegments = 400
)

// Params are the parameters of GET /api/v1/meters/{idOrSlug}/query.
type Params struct {
	From, To   time.Time // To excluded
	WindowSize string    // "" for one window over [From, To)
	TimeZone   *time.Location
	// Subjects, when not empty, are the only subjects counted; the answer
	// is then per subject.
	Subjects []string
	// GroupBy are the meter's groupBy keys (and "subject") the answer is
	// split by.
	GroupBy []string
	// FilterGroupBy keeps only events whose group value is one of those
	// given, per key.
	FilterGroupBy map[string][]string
}

var filterGroupByRE = regexp.MustCompile(`^filterGroupBy\[([^\]]+)\]$`)

// ParseParams reads a query's parameters for meter m; now is the default
// of to. Unknown parameters are refused, so that a misspelt one is not
// silently ignored; org and env (which choose the store's scope) are left
// to the caller.
func ParseParams(q url.Values, m *Meter, now time.Time) (Params, error) {
	p := Params{To: now.UTC(), TimeZone: time.UTC, From: minTime}
	for k, vs := range q {
		switch k {
		case "from", "to", "windowSize", "windowTimeZone":
			if len(vs) != 1 {
				return p, &FieldError{k, "give it once"}
			}
		case "subject", "groupBy", "env", "org":
		default:
			if !filterGroupByRE.MatchString(k) {
				return p, &FieldError{k, "unknown parameter; a meter query takes from, to, windowSize, windowTimeZone, subject, groupBy and filterGroupBy[key]"}
			}
		}
	}
	parseTime := func(k string) (time.Time, bool, error) {
		v := q.Get(k)
		if v == "" {
			return time.Time{}, false, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, false, &FieldError{k, fmt.Sprintf("%q: want an RFC 3339 time, e.g. 2026-11-01T00:00:00Z", v)}
		}
		return t.UTC(), true, nil
	}
	if t, ok, err := parseTime("from"); err != nil {
		return p, err
	} else if ok {
		p.From = t
	}
	if t, ok, err := parseTime("to"); err != nil {
		return p, err
	} else if ok {
		p.To = t
	}
	if p.From.Before(minTime) {
		p.From = minTime
	}
	if p.To.After(maxTime) {
		p.To = maxTime
	}
	if !p.From.Before(p.To) {
		return p, &FieldError{"from", "must be before to"}
	}
	switch ws := q.Get("windowSize"); ws {
	case "", Minute, Hour, Day:
		p.WindowSize = ws
	default:
		return p, &FieldError{"windowSize", fmt.Sprintf("%q: want MINUTE, HOUR or DAY", ws)}
	}
	if tz := q.Get("windowTimeZone"); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			return p, &FieldError{"windowTimeZone", fmt.Sprintf("%q: want an IANA time zone name, e.g. Europe/Berlin", tz)}
		}
		p.TimeZone = loc
	}
	p.Subjects = q["subject"]
	if len(p.Subjects) > MaxFilterValues {
		return p, &FieldError{"subject", fmt.Sprintf("at most %d values", MaxFilterValues)}
	}
	for _, g := range q["groupBy"] {
		if g != "subject" {
			if _, ok := m.GroupBy[g]; !ok {
				return p, &FieldError{"groupBy", fmt.Sprintf("%q: meter %s groups by %s", g, m.Slug, groupKeys(m))}
			}
		}
		if !slices.Contains(p.GroupBy, g) {
			p.GroupBy = append(p.GroupBy, g)
		}
	}
	n := 0
	for k, vs := range q {
		mm := filterGroupByRE.FindStringSubmatch(k)
		if mm == nil {
			continue
		}
		if _, ok := m.GroupBy[mm[1]]; !ok {
			return p, &FieldError{k, fmt.Sprintf("%q: meter %s groups by %s", mm[1], m.Slug, groupKeys(m))}
		}
		if p.FilterGroupBy == nil {
			p.FilterGroupBy = map[string][]string{}
		}
		p.FilterGroupBy[mm[1]] = vs
		n += len(vs)
	}
	if n > MaxFilterValues {
		return p, &FieldError{"filterGroupBy", fmt.Sprintf("at most %d values in all", MaxFilterValues)}
	}
	return p, nil
}

func groupKeys(m *Meter) string {
	keys := append([]string{"subject"}, slices.Sorted(maps.Keys(m.GroupBy))...)
	return strings.Join(keys, ", ")
}

// Row is one value of an answer: the aggregate of one window, subject and
// group.
type Row struct {
	Value       float64            `json:"value"`
	WindowStart time.Time          `json:"windowStart"`
	WindowEnd   time.Time          `json:"windowEnd"`
	Subject     *string            `json:"subject"`
	GroupBy     map[string]*string `json:"groupBy"`
}

// Result is the answer to a meter query, in OpenMeter's shape.
type Result struct {
	From           time.Time `json:"from"`
	To             time.Time `json:"to"`
	WindowSize     *string   `json:"windowSize"`
	WindowTimeZone string    `json:"windowTimeZone,omitempty"`
	Data           []Row     `json:"data"`
}

// Dialect is what differs between the engines in a meter query's SQL.
type Dialect interface {
	// UsageTable and CallTable are the tables read, as FROM names them.
	UsageTable() string
	CallTable() string
	// CallTime is an API call's time in epoch milliseconds; CallRange
	// the condition (with its arguments) that the call is in [from, to).
	CallTime() string
	CallRange(from, to time.Time) (string, []any)
	// NumAt and StrAt are the number and the text at the flattened data
	// key bound to each ? they hold; NULL where the event has none.
	NumAt() string
	StrAt() string
	IDiv(a, b string) string
	Double(x string) string
	Text(x string) string
	CountDistinct(x string) string
	ArgMax(x, by string) string
}

// Query answers params for meter m of (org, env) from db: from the
// meter's aggregates where they cover the range (agg.go), else from the
// events.
func Query(ctx context.Context, db *sql.DB, d Dialect, m *Meter, p Params) (Result, error) {
	var tx querier = db
	if ad, ok := asAgg(d); ok && ad.transactional() && Aggregated(m) && p.WindowSize != Minute {
		// The folds and the rows they point at, read in one snapshot.
		t, err := db.BeginTx(ctx, nil)
		if err != nil {
			return Result{}, fmt.Errorf("meter %s: query: %w", m.Slug, err)
		}
		defer t.Rollback()
		tx = t
	}
	q, args, ask, err := planQuery(ctx, tx, d, m, p)
	if err != nil {
		return Result{}, err
	}
	if len(ask) > 0 {
		// Day rows for this zone from the next fold pass on (shift.go).
		if err := askShifts(ctx, db, Def(m), ask, time.Now().UnixMilli()); err != nil {
			return Result{}, fmt.Errorf("meter %s: %w", m.Slug, err)
		}
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return Result{}, fmt.Errorf("meter %s: query: %w", m.Slug, err)
	}
	defer rows.Close()
	res := Result{From: p.From, To: p.To, Data: []Row{}}
	if p.WindowSize != "" {
		ws := p.WindowSize
		res.WindowSize = &ws
		res.WindowTimeZone = p.TimeZone.String()
	}
	bySubject := bySubject(p)
	groups := p.groupKeys()
	dest := make([]any, 0, 3+len(groups))
	var bucket int64
	var subject string
	gv := make([]sql.NullString, len(groups))
	var value sql.NullFloat64
	if p.WindowSize != "" {
		dest = append(dest, &bucket)
	}
	if bySubject {
		dest = append(dest, &subject)
	}
	for i := range gv {
		dest = append(dest, &gv[i])
	}
	dest = append(dest, &value)
	for rows.Next() {
		if len(res.Data) == MaxRows {
			return Result{}, &FieldError{"windowSize", fmt.Sprintf("the answer would hold more than %d rows: query a shorter range, a larger window or fewer groups", MaxRows)}
		}
		if err := rows.Scan(dest...); err != nil {
			return Result{}, fmt.Errorf("meter %s: scan: %w", m.Slug, err)
		}
		if !value.Valid || math.IsNaN(value.Float64) || m.Aggregation == UniqueCount && value.Float64 == 0 {
			continue // no event of the group had a value
		}
		r := Row{Value: value.Float64, WindowStart: p.From, WindowEnd: p.To, GroupBy: map[string]*string{}}
		if p.WindowSize != "" {
			r.WindowStart, r.WindowEnd = window(p, bucket)
		}
		if bySubject {
			s := subject
			r.Subject = &s
		}
		for i, g := range groups {
			if gv[i].Valid {
				s := gv[i].String
				r.GroupBy[g] = &s
			} else {
				r.GroupBy[g] = nil
			}
		}
		res.Data = append(res.Data, r)
	}
	if err := rows.Err(); err != nil {
		return Result{}, fmt.Errorf("meter %s: query: %w", m.Slug, err)
	}
	sortRows(res.Data, groups)
	return res, nil
}

func bySubject(p Params) bool {
	return len(p.Subjects) > 0 || slices.Contains(p.GroupBy, "subject")
}

// groupKeys are the groupBy keys of p other than subject, sorted.
func (p Params) groupKeys() []string {
	var out []string
	for _, g := range p.GroupBy {
		if g != "subject" {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// sortRows orders an answer by window, subject and group values (a
// missing value first), so that both engines answer in one order.
func sortRows(rows []Row, groups []string) {
	str := func(s *string) (int, string) {
		if s == nil {
			return 0, ""
		}
		return 1, *s
	}
	slices.SortFunc(rows, func(a, b Row) int {
		if c := a.WindowStart.Compare(b.WindowStart); c != 0 {
			return c
		}
		an, as := str(a.Subject)
		bn, bs := str(b.Subject)
		if an != bn {
			return an - bn
		}
		if c := strings.Compare(as, bs); c != 0 {
			return c
		}
		for _, g := range groups {
			an, as := str(a.GroupBy[g])
			bn, bs := str(b.GroupBy[g])
			if an != bn {
				return an - bn
			}
			if c := strings.Compare(as, bs); c != 0 {
				return c
			}
		}
		return 0
	})
}

// window is the window of bucket: for MINUTE and HOUR, the window's start
// in epoch milliseconds (windows are real minutes and hours, so the two
// 01:00 hours of a night when clocks go back are two windows); for DAY,
// the local day number in the time zone (days since 1970-01-01), whose
// window runs from that day's local midnight to the next (23 or 25 hours
// across a change of offset).
func window(p Params, bucket int64) (time.Time, time.Time) {
	switch p.WindowSize {
	case Minute:
		s := time.UnixMilli(bucket).UTC()
		return s, s.Add(time.Minute)
	case Hour:
		s := time.UnixMilli(bucket).UTC()
		return s, s.Add(time.Hour)
	}
	d := time.Unix(bucket*86400, 0).UTC()
	y, mo, da := d.Date()
	return time.Date(y, mo, da, 0, 0, 0, 0, p.TimeZone).UTC(), time.Date(y, mo, da+1, 0, 0, 0, 0, p.TimeZone).UTC()
}

// segment is a stretch of time with one UTC offset: until (epoch
// milliseconds, excluded; 0 for the last) and the offset in seconds.
type segment struct {
	until  int64
	offset int
}

// zoneSegments splits [from, to) by loc's offset changes.
func zoneSegments(loc *time.Location, from, to time.Time) ([]segment, error) {
	var out []segment
	t := from.In(loc)
	for {
		_, off := t.Zone()
		_, end := t.ZoneBounds()
		if end.IsZero() || !end.Before(to) {
			out = append(out, segment{offset: off})
			return out, nil
		}
		out = append(out, segment{until: end.UnixMilli(), offset: off})
		if len(out) >= MaxZoneSegments {
			return nil, &FieldError{"windowTimeZone", fmt.Sprintf("the range changes UTC offset in %s more than %d times: query a shorter range", loc, MaxZoneSegments)}
		}
		t = end.In(loc)
	}
}

// offsetExpr is f(offset) of the segment each row's time t falls in, as
// SQL.
func offsetExpr(segs []segment, t string, f func(int) int64) string {
	if len(segs) == 1 {
		return strconv.FormatInt(f(segs[0].offset), 10)
	}
	var b strings.Builder
	b.WriteString("(CASE")
	for _, s := range segs[:len(segs)-1] {
		fmt.Fprintf(&b, " WHEN %s < %d THEN %d", t, s.until, f(s.offset))
	}
	fmt.Fprintf(&b, " ELSE %d END)", f(segs[len(segs)-1].offset))
	return b.String()
}

// bucketExpr is the window of the row at time t (epoch milliseconds), as
// window reads it.
func bucketExpr(d Dialect, p Params, t string) (string, error) {
	segs, err := zoneSegments(p.TimeZone, p.From, p.To)
	if err != nil {
		return "", err
	}
	switch p.WindowSize {
	case Minute, Hour:
		w := int64(60_000)
		if p.WindowSize == Hour {
			w = 3_600_000
		}
		// The offset within the window size: 0 in most zones, so windows
		// are UTC minutes and hours; 30 or 45 minutes in some.
		o := offsetExpr(segs, t, func(off int) int64 { return int64(off) * 1000 % w })
		return fmt.Sprintf("(%s * %d - %s)", d.IDiv("("+t+" + "+o+")", strconv.FormatInt(w, 10)), w, o), nil
	}
	o := offsetExpr(segs, t, func(off int) int64 { return int64(off) * 1000 })
	return d.IDiv("("+t+" + "+o+")", "86400000"), nil
}

// renderInner is the query of the events a meter query counts: t (epoch
// ms), s (subject), w (weight), x (value, NULL when the event has none),
// g0.. (the values of cols: the answer's group keys, then the keys it is
// filtered by but not split by) and, with ids, src and eid (the event's
// source and id; the source of an API call is ""), of each event of the
// meter's type in [From, To) and of p's subjects.
func renderInner(d Dialect, m *Meter, p Params, ids bool) (string, []any, []string) {
	call := m.EventType == CallType
	var inner strings.Builder
	var args []any
	groups := p.groupKeys()
	// The inner query has a column per group key of the answer, then one
	// per key the answer is filtered by but not split by.
	cols := slices.Clone(groups)
	for _, k := range slices.Sorted(maps.Keys(p.FilterGroupBy)) {
		if !slices.Contains(cols, k) {
			cols = append(cols, k)
		}
	}
	numeric := m.Aggregation != UniqueCount
	// The inner query: t (epoch ms), s (subject), w (weight), x (value),
	// g0.. (group values) of each event in range.
	if call {
		fmt.Fprintf(&inner, "SELECT %s AS t, CASE WHEN company_id <> '' THEN company_id ELSE user_id END AS s, weight AS w", d.CallTime())
		if m.ValueProperty != "" {
			key, _ := ParsePath(m.ValueProperty)
			col := callColumn(key)
			f, _ := callField(key)
			if numeric || f.Numeric {
				fmt.Fprintf(&inner, ", %s AS x", d.Double(col))
			} else {
				fmt.Fprintf(&inner, ", %s AS x", col)
			}
		}
		for i, g := range cols {
			key, _ := ParsePath(m.GroupBy[g])
			col := callColumn(key)
			if f, _ := callField(key); f.Numeric {
				col = d.Text(col)
			}
			fmt.Fprintf(&inner, ", %s AS g%d", col, i)
		}
		if ids {
			inner.WriteString(", '' AS src, id AS eid")
		}
		cond, cargs := d.CallRange(p.From, p.To)
		fmt.Fprintf(&inner, " FROM %s WHERE org = ? AND env = ? AND %s", d.CallTable(), cond)
		args = append(args, m.Org, m.Env)
		args = append(args, cargs...)
		if m.Filter != nil {
			args = callFilter(&inner, d, m.Filter, args)
		}
		if len(p.Subjects) > 0 {
			inner.WriteString(" AND (CASE WHEN company_id <> '' THEN company_id ELSE user_id END) IN (")
			args = placeholders(&inner, p.Subjects, args)
			inner.WriteString(")")
		}
	} else {
		inner.WriteString("SELECT ts_ms AS t, subject AS s, 1 AS w")
		var iargs []any
		if m.ValueProperty != "" {
			key, _ := ParsePath(m.ValueProperty)
			fmt.Fprintf(&inner, ", %s AS x", valueAt(d, numeric))
			iargs = append(iargs, binds(valueAt(d, numeric), key)...)
		}
		for i, g := range cols {
			key, _ := ParsePath(m.GroupBy[g])
			fmt.Fprintf(&inner, ", %s AS g%d", d.StrAt(), i)
			iargs = append(iargs, binds(d.StrAt(), key)...)
		}
		if ids {
			inner.WriteString(", source AS src, id AS eid")
		}
		fmt.Fprintf(&inner, " FROM %s WHERE org = ? AND env = ? AND type = ? AND ts_ms >= ? AND ts_ms < ?", d.UsageTable())
		args = append(iargs, m.Org, m.Env, m.EventType, p.From.UnixMilli(), p.To.UnixMilli())
		if len(p.Subjects) > 0 {
			inner.WriteString(" AND subject IN (")
			args = placeholders(&inner, p.Subjects, args)
			inner.WriteString(")")
		}
	}
	return inner.String(), args, cols
}

// Render is the SQL of a meter query and its arguments.
func Render(d Dialect, m *Meter, p Params) (string, []any, error) {
	call := m.EventType == CallType
	inner, args, cols := renderInner(d, m, p, false)
	// Events without the value count for no aggregation: x is NULL for
	// them, which aggregates skip (a group left with none answers NULL, or
	// 0 for UNIQUE_COUNT, and is dropped from the answer). Only LATEST
	// filters them out first, so that the latest event with a value is
	// taken. No other filter on x: DuckDB would compute x once more for it.
	keep := ""
	if m.Aggregation == Latest {
		keep = "x IS NOT NULL"
	}
	return outerQuery(d, p, cols, "", inner+") AS e", aggExpr(d, m, call), keep, args)
}

// outerQuery groups the rows of from (a subquery with its closing
// parenthesis and alias) into a meter query's answer: by the window's
// bucket of column <prefix>t, the subject <prefix>s and the group values
// <prefix>g0..., keeping only rows where keep holds (when not empty) and
// whose group values FilterGroupBy allows, aggregated by agg. The
// arguments of from are args; the filter's follow them.
func outerQuery(d Dialect, p Params, cols []string, prefix, from, agg, keep string, args []any) (string, []any, error) {
	var sel, group, where []string
	if p.WindowSize != "" {
		b, err := bucketExpr(d, p, prefix+"t")
		if err != nil {
			return "", nil, err
		}
		sel = append(sel, b+" AS b")
		group = append(group, "b")
	}
	if bySubject(p) {
		sel = append(sel, prefix+"s")
		group = append(group, prefix+"s")
	}
	for i := range p.groupKeys() {
		sel = append(sel, fmt.Sprintf("%sg%d", prefix, i))
		group = append(group, fmt.Sprintf("%sg%d", prefix, i))
	}
	if keep != "" {
		where = append(where, keep)
	}
	for i, g := range cols {
		if vs, ok := p.FilterGroupBy[g]; ok {
			var b strings.Builder
			fmt.Fprintf(&b, "%sg%d IN (", prefix, i)
			args = placeholders(&b, vs, args)
			b.WriteString(")")
			where = append(where, b.String())
		}
	}
	sel = append(sel, agg+" AS v")
	var q strings.Builder
	fmt.Fprintf(&q, "SELECT %s FROM (%s", strings.Join(sel, ", "), from)
	if len(where) > 0 {
		q.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	if len(group) > 0 {
		q.WriteString(" GROUP BY " + strings.Join(group, ", "))
	}
	fmt.Fprintf(&q, " LIMIT %d", MaxRows+1)
	return q.String(), args, nil
}

func valueAt(d Dialect, numeric bool) string {
	if numeric {
		return d.NumAt()
	}
	return d.StrAt()
}

// binds is key once per ? of expr.
func binds(expr, key string) []any {
	n := strings.Count(expr, "?")
	out := make([]any, n)
	for i := range out {
		out[i] = key
	}
	return out
}

func placeholders(b *strings.Builder, vs []string, args []any) []any {
	for i, v := range vs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?")
		args = append(args, v)
	}
	return args
}

// callColumn is the events table's column of an api-call data key.
func callColumn(key string) string {
	switch key {
	case "route":
		return "route"
	case "api":
		return "api_name"
	case "verb":
		return "method"
	case "status":
		return "status"
	case "requestBytes":
		return "req_size"
	case "responseBytes":
		return "resp_size"
	case "latencyMs":
		return "latency_ms"
	case "user":
		return "user_id"
	case "company":
		return "company_id"
	case "key":
		return "api_key_id"
	}
	panic("meter: no column for api-call field " + key)
}

func callFilter(b *strings.Builder, d Dialect, f *CallFilter, args []any) []any {
	in := func(col string, vs []string) {
		if len(vs) == 0 {
			return
		}
		fmt.Fprintf(b, " AND %s IN (", col)
		args = placeholders(b, vs, args)
		b.WriteString(")")
	}
	in("api_name", f.API)
	in("route", f.Route)
	in("method", f.Verb)
	in("user_id", f.User)
	in("company_id", f.Company)
	in("api_key_id", f.Key)
	if len(f.Status) > 0 {
		b.WriteString(" AND status IN (")
		for i, s := range f.Status {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Itoa(s))
		}
		b.WriteString(")")
	}
	if f.Errors != nil {
		if *f.Errors {
			b.WriteString(" AND (status >= 400 OR status = 0)")
		} else {
			b.WriteString(" AND NOT (status >= 400 OR status = 0)")
		}
	}
	return args
}

// aggExpr is the meter's aggregate of x over its rows. API calls are
// weighted by w (the calls an event stands for, as the Metrics API counts
// them): counts and sums count each call by its weight, the average is
// weighted; distinct counts, minimum, maximum and latest value are not.
func aggExpr(d Dialect, m *Meter, call bool) string {
	switch m.Aggregation {
	case Count:
		if call {
			return d.Double("sum(w)")
		}
		return d.Double("count(*)")
	case Sum:
		if call {
			return d.Double("sum(x * w)")
		}
		return d.Double("sum(x)")
	case Avg:
		if call {
			return d.Double("sum(x * w)") + " / " + d.Double("sum(CASE WHEN x IS NOT NULL THEN w END)")
		}
		return d.Double("avg(x)")
	case Min:
		return d.Double("min(x)")
	case Max:
		return d.Double("max(x)")
	case UniqueCount:
		return d.Double(d.CountDistinct("x"))
	case Latest:
		return d.Double(d.ArgMax("x", "t"))
	}
	panic("meter: unknown aggregation " + m.Aggregation)
}
