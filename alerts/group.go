package alerts

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/apimeter/apimeter/stats"
)

// A group is rules that read the same rows: same org, env, customer
// split, filter and window. They share one query, selecting the metrics
// of all of them, so a tick costs one query per group (at most one per
// rule). Quota and meter rules are groups of their own.
type group struct {
	plan    *stats.Plan // nil for a meter rule
	members []*member
}

type member struct {
	key string
	rs  *ruleState
	c   *compiled
	// load says the lease was just taken: read the stored state first.
	load bool
	// value and volume index the group plan's selections (or res's).
	value, volume int
	// res is the rule's own answer when the group's was cut.
	res *stats.Result
}

// groupKey is what rules must share to share a query; "" for a rule that
// queries alone.
func groupKey(c *compiled) string {
	if c.plan == nil || c.Kind == KindQuota {
		return ""
	}
	return strings.Join([]string{c.Org, c.Env, c.dims, c.Window.D().String(), c.filter}, "\x00")
}

// maxGroupSelect is the most metrics one query selects (the Metrics API's
// limit).
const maxGroupSelect = 20

// groupRules puts members into groups; ms are in a stable order.
func groupRules(ms []*member) ([]*group, error) {
	var out []*group
	open := map[string]*group{}
	sels := map[*group][]string{}
	for _, m := range ms {
		k := groupKey(m.c)
		names := selNames(m.c.plan)
		if k == "" {
			g := &group{plan: m.c.plan, members: []*member{m}}
			m.value, m.volume = m.c.value, m.c.volume
			out = append(out, g)
			continue
		}
		g := open[k]
		if g != nil {
			// Full: the next rules of this key start another group.
			n := len(sels[g])
			for _, s := range names {
				if indexOf(sels[g], s) < 0 {
					n++
				}
			}
			if n > maxGroupSelect {
				g = nil
			}
		}
		if g == nil {
			g = &group{}
			open[k] = g
			out = append(out, g)
		}
		for _, s := range names {
			if indexOf(sels[g], s) < 0 {
				sels[g] = append(sels[g], s)
			}
		}
		g.members = append(g.members, m)
	}
	for _, g := range out {
		if g.plan != nil || len(g.members) == 0 || g.members[0].c.meter {
			continue
		}
		first := g.members[0].c
		if len(g.members) == 1 {
			g.plan = first.plan
			g.members[0].value, g.members[0].volume = first.value, first.volume
			continue
		}
		names := sels[g]
		q := url.Values{}
		q.Set("select", strings.Join(names, ","))
		q.Set("timeRange", "01/01/2000 00:00~01/01/2000 00:01")
		if first.filter != "" {
			q.Set("filter", first.filter)
		}
		if first.dims != "" {
			q.Set("sortby", names[0])
			if first.Op == Below && first.Kind == KindThreshold {
				q.Set("sort", "ASC")
			}
			q.Set("limit", strconv.Itoa(MaxInstances))
		}
		p, err := stats.Parse(first.Org, first.Env, first.dims, q)
		if err != nil {
			return nil, fmt.Errorf("alerts: group plan: %w", err)
		}
		g.plan = p
		for _, m := range g.members {
			own := selNames(m.c.plan)
			m.value = indexOf(names, own[m.c.value])
			m.volume = indexOf(names, own[m.c.volume])
		}
	}
	return out, nil
}

func selNames(p *stats.Plan) []string {
	if p == nil {
		return nil
	}
	out := make([]string, len(p.Select))
	for i, s := range p.Select {
		out[i] = s.Name
	}
	return out
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}
