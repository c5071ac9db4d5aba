package identity

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/apimeter/apimeter"
)

// Dimension is what usage is grouped by.
type Dimension string

// The dimensions usage is counted by.
const (
	ByUser    Dimension = "user_id"
	ByCompany Dimension = "company_id"
	ByAPIKey  Dimension = "api_key_id"
)

// Dimensions lists every counted dimension.
func Dimensions() []Dimension { return []Dimension{ByUser, ByCompany, ByAPIKey} }

// ParseDimension accepts user_id, company_id or api_key_id (and the short
// forms user, company, api_key).
func ParseDimension(s string) (Dimension, error) {
	switch s {
	case "user_id", "user", "":
		return ByUser, nil
	case "company_id", "company":
		return ByCompany, nil
	case "api_key_id", "api_key", "key":
		return ByAPIKey, nil
	}
	return "", fieldErr("group", fmt.Sprintf("%q is not one of user_id, company_id, api_key_id", s))
}

// Counts is the usage of one customer in one period. Every figure is
// weighted: an event that stands for N sampled calls counts N times.
type Counts struct {
	// Calls is the sum of the events' weights.
	Calls int64 `json:"calls"`
	// Errors is the sum of the weights of events with status >= 400 or no
	// response (status 0).
	Errors int64 `json:"errors"`
	// Bytes is the sum of weight * (request body size + response body
	// size), unknown sizes counting 0.
	Bytes int64 `json:"bytes"`
}

func (c *Counts) add(o Counts) {
	c.Calls += o.Calls
	c.Errors += o.Errors
	c.Bytes += o.Bytes
}

// CounterKey names one counter.
type CounterKey struct {
	Org, Env, Period string
	Dim              Dimension
	ID               string // "" counts the calls no one was identified for
}

// UsageRow is one customer's usage.
type UsageRow struct {
	ID string `json:"id"`
	Counts
}

// Counters keeps usage counters. Add must be safe for concurrent use.
type Counters interface {
	// AddUsage adds deltas to the counters.
	AddUsage(ctx context.Context, deltas map[CounterKey]Counts) error
	// Usage returns every counter of one org, env, period and dimension.
	Usage(ctx context.Context, org, env, period string, dim Dimension) ([]UsageRow, error)
	// Counter returns one counter (zero when it was never incremented).
	Counter(ctx context.Context, k CounterKey) (Counts, error)
}

// Meter counts newly stored events into Counters by billing period. It is
// an apimeter.Sink: the store hands it only events it had not stored
// before, so replays and retries are not counted twice.
type Meter struct {
	Counters Counters
	Periods  Periods
}

// Deltas folds events into counter increments, adding them to into.
func (m *Meter) Deltas(events []*apimeter.Event, into map[CounterKey]Counts) {
	for _, s := range m.fold(events) {
		s.addTo(into)
	}
}

// scopeCounts are the increments of one (org, env, period), by dimension
// (user, company, API key) and id.
type scopeCounts struct {
	org, env, period string
	dims             [3]map[string]Counts
}

func (s *scopeCounts) addTo(into map[CounterKey]Counts) {
	for d, dim := range [3]Dimension{ByUser, ByCompany, ByAPIKey} {
		for id, c := range s.dims[d] {
			k := CounterKey{Org: s.org, Env: s.env, Period: s.period, Dim: dim, ID: id}
			v := into[k]
			v.add(c)
			into[k] = v
		}
	}
}

func (s *scopeCounts) size() int { return len(s.dims[0]) + len(s.dims[1]) + len(s.dims[2]) }

// fold aggregates per (org, env, period) scope, so the per-event work is
// three map updates keyed by one short string each.
func (m *Meter) fold(events []*apimeter.Event) []*scopeCounts {
	var scopes []*scopeCounts
	var cur *scopeCounts
	var last Period
	hint := min(len(events), 64)
	for _, e := range events {
		if !last.Contains(e.RequestTime) {
			last = m.Periods.Of(e.RequestTime)
			cur = nil
		}
		if cur == nil || cur.org != e.Org || cur.env != e.Env || cur.period != last.Label {
			cur = nil
			for _, s := range scopes {
				if s.org == e.Org && s.env == e.Env && s.period == last.Label {
					cur = s
					break
				}
			}
			if cur == nil {
				cur = &scopeCounts{org: e.Org, env: e.Env, period: last.Label}
				for d := range cur.dims {
					cur.dims[d] = make(map[string]Counts, hint)
				}
				scopes = append(scopes, cur)
			}
		}
		c := EventCounts(e)
		for d, id := range [3]string{e.UserID, e.CompanyID, e.APIKeyID} {
			v := cur.dims[d][id]
			v.add(c)
			cur.dims[d][id] = v
		}
	}
	return scopes
}

// EventCounts is what one event adds to its counters.
func EventCounts(e *apimeter.Event) Counts {
	w := e.Weight
	if w < 1 {
		w = 1
	}
	c := Counts{Calls: w}
	if e.IsError() {
		c.Errors = w
	}
	if e.RequestSize > 0 {
		c.Bytes += e.RequestSize
	}
	if e.ResponseSize > 0 {
		c.Bytes += e.ResponseSize
	}
	c.Bytes *= w
	return c
}

// Stored implements apimeter.Sink.
func (m *Meter) Stored(ctx context.Context, events []*apimeter.Event) error {
	if len(events) == 0 {
		return nil
	}
	scopes := m.fold(events)
	n := 0
	for _, sc := range scopes {
		n += sc.size()
	}
	deltas := make(map[CounterKey]Counts, n)
	for _, sc := range scopes {
		sc.addTo(deltas)
	}
	if err := m.Counters.AddUsage(ctx, deltas); err != nil {
		return fmt.Errorf("usage counters: %w", err)
	}
	return nil
}

// Report is the usage of one org and env in one period.
type Report struct {
	Org    string     `json:"org"`
	Env    string     `json:"env"`
	Period string     `json:"period"`
	Start  time.Time  `json:"start"`
	End    time.Time  `json:"end"`
	Group  Dimension  `json:"group"`
	Total  Counts     `json:"total"`
	Rows   []UsageRow `json:"rows"`
}

// Report returns usage for the period named label (see Periods.Parse),
// customers with the most calls first.
func (m *Meter) Report(ctx context.Context, org, env, label string, dim Dimension, now time.Time) (Report, error) {
	p, err := m.Periods.Parse(label, now)
	if err != nil {
		return Report{}, &FieldError{Field: "period", Msg: err.Error()}
	}
	rows, err := m.Counters.Usage(ctx, org, env, p.Label, dim)
	if err != nil {
		return Report{}, err
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Calls != rows[j].Calls {
			return rows[i].Calls > rows[j].Calls
		}
		return rows[i].ID < rows[j].ID
	})
	r := Report{Org: org, Env: env, Period: p.Label, Start: p.Start, End: p.End, Group: dim, Rows: rows}
	if r.Rows == nil {
		r.Rows = []UsageRow{}
	}
	for _, row := range rows {
		r.Total.add(row.Counts)
	}
	return r, nil
}

// Usage returns one customer's usage in the period t falls in (what a
// gateway's quota reads).
func (m *Meter) Usage(ctx context.Context, org, env string, dim Dimension, id string, t time.Time) (Counts, error) {
	return m.Counters.Counter(ctx, CounterKey{Org: org, Env: env, Period: m.Periods.Of(t).Label, Dim: dim, ID: id})
}
