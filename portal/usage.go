package portal

import (
	"context"
	"database/sql"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
)

// UsageJSON is the answer of GET /portal/api/v1/usage: a customer's calls
// in one billing period, in total, per day (per hour for a period of two
// days or less) and by route, API, key and status. Every figure comes
// from a Metrics API plan restricted to the customer, so it equals what
// /stats answers an org key for the same customer.
type UsageJSON struct {
	Org      string       `json:"org"`
	Env      string       `json:"env"`
	Customer Customer     `json:"customer"`
	Period   PeriodJSON   `json:"period"`
	Total    Figures      `json:"total"`
	Series   SeriesJSON   `json:"series"`
	Routes   []GroupJSON  `json:"routes"`
	APIs     []GroupJSON  `json:"apis"`
	Keys     []GroupJSON  `json:"keys"`
	Statuses []StatusJSON `json:"statuses"`
}

// Figures are calls, errors and latency.
type Figures struct {
	Calls  int64    `json:"calls"`
	Errors int64    `json:"errors"`
	AvgMs  *float64 `json:"avg_ms"`
	P50Ms  *float64 `json:"p50_ms"`
	P95Ms  *float64 `json:"p95_ms"`
	P99Ms  *float64 `json:"p99_ms"`
}

// GroupJSON is one route, API or key (its fingerprint) of a period.
type GroupJSON struct {
	Name string `json:"name"`
	Figures
}

// StatusJSON is the calls answered with one status (0: no answer).
type StatusJSON struct {
	Status string `json:"status"`
	Calls  int64  `json:"calls"`
}

// SeriesJSON is calls and errors per time bucket.
type SeriesJSON struct {
	Unit   string      `json:"unit"`
	Points []PointJSON `json:"points"`
}

// PointJSON is one bucket; T is its start in milliseconds since the epoch.
type PointJSON struct {
	T      int64 `json:"t"`
	Calls  int64 `json:"calls"`
	Errors int64 `json:"errors"`
}

// GroupLimit bounds the routes, APIs and keys a usage answer lists (the
// busiest first); /stats reads further with offset.
const GroupLimit = 50

const figuresSelect = "sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)"

func (h *Handler) usage(w http.ResponseWriter, r *http.Request, t *Token) {
	if !h.allowed(w, r, t, PageUsage) {
		return
	}
	per, err := h.period(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out, err := h.usageOf(r.Context(), t, per)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, out)
}

