package gateway

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/apimeter/apimeter/identity"
)

// Headroom is one quota as one subject stands in its current window.
type Headroom struct {
	Name string `json:"name"`
	By   string `json:"by"`
	Per  string `json:"per"`
	// APIs are the upstreams the quota counts; empty: all of the org's.
	APIs      []string  `json:"apis"`
	Limit     int64     `json:"limit"`
	Used      int64     `json:"used"`
	Remaining int64     `json:"remaining"`
	Resets    time.Time `json:"resets"`
}

// Peeker reads quota counters without counting anything: the counts of
// keys (Window.Key), 0 for a counter never taken or of a closed window.
// MemoryCounter and RedisCounter are Peekers.
type Peeker interface {
	Peek(ctx context.Context, now time.Time, keys []string) ([]int64, error)
}

// Peek implements Peeker.
func (m *MemoryCounter) Peek(_ context.Context, now time.Time, keys []string) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, len(keys))
	for i, k := range keys {
		if s := m.slots[k]; s != nil && now.Before(s.end) {
			out[i] = s.n
		}
	}
	return out, nil
}

// Peek implements Peeker: one MGET.
func (r *RedisCounter) Peek(ctx context.Context, _ time.Time, keys []string) ([]int64, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + "quota:" + k
	}
	vals, err := r.c.MGet(ctx, full...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: quota: %w", err)
	}
	out := make([]int64, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return out, nil
}

// QuotaState reads the quota counters of gateways that run elsewhere
// (sharing a RedisCounter) with their configuration.
type QuotaState struct {
	upstreams []Upstream
	quotas    *quotas
}

// NewQuotaState returns the quota state of gateways configured by cfg
// whose counters are in counter (a Peeker).
func NewQuotaState(cfg Config, counter Counter) (*QuotaState, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if _, ok := counter.(Peeker); !ok {
		return nil, fmt.Errorf("gateway: the quota counter %T cannot be read without counting", counter)
	}
	st := &QuotaState{upstreams: cfg.Upstreams}
	if len(cfg.Quotas) > 0 {
		st.quotas = &quotas{rules: cfg.Quotas, counter: counter, periods: identity.Periods{AnchorDay: cfg.BillingDay}}
		if cfg.BillingTZ != "" {
			st.quotas.periods.Location, _ = time.LoadLocation(cfg.BillingTZ)
		}
	}
	return st, nil
}

// Headroom returns the quotas of g's configuration, read from its counter
// (see QuotaState.Headroom).
func (g *Gateway) Headroom(ctx context.Context, org, env, by, id string, now time.Time) ([]Headroom, error) {
	return (&QuotaState{upstreams: g.cfg.Upstreams, quotas: g.quotas}).Headroom(ctx, org, env, by, id, now)
}

// Headroom returns the quotas that count calls of subject id (by is
// ByUser, ByCompany or ByAPIKey) to the upstreams of org and env, each
// with what its current window has used: what a customer may still call
// before the gateway answers 429. The counters are read, never taken.
func (g *QuotaState) Headroom(ctx context.Context, org, env, by, id string, now time.Time) ([]Headroom, error) {
	out := []Headroom{}
	q := g.quotas
	if q == nil || id == "" {
		return out, nil
	}
	pk, ok := q.counter.(Peeker)
	if !ok {
		return nil, fmt.Errorf("gateway: the quota counter %T cannot be read without counting", q.counter)
	}
	var keys []string
	for i := range q.rules {
		r := &q.rules[i]
		if r.By != by || !g.countsIn(r, org, env) {
			continue
		}
		limit := r.Limit
		if n, ok := r.Overrides[id]; ok {
			limit = n
		}
		start, end := q.window(r.Per, now)
		keys = append(keys, r.Name+":"+id+":"+strconv.FormatInt(start.Unix(), 10))
		apis := r.APIs
		if apis == nil {
			apis = []string{}
		}
		out = append(out, Headroom{Name: r.Name, By: r.By, Per: r.Per, APIs: apis, Limit: limit, Resets: end.UTC()})
	}
	if len(keys) == 0 {
		return out, nil
	}
	used, err := pk.Peek(ctx, now, keys)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Used = used[i]
		out[i].Remaining = max(out[i].Limit-used[i], 0)
	}
	return out, nil
}

// countsIn reports whether quota r counts calls to an upstream of org and
// env.
func (g *QuotaState) countsIn(r *Quota, org, env string) bool {
	for _, u := range g.upstreams {
		if u.Org == org && u.Env == env && r.appliesTo(u.Name) {
			return true
		}
	}
	return false
}
