package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// randomEvents generates n events over 60 days of 2024 with small
// whole-number values, so that sums are exact in floating point and the
// SQL and Go answers can be compared digit for digit.
func randomEvents(r *rand.Rand, n int) []apimeter.Event {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	out := make([]apimeter.Event, n)
	for i := range out {
		ts := base.Add(time.Duration(r.Int64N(int64(60 * 24 * time.Hour))))
		path := pick("/a/x", "/a/y", "/b", "/c/z/1", "/")
		w := int64(1)
		if r.IntN(5) == 0 {
			w = 1 + r.Int64N(20)
		}
		e := apimeter.Event{
			ID: "p" + strconv.Itoa(i), Org: "o", Env: "e", Direction: apimeter.Incoming,
			APIName: pick("alpha", "beta", "gamma", "Delta"), TargetURL: pick("", "http://t1", "http://t2"),
			RequestTime: ts, ResponseTime: ts, Method: pick("GET", "POST", "PUT"),
			URI: "http://h" + path, Path: path, Route: path,
			Status:    []int{200, 201, 404, 500, 503}[r.IntN(5)],
			LatencyMs: float64(1 + r.IntN(500)), UserID: pick("", "u1", "u2", "u3", "u4", "u_5"),
			CompanyID: pick("", "acme", "zeta", "Acme%"), APIKeyID: pick("k1", "k2"),
			RequestSize: int64(r.IntN(3)*100 - 1), ResponseSize: int64(r.IntN(1000)), Weight: w,
		}
		if r.IntN(3) > 0 {
			e.TargetLatencyMs = float64(1 + r.IntN(int(e.LatencyMs)))
		}
		out[i] = e
	}
	// A few in another env and org, which no query may see.
	out[0].Env, out[1].Org = "other", "other"
	return out
}

// randomQuery builds a valid Metrics API request.
func randomQuery(r *rand.Rand) (dims string, q url.Values) {
	q = url.Values{}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	dimNames := []string{"apiproxy", "developer_app", "response_status_code", "request_verb", "proxy_basepath", "user_id", "target_url"}
	r.Shuffle(len(dimNames), func(i, j int) { dimNames[i], dimNames[j] = dimNames[j], dimNames[i] })
	dims = strings.Join(dimNames[:r.IntN(3)], ",")
	var sels []string
	for range 1 + r.IntN(3) {
		m := metricList[r.IntN(len(metricList))]
		if len(m.aggs) == 0 || r.IntN(2) == 0 {
			sels = append(sels, m.name)
		} else {
			sels = append(sels, m.aggs[r.IntN(len(m.aggs))]+"("+m.name+")")
		}
	}
	q.Set("select", strings.Join(sels, ","))
	start := time.Date(2024, 1, 1+r.IntN(40), r.IntN(24), r.IntN(60), 0, 0, time.UTC)
	end := start.Add(time.Duration(1+r.IntN(30*24)) * time.Hour)
	q.Set("timeRange", start.Format("01/02/2006 15:04")+"~"+end.Format("01/02/2006+15:04"))
	if u := pick("", "", "hour", "day", "week", "month"); u != "" {
		q.Set("timeUnit", u)
	}
	if r.IntN(3) == 0 {
		q.Set("tzo", pick("330", "-420", "+05:45", "60"))
	}
	if r.IntN(2) == 0 {
		q.Set("filter", randomFilter(r, 0))
	}
	if r.IntN(2) == 0 {
		m := metricList[r.IntN(len(metricList))]
		if len(m.aggs) == 0 {
			q.Set("sortby", m.name)
		} else {
			q.Set("sortby", m.aggs[r.IntN(len(m.aggs))]+"("+m.name+")")
		}
	}
	if r.IntN(3) == 0 {
		q.Set("sort", pick("ASC", "DESC", "asc"))
	}
	if r.IntN(3) == 0 {
		q.Set("topk", strconv.Itoa(1+r.IntN(4)))
	}
	if r.IntN(3) == 0 {
		q.Set("limit", strconv.Itoa(1+r.IntN(5)))
	}
	if r.IntN(3) == 0 {
		q.Set("offset", strconv.Itoa(r.IntN(4)))
	}
	if r.IntN(2) == 0 {
		q.Set("tsAscending", pick("true", "false"))
	}
	return dims, q
}

