package meter

import (
	"context"
	"fmt"
	"time"
)

// AlertSource answers alert rules over meters (package alerts'
// MeterSource): a meter's value over a trailing window, in total or per
// subject, read with the same query as GET /api/v1/meters/{slug}/query.
type AlertSource struct {
	Store   Store
	Dialect Dialect
}

// MeterValues is the value of the meter slug of (org, env) over
// [from, to): under the key "" when per is empty, else per subject
// ("subject"). A subject with no event in the window has no entry.
func (s AlertSource) MeterValues(ctx context.Context, org, env, slug, per string, from, to time.Time) (map[string]float64, error) {
	ms, err := s.Store.Meters(ctx, org, env)
	if err != nil {
		return nil, err
	}
	var m *Meter
	for i := range ms {
		if ms[i].Slug == slug {
			m = &ms[i]
			break
		}
	}
	if m == nil {
		return nil, fmt.Errorf("meter %q of %s/%s: %w", slug, org, env, ErrNotFound)
	}
	p := Params{From: from.UTC(), To: to.UTC(), TimeZone: time.UTC}
	if per != "" {
		p.GroupBy = []string{"subject"}
	}
	res, err := Query(ctx, s.Store.DB(), s.Dialect, m, p)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(res.Data))
	for _, r := range res.Data {
		k := ""
		if r.Subject != nil {
			k = *r.Subject
		}
		out[k] = r.Value
	}
	return out, nil
}
