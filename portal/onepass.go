package portal

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/stats"
)

// DefaultOnePassLimit bounds the groups the one-pass usage query may
// return; a customer with more (a very busy one) is answered by the
// Metrics API's plans instead, so memory per request stays bounded.
const DefaultOnePassLimit = 200_000

// onePassSQL reads a customer's calls of a period once, grouped by what
// the usage answer shows (route, API, key, status), the minute and the
// latency, with the summed weight: an embedded store scans a column per
// query, and the six plans of the usage answer would scan the period six
// times (BenchmarkPortalUsage: docs/performance.md). Latency stays a key,
// so percentiles are exact. The customer column is one of two constants.
const onePassSQL = `SELECT route, api_name, api_key_id, status, CAST(floor(epoch_ms(ts) / 60000) AS BIGINT) AS m, latency_ms, SUM(weight) AS w
FROM ` + stats.Table + `
WHERE org = $1 AND env = $2 AND ts >= $3 AND ts < $4 AND %s = $5
GROUP BY route, api_name, api_key_id, status, m, latency_ms
LIMIT $6`

// cell is one group of onePassSQL.
type cell struct {
	route, api, key string
	status          int
	minute          int64
	latency         float64
	w               int64
}

// usageOnePass fills out from one query on db; done is false (out
// untouched) when the customer has more than Config.OnePassLimit groups.
func (h *Handler) usageOnePass(ctx context.Context, db *sql.DB, t *Token, per identity.Period, out *UsageJSON) (done bool, err error) {
	rows, err := db.QueryContext(ctx, fmt.Sprintf(onePassSQL, t.Customer.Column()),
		t.Org, t.Env, per.Start.UTC(), per.End.UTC(), t.Customer.ID, h.cfg.OnePassLimit+1)
	if err != nil {
		return false, fmt.Errorf("portal usage: %w", err)
	}
	defer rows.Close()
	var cells []cell
	for rows.Next() {
		var c cell
		if err := rows.Scan(&c.route, &c.api, &c.key, &c.status, &c.minute, &c.latency, &c.w); err != nil {
			return false, fmt.Errorf("portal usage: %w", err)
		}
		cells = append(cells, c)
		if len(cells) > h.cfg.OnePassLimit {
			return false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("portal usage: %w", err)
	}

	var total agg
	routes, apis, keys := map[string]*agg{}, map[string]*agg{}, map[string]*agg{}
	statuses := map[int]int64{}
	series := map[int64]*PointJSON{}
	loc := per.Start.Location()
	for i := range cells {
		c := &cells[i]
		isErr := c.status >= 400 || c.status == 0 // apimeter.IsErrorSQL
		total.add(c, isErr)
		for _, g := range []struct {
			m    map[string]*agg
			name string
		}{{routes, c.route}, {apis, c.api}, {keys, c.key}} {
			a := g.m[g.name]
			if a == nil {
				a = &agg{}
				g.m[g.name] = a
			}
			a.add(c, isErr)
		}
		statuses[c.status] += c.w
		b := bucket(time.UnixMilli(c.minute*60000).In(loc), out.Series.Unit).UnixMilli()
		p := series[b]
		if p == nil {
			p = &PointJSON{T: b}
			series[b] = p
		}
		p.Calls += c.w
		if isErr {
			p.Errors += c.w
		}
	}
	out.Total = total.figures()
	out.Routes, out.APIs, out.Keys = top(routes), top(apis), top(keys)
	for st, n := range statuses {
		out.Statuses = append(out.Statuses, StatusJSON{Status: strconv.Itoa(st), Calls: n})
	}
	sortStatuses(out.Statuses)
	for _, p := range series {
		out.Series.Points = append(out.Series.Points, *p)
	}
	out.Series.Points = fill(out.Series, per.Start, per.End)
	return true, nil
}

// bucket is the start of the day (or hour) t falls in, in t's zone.
func bucket(t time.Time, unit string) time.Time {
	if unit == "hour" {
		return t.Truncate(time.Hour)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
}

// agg sums calls, errors and latency, and keeps the weight of each
// latency for percentiles.
type agg struct {
	calls, errors int64
	latSum        float64
	byLatency     map[float64]int64
}

func (a *agg) add(c *cell, isErr bool) {
	a.calls += c.w
	if isErr {
		a.errors += c.w
	}
	a.latSum += c.latency * float64(c.w)
	if a.byLatency == nil {
		a.byLatency = map[float64]int64{}
	}
	a.byLatency[c.latency] += c.w
}

// figures computes what the Metrics API computes: averages weighted, and
// the pN latency the smallest whose cumulative weight, in latency order,
// reaches N% of the weight (whole numbers compared, as its SQL does).
func (a *agg) figures() Figures {
	f := Figures{Calls: a.calls, Errors: a.errors}
	if a.calls == 0 {
		return f
	}
	avg := a.latSum / float64(a.calls)
	f.AvgMs = &avg
	lats := make([]float64, 0, len(a.byLatency))
	for l := range a.byLatency {
		lats = append(lats, l)
	}
	slices.Sort(lats)
	pct := func(n int64) *float64 {
		var cw int64
		for _, l := range lats {
			cw += a.byLatency[l]
			if cw*100 >= n*a.calls {
				return &l
			}
		}
		return nil
	}
	f.P50Ms, f.P95Ms, f.P99Ms = pct(50), pct(95), pct(99)
	return f
}

// top returns the GroupLimit busiest groups, busiest first, ties by name,
// as the Metrics API ranks them (sortby=sum(message_count)).
func top(m map[string]*agg) []GroupJSON {
	out := make([]GroupJSON, 0, len(m))
	for name, a := range m {
		out = append(out, GroupJSON{Name: name, Figures: a.figures()})
	}
	slices.SortFunc(out, func(x, y GroupJSON) int {
		if c := cmp.Compare(y.Calls, x.Calls); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out[:min(len(out), GroupLimit)]
}

// sortStatuses orders statuses by code.
func sortStatuses(s []StatusJSON) {
	slices.SortFunc(s, func(x, y StatusJSON) int {
		a, _ := strconv.Atoi(x.Status)
		b, _ := strconv.Atoi(y.Status)
		return cmp.Compare(a, b)
	})
}