func randomFilter(r *rand.Rand, depth int) string {
	if depth < 2 && r.IntN(3) == 0 {
		return "(" + randomFilter(r, depth+1) + ") " + []string{"and", "or", "AND"}[r.IntN(3)] + " (" + randomFilter(r, depth+1) + ")"
	}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	switch r.IntN(6) {
	case 0:
		return "response_status_code " + pick("eq", "ne", "gt", "lt", "ge", "le") + " " + pick("200", "404", "500")
	case 1:
		return "response_status_code " + pick("in", "notin") + " " + pick("200,500", "(404, 503)", "201")
	case 2:
		return pick("apiproxy", "developer_app", "user_id") + " " + pick("like", "not like", "NOT LIKE") + " " + pick("'a%'", "'%a'", "'_eta'", "'%_eta%'", "'u_%'", "'%c_e%'", "'%a%_'", `'Acme\%'`, "'%'", "\"u%\"")
	case 3:
		return pick("developer_app", "user_id", "target_url") + " " + pick("isnull", "isnotnull")
	case 4:
		return pick("request_verb", "apiproxy", "proxy_basepath") + " " + pick("eq", "ne", "gt", "le") + " " + pick("'GET'", "'beta'", "'/a'", "POST")
	default:
		return pick("apiproxy", "developer_app") + " " + pick("in", "notin") + " " + pick("'alpha','beta'", "('acme', 'Acme%')", "'gamma'")
	}
}

// evalRow is an event as the Go evaluation sees it.
type evalGroup struct {
	dims   []string
	bucket time.Time
	rows   []*apimeter.Event
}