// usageOf computes t's usage of the period per.
func (h *Handler) usageOf(ctx context.Context, t *Token, per identity.Period) (*UsageJSON, error) {
	out := &UsageJSON{Org: t.Org, Env: t.Env, Customer: t.Customer,
		Period: PeriodJSON{Label: per.Label, Start: per.Start.UTC(), End: per.End.UTC()},
		Series: SeriesJSON{Unit: "day", Points: []PointJSON{}},
		Routes: []GroupJSON{}, APIs: []GroupJSON{}, Keys: []GroupJSON{}, Statuses: []StatusJSON{}}
	if per.End.Sub(per.Start) <= 48*time.Hour {
		out.Series.Unit = "hour"
	}
	_, off := per.Start.Zone()
	type query struct {
		dims string
		q    url.Values
		read func(*stats.Result)
	}
	groups := func(into *[]GroupJSON) func(*stats.Result) {
		return func(res *stats.Result) {
			for _, row := range res.Rows {
				*into = append(*into, GroupJSON{Name: row.Dims[0], Figures: figures(row.Values)})
			}
		}
	}
	qs := []query{
		{"", url.Values{"select": {figuresSelect}}, func(res *stats.Result) {
			if len(res.Rows) > 0 {
				out.Total = figures(res.Rows[0].Values)
			}
		}},
		{"", url.Values{"select": {"sum(message_count),sum(is_error)"}, "timeUnit": {out.Series.Unit}, "tsAscending": {"true"},
			"tzo": {strconv.Itoa(off / 60)}}, func(res *stats.Result) {
			for _, row := range res.Rows {
				out.Series.Points = append(out.Series.Points, PointJSON{T: row.Bucket.UnixMilli(), Calls: count(row.Values[0]), Errors: count(row.Values[1])})
			}
		}},
		{"route", url.Values{"select": {figuresSelect}, "sortby": {"sum(message_count)"}, "limit": {strconv.Itoa(GroupLimit)}}, groups(&out.Routes)},
		{"apiproxy", url.Values{"select": {figuresSelect}, "sortby": {"sum(message_count)"}, "limit": {strconv.Itoa(GroupLimit)}}, groups(&out.APIs)},
		{"api_key", url.Values{"select": {figuresSelect}, "sortby": {"sum(message_count)"}, "limit": {strconv.Itoa(GroupLimit)}}, groups(&out.Keys)},
		{"response_status_code", url.Values{"select": {"sum(message_count)"}, "sort": {"ASC"}}, func(res *stats.Result) {
			for _, row := range res.Rows {
				out.Statuses = append(out.Statuses, StatusJSON{Status: row.Dims[0], Calls: count(row.Values[0])})
			}
		}},
	}
	if db, ok := h.cfg.DB.(*sql.DB); ok && h.cfg.Dialect.Name() == (stats.DuckDB{}).Name() {
		done, err := h.usageOnePass(ctx, db, t, per, out)
		if err != nil {
			return nil, err
		}
		if done {
			return out, nil
		}
	}
	// The queries are independent: run them at once, each on its own
	// connection, so the page waits for the slowest rather than the sum.
	results := make([]*stats.Result, len(qs))
	errs := make([]error, len(qs))
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() {
			results[i], errs[i] = h.query(ctx, t, q.dims, q.q, per.Start, per.End)
		})
	}
	wg.Wait()
	for i, q := range qs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		q.read(results[i])
	}
	out.Series.Points = fill(out.Series, per.Start, per.End)
	sortStatuses(out.Statuses)
	return out, nil
}

// query parses a Metrics API request (the time range set afterwards, as a
// period need not fall on whole minutes in UTC) and runs it for t's
// customer.
func (h *Handler) query(ctx context.Context, t *Token, dims string, q url.Values, from, to time.Time) (*stats.Result, error) {
	q.Set("timeRange", "01/01/2000 00:00~01/02/2000 00:00")
	p, err := stats.Parse(t.Org, t.Env, dims, q)
	if err != nil {
		return nil, err
	}
	p.From, p.To = from.UTC(), to.UTC()
	return h.run(ctx, t, p)
}

func figures(v []*float64) Figures {
	f := Figures{Calls: count(v[0]), Errors: count(v[1])}
	if len(v) == 6 {
		f.AvgMs, f.P50Ms, f.P95Ms, f.P99Ms = v[2], v[3], v[4], v[5]
	}
	return f
}

func count(v *float64) int64 {
	if v == nil {
		return 0
	}
	return int64(*v + 0.5)
}

// fill gives every bucket of [start, end) a point, zero where the
// customer made no call, so that a chart shows the whole period.
func fill(s SeriesJSON, start, end time.Time) []PointJSON {
	have := make(map[int64]PointJSON, len(s.Points))
	for _, p := range s.Points {
		have[p.T] = p
	}
	out := make([]PointJSON, 0, 32)
	for t := start; t.Before(end) && len(out) < 1000; {
		ms := t.UnixMilli()
		p, ok := have[ms]
		if !ok {
			p = PointJSON{T: ms}
		}
		delete(have, ms)
		out = append(out, p)
		if s.Unit == "hour" {
			t = t.Add(time.Hour)
		} else {
			t = t.AddDate(0, 0, 1)
		}
	}
	// Buckets off the grid (a change of the zone's offset within the
	// period) are kept, in time order.
	for _, p := range have {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out
}