// evaluate answers p over events in plain Go, following the documented
// semantics independently of the SQL.
func evaluate(p *Plan, events []apimeter.Event) *Result {
	var sel []*apimeter.Event
	for i := range events {
		e := &events[i]
		if e.Org != p.Org || e.Env != p.Env || e.RequestTime.Before(p.From) || !e.RequestTime.Before(p.To) {
			continue
		}
		if p.Filter != nil && !evalExpr(p.Filter, e) {
			continue
		}
		sel = append(sel, e)
	}
	key := func(e *apimeter.Event, bucket bool) (string, []string, time.Time) {
		var ds []string
		for _, d := range p.Dimensions {
			ds = append(ds, dimValue(d, e))
		}
		var b time.Time
		if bucket && p.TimeUnit != "" {
			b = truncLocal(e.RequestTime, p.TimeUnit, p.TZO)
		}
		return strings.Join(ds, "\x00") + "\x00" + strconv.FormatInt(b.UnixNano(), 10), ds, b
	}
	groupBy := func(bucket bool) []*evalGroup {
		idx := map[string]*evalGroup{}
		var gs []*evalGroup
		for _, e := range sel {
			k, ds, b := key(e, bucket)
			g := idx[k]
			if g == nil {
				g = &evalGroup{dims: ds, bucket: b}
				idx[k] = g
				gs = append(gs, g)
			}
			g.rows = append(g.rows, e)
		}
		return gs
	}
	res := &Result{}
	for _, e := range sel {
		if e.Weight > 1 {
			res.Weighted = true
		}
	}
	if len(p.Dimensions) == 0 {
		gs := groupBy(true)
		if p.TimeUnit == "" && len(gs) == 0 {
			gs = []*evalGroup{{}}
		}
		sort.Slice(gs, func(i, j int) bool { return bucketLess(gs[i].bucket, gs[j].bucket, p.TSAscending) })
		for _, g := range gs {
			res.Rows = append(res.Rows, Row{Bucket: g.bucket, Values: metricValues(p.Select, g.rows)})
		}
		applyTPS(p, res)
		return res
	}
	// Rank dimension groups over the whole range.
	sortSels := p.SortBy
	if len(sortSels) == 0 {
		sortSels = p.Select[:1]
	}
	ranked := groupBy(false)
	keys := make([][]*float64, len(ranked))
	for i, g := range ranked {
		keys[i] = metricValues(sortSels, g.rows)
	}
	less := func(desc bool) func(i, j int) bool {
		return func(i, j int) bool {
			for k := range sortSels {
				a, b := keys[i][k], keys[j][k]
				switch {
				case a == nil && b == nil:
					continue
				case a == nil:
					return false
				case b == nil:
					return true
				case *a != *b:
					return (*a > *b) == desc
				}
			}
			return dimsLess(p.Dimensions, ranked[i].dims, ranked[j].dims)
		}
	}
	order := make([]int, len(ranked))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return less(true)(order[a], order[b]) })
	if p.TopK > 0 && len(order) > p.TopK {
		order = order[:p.TopK]
	}
	sort.SliceStable(order, func(a, b int) bool { return less(p.Desc)(order[a], order[b]) })
	if p.Offset >= len(order) {
		order = nil
	} else {
		order = order[p.Offset:min(len(order), p.Offset+p.Limit)]
	}
	var bucketed []*evalGroup
	if p.TimeUnit != "" {
		bucketed = groupBy(true)
	}
	for _, i := range order {
		g := ranked[i]
		if p.TimeUnit == "" {
			res.Rows = append(res.Rows, Row{Dims: g.dims, Values: metricValues(p.Select, g.rows)})
			continue
		}
		var mine []*evalGroup
		for _, bg := range bucketed {
			if strings.Join(bg.dims, "\x00") == strings.Join(g.dims, "\x00") {
				mine = append(mine, bg)
			}
		}
		sort.Slice(mine, func(i, j int) bool { return bucketLess(mine[i].bucket, mine[j].bucket, p.TSAscending) })
		for _, bg := range mine {
			res.Rows = append(res.Rows, Row{Dims: bg.dims, Bucket: bg.bucket, Values: metricValues(p.Select, bg.rows)})
		}
	}
	applyTPS(p, res)
	// The API reports sampling only for the groups it answers with.
	res.Weighted = false
	for _, i := range order {
		for _, e := range ranked[i].rows {
			if e.Weight > 1 {
				res.Weighted = true
			}
		}
	}
	return res
}

func bucketLess(a, b time.Time, asc bool) bool {
	if asc {
		return a.Before(b)
	}
	return b.Before(a)
}

func dimsLess(ds []dimension, a, b []string) bool {
	for i, d := range ds {
		if a[i] == b[i] {
			continue
		}
		if d.numeric {
			x, _ := strconv.Atoi(a[i])
			y, _ := strconv.Atoi(b[i])
			return x < y
		}
		return a[i] < b[i]
	}
	return false
}

func truncLocal(t time.Time, unit string, tzo int) time.Time {
	loc := time.FixedZone("tzo", tzo*60)
	l := t.In(loc)
	y, m, d := l.Date()
	switch unit {
	case "second":
		l = l.Truncate(time.Second)
	case "minute":
		l = time.Date(y, m, d, l.Hour(), l.Minute(), 0, 0, loc)
	case "hour":
		l = time.Date(y, m, d, l.Hour(), 0, 0, 0, loc)
	case "day":
		l = time.Date(y, m, d, 0, 0, 0, 0, loc)
	case "week":
		wd := (int(l.Weekday()) + 6) % 7 // Monday = 0
		l = time.Date(y, m, d-wd, 0, 0, 0, 0, loc)
	case "month":
		l = time.Date(y, m, 1, 0, 0, 0, 0, loc)
	}
	return l.UTC()
}

func dimValue(d dimension, e *apimeter.Event) string {
	switch d.column {
	case "api_name":
		return e.APIName
	case "api_version":
		return e.APIVersion
	case "user_id":
		return e.UserID
	case "company_id":
		return e.CompanyID
	case "api_key_id":
		return e.APIKeyID
	case "method":
		return e.Method
	case "path", "route":
		if d.column == "route" {
			return e.Route
		}
		return e.Path
	case "uri":
		return e.URI
	case "status":
		return strconv.Itoa(e.Status)
	case "target_url":
		return e.TargetURL
	case "client_ip":
		return e.ClientIP
	case "user_agent":
		return e.UserAgent
	case "env":
		return e.Env
	case colAPIVersion:
		return e.APIVersion
	case colBasepath:
		if !strings.HasPrefix(e.Path, "/") {
			return ""
		}
		if i := strings.IndexByte(e.Path[1:], '/'); i >= 0 {
			return e.Path[:i+1]
		}
		return e.Path
	}
	panic("no Go value for dimension " + d.name)
}

func evalExpr(x Expr, e *apimeter.Event) bool {
	switch x := x.(type) {
	case *Logic:
		if x.Op == "and" {
			return evalExpr(x.L, e) && evalExpr(x.R, e)
		}
		return evalExpr(x.L, e) || evalExpr(x.R, e)
	case *Cond:
		v := dimValue(x.Dim, e)
		cmp := func(i int) int {
			if x.Nums != nil {
				n := int64(e.Status)
				switch {
				case n < x.Nums[i]:
					return -1
				case n > x.Nums[i]:
					return 1
				}
				return 0
			}
			return strings.Compare(v, x.Values[i])
		}
		switch x.Op {
		case opEq:
			return cmp(0) == 0
		case opNe:
			return cmp(0) != 0
		case opGt:
			return cmp(0) > 0
		case opLt:
			return cmp(0) < 0
		case opGe:
			return cmp(0) >= 0
		case opLe:
			return cmp(0) <= 0
		case opIn, opNotIn:
			in := false
			for i := range x.Values {
				if cmp(i) == 0 {
					in = true
				}
			}
			return in == (x.Op == opIn)
		case opLike:
			return likeMatch(v, x.Values[0])
		case opNotLike:
			return !likeMatch(v, x.Values[0])
		case opIsNull:
			return v == "" && !x.Dim.numeric
		case opIsNotNull:
			return v != "" || x.Dim.numeric
		}
	}
	panic(fmt.Sprintf("no Go evaluation for %T", x))
}

// likeMatch is SQL LIKE with % and _ and backslash as the escape.
func likeMatch(s, pat string) bool {
	if pat == "" {
		return s == ""
	}
	switch c := pat[0]; {
	case c == '%':
		for i := 0; i <= len(s); i++ {
			if likeMatch(s[i:], pat[1:]) {
				return true
			}
		}
		return false
	case c == '_':
		return s != "" && likeMatch(s[1:], pat[1:])
	case c == '\\' && len(pat) > 1:
		return s != "" && s[0] == pat[1] && likeMatch(s[1:], pat[2:])
	default:
		return s != "" && s[0] == c && likeMatch(s[1:], pat[1:])
	}
}

// metricValues computes the selections over rows: counts and sums by
// weight, weighted averages, and the weighted percentile as the smallest
// value whose cumulative weight reaches the share of the total.
func metricValues(sels []Selection, rows []*apimeter.Event) []*float64 {
	out := make([]*float64, len(sels))
	f := func(v float64) *float64 { return &v }
	for i, s := range sels {
		m := s.Metric
		switch m.kind {
		case kindCount, kindTPS, kindError:
			var n int64
			for _, e := range rows {
				if m.kind != kindError || e.Status >= 400 || e.Status == 0 {
					n += e.Weight
				}
			}
			if len(rows) > 0 {
				out[i] = f(float64(n))
			}
			continue
		case kindDistinct:
			seen := map[string]bool{}
			for _, e := range rows {
				if e.UserID != "" {
					seen[e.UserID] = true
				}
			}
			out[i] = f(float64(len(seen)))
			continue
		}
		type vw struct {
			v float64
			w int64
		}
		var vs []vw
		for _, e := range rows {
			if v, ok := valueOf(m.column, e); ok {
				vs = append(vs, vw{v, e.Weight})
			}
		}
		if len(vs) == 0 {
			continue
		}
		switch s.Agg {
		case aggSum, aggAvg:
			var sum float64
			var w int64
			for _, x := range vs {
				sum += x.v * float64(x.w)
				w += x.w
			}
			if s.Agg == aggAvg {
				sum /= float64(w)
			}
			out[i] = f(sum)
		case aggMin, aggMax:
			best := vs[0].v
			for _, x := range vs {
				if (s.Agg == aggMin) == (x.v < best) && x.v != best {
					best = x.v
				}
			}
			out[i] = f(best)
		default:
			sort.Slice(vs, func(a, b int) bool { return vs[a].v < vs[b].v })
			var total, cum int64
			for _, x := range vs {
				total += x.w
			}
			pct := percentilePercent(s.Agg)
			for _, x := range vs {
				cum += x.w
				if cum*100 >= pct*total {
					out[i] = f(x.v)
					break
				}
			}
		}
	}
	// Without rows an aggregate query still has one row: counts are null
	// in SQL (SUM of nothing), which both sides render as 0.0.
	return out
}

func valueOf(col string, e *apimeter.Event) (float64, bool) {
	switch col {
	case colLatency:
		return e.LatencyMs, true
	case colTargetLatency:
		return e.TargetLatencyMs, e.TargetLatencyMs > 0
	case colProcessing:
		return e.LatencyMs - e.TargetLatencyMs, e.TargetLatencyMs > 0
	case colReqSize:
		return float64(e.RequestSize), e.RequestSize >= 0
	case colRespSize:
		return float64(e.ResponseSize), e.ResponseSize >= 0
	}
	panic("no Go value for column " + col)
}

// TestPropertyMatchesGo runs random valid queries through the API's path
// (parse, SQL on each engine, render) and through a plain-Go evaluation of the
// same events, and requires the same answer.
func TestPropertyMatchesGo(t *testing.T) { forEngines(t, testPropertyMatchesGo) }

func testPropertyMatchesGo(t *testing.T, e engine) {
	r := rand.New(rand.NewPCG(7, 11))
	events := randomEvents(r, 600)
	db := e.open(t, events)
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		dims, q := randomQuery(r)
		p, err := Parse("o", "e", dims, q)
		if err != nil {
			t.Fatalf("query %d: /stats/%s?%s: random query rejected: %v", i, dims, q.Encode(), err)
		}
		got, err := Run(context.Background(), db, e.dialect, p)
		if err != nil {
			t.Fatalf("query %d: /stats/%s?%s: %v\nSQL: %s", i, dims, q.Encode(), err, Build(p, e.dialect).SQL)
		}
		if diff := answerDiff(p, got, evaluate(p, events)); diff != "" {
			t.Fatalf("query %d: /stats/%s?%s: %s", i, dims, q.Encode(), diff)
		}
	}
}

// answerDiff compares the API's answer with the plain-Go one as a client
// sees them (rendered JSON, and the weighted notice); "" when they agree.
func answerDiff(p *Plan, got, want *Result) string {
	gj, _ := json.Marshal(Render(p, DuckDB{}, got).Environments)
	wj, _ := json.Marshal(Render(p, DuckDB{}, want).Environments)
	if string(gj) != string(wj) {
		return fmt.Sprintf("\nAPI: %s\nGo:  %s", gj, wj)
	}
	if got.Weighted != want.Weighted {
		return fmt.Sprintf("weighted = %v, Go says %v", got.Weighted, want.Weighted)
	}
	return ""
}
