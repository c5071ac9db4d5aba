package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/stats"
)

// QuotaLimit is a gateway quota as quota rules read it.
type QuotaLimit struct {
	By  string // user, company or api_key
	Per string // minute, hour, day or billing_period
	// Limit is the calls allowed per window; Overrides give some
	// customers their own.
	Limit     int64
	Overrides map[string]int64
	// APIs restricts the quota to these API names (empty: all).
	APIs []string
}

// QuotaLimits finds gateway quotas by name.
type QuotaLimits interface {
	QuotaLimit(name string) (QuotaLimit, bool)
}

// MeterSource answers a meter's value per customer (per "" for one total
// under the key "") over [from, to): the seam where meters plug in.
type MeterSource interface {
	MeterValues(ctx context.Context, org, env, meter, per string, from, to time.Time) (map[string]float64, error)
}

// Config configures an Evaluator.
type Config struct {
	Store Store
	// DB and Dialect run the Metrics API's query plans: the event store's
	// database and its stats dialect.
	DB      stats.Queryer
	Dialect stats.Dialect
	// Notifier sends the notifications; required.
	Notifier *Notifier
	// Leaser decides which process evaluates each rule; nil means this
	// process evaluates every rule (LocalLeaser).
	Leaser Leaser
	// Interval is the time between evaluations (default 10 s).
	Interval time.Duration
	// Parallel bounds the rules evaluated at once (default 2).
	Parallel int
	// MaxInstances bounds the customers a per-customer rule reads a tick
	// (default MaxInstances): with more, those furthest past the
	// threshold.
	MaxInstances int
	// Dashboard is the base URL of the dashboard in notifications, e.g.
	// https://apimeter.example.com.
	Dashboard string
	// Periods are the billing periods of quota rules.
	Periods identity.Periods
	Quotas  QuotaLimits
	Meters  MeterSource
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock of evaluations; nil means time.Now.
	Now func() time.Time
}

// Evaluator evaluates the rules of the config file and of the store every
// Interval, keeps each instance's state, stores its changes and hands the
// notifications to the Notifier.
type Evaluator struct {
	cfg Config

	mu        sync.Mutex
	fileRules []Rule
	apiRules  []Rule
	rules     map[string]*ruleState // by key()
	loadedAPI bool
}

type ruleState struct {
	c    *compiled
	err  error // why the rule cannot be evaluated
	held bool
	// instances are the customers not OK, by customer ("" for a rule
	// without per).
	instances map[string]*Instance
	lastEval  time.Time
	lastTook  time.Duration
	lastErr   error
}

// Instance is the state of one rule for one customer.
type Instance struct {
	Customer  string    `json:"customer"`
	State     State     `json:"state"`
	Since     time.Time `json:"since"`
	Value     *float64  `json:"value"`
	Volume    float64   `json:"volume"`
	Threshold float64   `json:"threshold"`
}

func ruleKey(org, env, id string) string { return org + "/" + env + "/" + id }

// New returns an Evaluator; Run (or Tick) evaluates.
func New(cfg Config) (*Evaluator, error) {
	if cfg.Store == nil || cfg.DB == nil || cfg.Notifier == nil {
		return nil, errors.New("alerts: Store, DB and Notifier are required")
	}
	if cfg.Dialect == nil {
		cfg.Dialect = stats.DuckDB{}
	}
	if cfg.Leaser == nil {
		cfg.Leaser = &LocalLeaser{}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 2
	}
	if cfg.MaxInstances <= 0 || cfg.MaxInstances > MaxInstances {
		cfg.MaxInstances = MaxInstances
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Evaluator{cfg: cfg, rules: map[string]*ruleState{}}, nil
}

// SetFileRules replaces the rules of the config file (at start and on
// SIGHUP). The rules must have passed Check.
func (e *Evaluator) SetFileRules(rs []Rule) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fileRules = append([]Rule(nil), rs...)
	for i := range e.fileRules {
		e.fileRules[i].Source = "file"
	}
	e.rebuild()
}

// Refresh reads the rules made over the API from the store again (every
// tick: other processes on a shared store change them too).
func (e *Evaluator) Refresh(ctx context.Context) error {
	rs, err := e.cfg.Store.Rules(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apiRules, e.loadedAPI = rs, true
	e.rebuild()
	return nil
}

// rebuild compiles the current rules, keeping the state of rules that
// remain. A file rule wins over an API rule of the same id.
func (e *Evaluator) rebuild() {
	next := map[string]*ruleState{}
	add := func(r Rule) {
		k := ruleKey(r.Org, r.Env, r.ID)
		if _, dup := next[k]; dup {
			return
		}
		rs := e.rules[k]
		if rs == nil {
			rs = &ruleState{instances: map[string]*Instance{}}
		}
		rs.c, rs.err = e.compile(r)
		if rs.c == nil {
			rs.c = &compiled{Rule: r}
		}
		next[k] = rs
	}
	for _, r := range e.fileRules {
		add(r)
	}
	for _, r := range e.apiRules {
		add(r)
	}
	e.rules = next
}

// compile compiles r with what the evaluator knows beyond the rule: the
// gateway quota it names, whether meters exist.
func (e *Evaluator) compile(r Rule) (*compiled, error) {
	extra := ""
	if r.Kind == KindQuota && r.Quota != "" {
		q, ok := e.quota(r.Quota)
		if !ok {
			return nil, fieldErr("quota", "no gateway quota named %q on this server", r.Quota)
		}
		if q.By != r.Per {
			return nil, fieldErr("per", "gateway quota %q counts per %s, not per %s", r.Quota, q.By, r.Per)
		}
		if len(q.APIs) > 0 {
			var vs []string
			for _, a := range q.APIs {
				vs = append(vs, "'"+strings.ReplaceAll(a, "'", "''")+"'")
			}
			extra = "apiproxy in (" + strings.Join(vs, ", ") + ")"
		}
	}
	c, err := r.compileWith(extra)
	if err == nil && c.meter && e.cfg.Meters == nil {
		return c, fieldErr("meter", "this server has no meters; use metric")
	}
	return c, err
}

func (e *Evaluator) quota(name string) (QuotaLimit, bool) {
	if e.cfg.Quotas == nil {
		return QuotaLimit{}, false
	}
	return e.cfg.Quotas.QuotaLimit(name)
}

// CheckRule reports what is wrong with r on this server (a *FieldError),
// as the API answers it.
func (e *Evaluator) CheckRule(r *Rule) error {
	if err := r.Check(); err != nil {
		return err
	}
	_, err := e.compile(*r)
	return err
}

// Run evaluates every Interval until ctx ends, then releases its leases.
func (e *Evaluator) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("alerts: evaluation", "err", err)
		}
		select {
		case <-ctx.Done():
			e.release()
			return
		case <-t.C:
		}
	}
}

func (e *Evaluator) release() {
	e.mu.Lock()
	var keys []string
	for k, rs := range e.rules {
		if rs.held {
			keys = append(keys, k)
		}
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.cfg.Leaser.Release(ctx, keys); err != nil {
		e.cfg.Logger.Warn("alerts: release leases", "err", err)
	}
}

// Tick evaluates once, at the clock's now: the rules this process holds
// the lease of, one query per group of rules that read the same rows (at
// most one per rule).
func (e *Evaluator) Tick(ctx context.Context) error {
	start := time.Now()
	now := e.cfg.Now().UTC()
	var errs []error
	if err := e.Refresh(ctx); err != nil {
		errs = append(errs, err) // evaluate the rules known
	}
	e.mu.Lock()
	keys := make([]string, 0, len(e.rules))
	for k, rs := range e.rules {
		if rs.err == nil && !rs.c.Disabled {
			keys = append(keys, k)
		} else {
			rs.held, rs.instances = false, map[string]*Instance{}
		}
	}
	sort.Strings(keys)
	all := make([]*member, len(keys))
	for i, k := range keys {
		rs := e.rules[k]
		all[i] = &member{key: k, rs: rs, c: rs.c, load: !rs.held}
	}
	e.mu.Unlock()

	ttl := 3 * e.cfg.Interval
	if ttl < 5*time.Second {
		ttl = 5 * time.Second
	}
	held, fresh, err := e.cfg.Leaser.Hold(ctx, keys, ttl)
	if err != nil {
		// Without leases no process may evaluate: better none than two.
		return errors.Join(append(errs, err)...)
	}
	var ms []*member
	for i, m := range all {
		if !held[i] {
			e.mu.Lock()
			m.rs.held, m.rs.instances = false, map[string]*Instance{}
			e.mu.Unlock()
			continue
		}
		m.load = m.load || fresh[i]
		ms = append(ms, m)
	}
	groups, err := groupRules(ms)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	sem := make(chan struct{}, e.cfg.Parallel)
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, g := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := e.evaluate(ctx, g, now); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	if m := e.cfg.Metrics; m != nil {
		m.tick.Observe(time.Since(start).Seconds())
		var pending, firing int
		e.mu.Lock()
		for _, rs := range e.rules {
			for _, in := range rs.instances {
				if in.State == Firing {
					firing++
				} else {
					pending++
				}
			}
		}
		e.mu.Unlock()
		m.instances.WithLabelValues(string(Pending)).Set(float64(pending))
		m.instances.WithLabelValues(string(Firing)).Set(float64(firing))
	}
	return errors.Join(errs...)
}

// evaluate runs a group's query and applies each rule's state changes.
// A rule whose lease was just taken has its stored state read first, and
// its notifications not yet delivered are sent.
func (e *Evaluator) evaluate(ctx context.Context, g *group, now time.Time) (err error) {
	start := time.Now()
	defer func() {
		took := time.Since(start)
		e.mu.Lock()
		for _, m := range g.members {
			m.rs.lastEval, m.rs.lastTook, m.rs.lastErr = now, took, err
		}
		e.mu.Unlock()
		if m := e.cfg.Metrics; m != nil {
			m.ruleEval.WithLabelValues(g.members[0].c.Kind).Observe(took.Seconds())
			res := "ok"
			if err != nil {
				res = "error"
			}
			m.evaluations.WithLabelValues(res).Add(float64(len(g.members)))
		}
	}()
	for _, m := range g.members {
		if m.load {
			if err := e.load(ctx, m.rs, m.c, now); err != nil {
				return fmt.Errorf("rule %s: %w", m.key, err)
			}
		}
	}
	first := g.members[0].c
	from, to := e.window(first, now)
	var res *stats.Result
	if g.plan != nil {
		p := *g.plan
		p.From, p.To = from.UTC(), to.UTC()
		// Every customer is read, in no order, unless there are more than
		// the cap: then each rule's own query runs, ranked, for the
		// customers furthest past its threshold. Ranking thousands of
		// customers costs more than the scan of a short window.
		ranked := len(p.Dimensions) == 0
		if !ranked {
			p.Unordered, p.Limit = true, e.cfg.MaxInstances+1
		}
		if res, err = stats.Run(ctx, e.cfg.DB, e.cfg.Dialect, &p); err != nil {
			return fmt.Errorf("rule %s: %w", g.members[0].key, err)
		}
		if !ranked && len(res.Rows) > e.cfg.MaxInstances {
			e.cfg.Logger.Warn("alerts: more customers than a rule reads; those furthest past the threshold are kept", "rule", g.members[0].key, "max", e.cfg.MaxInstances)
			for _, m := range g.members {
				own := *m.c.plan
				own.From, own.To, own.Limit = p.From, p.To, e.cfg.MaxInstances
				if m.res, err = stats.Run(ctx, e.cfg.DB, e.cfg.Dialect, &own); err != nil {
					return fmt.Errorf("rule %s: %w", m.key, err)
				}
				m.value, m.volume = m.c.value, m.c.volume
			}
		}
	}
	var trans []Transition
	nexts := make([]map[string]*Instance, len(g.members))
	for i, m := range g.members {
		var vals map[string]float64
		if m.c.meter {
			if vals, err = e.cfg.Meters.MeterValues(ctx, m.c.Org, m.c.Env, m.c.Meter, m.c.Per, from, to); err != nil {
				return fmt.Errorf("rule %s: %w", m.key, err)
			}
		}
		r := res
		if m.res != nil {
			r = m.res
		}
		var ts []Transition
		ts, nexts[i] = e.advance(m, r, vals, now)
		trans = append(trans, ts...)
	}
	// The changes are stored before anyone is told (and before memory
	// changes): a failed write leaves the state as it was, to be tried
	// again next tick, and a restart after it knows what was announced.
	if err := e.cfg.Store.AddTransitions(ctx, trans); err != nil {
		return fmt.Errorf("rule %s: %w", g.members[0].key, err)
	}
	e.mu.Lock()
	for i, m := range g.members {
		m.rs.instances, m.rs.held = nexts[i], true
	}
	e.mu.Unlock()
	byRule := map[string]*compiled{}
	for _, m := range g.members {
		byRule[m.c.ID] = m.c
	}
	for _, t := range trans {
		if t.Event != "" {
			c := byRule[t.RuleID]
			e.cfg.Notifier.Send(newNotification(&c.Rule, t, e.cfg.Dashboard), c.Channels, nil)
		}
	}
	return nil
}

// advance steps a rule's instances with its figures: the rows of res
// (or a meter's vals). A customer that was pending or firing and has no
// row gets the figures of no calls. A customer that is OK and stays OK,
// most of them, costs no allocation.
func (e *Evaluator) advance(m *member, res *stats.Result, vals map[string]float64, now time.Time) ([]Transition, map[string]*Instance) {
	c := m.c
	e.mu.Lock()
	current := make(map[string]*Instance, len(m.rs.instances))
	for k, v := range m.rs.instances {
		current[k] = v
	}
	e.mu.Unlock()
	var trans []Transition
	next := make(map[string]*Instance, len(current))
	seen := make(map[string]bool, len(current))
	sawAll := false // a rule without per had its one row
	visit := func(cust string, v float64, ok bool, volume float64) {
		in := current[cust]
		th := e.threshold(c, cust)
		if in == nil && !c.holdsV(v, ok, volume, th) {
			return
		}
		seen[cust] = true
		s := Sample{Customer: cust, Volume: volume, Threshold: th}
		if ok {
			x := v
			s.Value = &x
		}
		t, after := step(c, in, s, now)
		if t != nil {
			trans = append(trans, *t)
		}
		if after != nil {
			next[cust] = after
		}
	}
	switch {
	case c.meter:
		for cust, v := range vals {
			sawAll = sawAll || cust == ""
			visit(cust, v, true, 0)
		}
	case res != nil:
		for _, row := range res.Rows {
			cust := ""
			if len(row.Dims) > 0 {
				if cust = row.Dims[0]; cust == "" {
					continue // calls of no known customer
				}
			} else {
				sawAll = true
			}
			volume := 0.0
			if p := row.Values[m.volume]; p != nil {
				volume = *p
			}
			v, ok := 0.0, false
			if p := row.Values[m.value]; p != nil {
				v, ok = *p, true
			}
			switch {
			case c.ratio:
				if ok && volume > 0 {
					v = v / volume
				} else {
					ok = false
				}
			case !ok && c.additive:
				ok = true
			}
			visit(cust, v, ok, volume)
		}
	}
	if c.Per == "" && !sawAll && current[""] == nil {
		// No row at all: the figures of no calls.
		visit("", 0, c.additive || c.meter, 0)
	}
	for cust := range current {
		if !seen[cust] {
			visit(cust, 0, c.additive || c.meter, 0)
		}
	}
	return trans, next
}

// step is an instance's state machine: OK -> pending when the condition
// holds, pending -> firing once it has held for For (at once when For is
// 0), pending -> OK when it stops holding, firing -> OK (resolved) when it
// clears. It returns the transition, if any, and the instance after (nil
// when OK).
func step(c *compiled, in *Instance, s Sample, now time.Time) (*Transition, *Instance) {
	holds := c.holds(s)
	cur := OK
	if in != nil {
		cur = in.State
	}
	after := func(st State, since time.Time) *Instance {
		return &Instance{Customer: s.Customer, State: st, Since: since, Value: s.Value, Volume: s.Volume, Threshold: s.Threshold}
	}
	tr := func(st State, since time.Time, event string) *Transition {
		return &Transition{ID: newID(), Org: c.Org, Env: c.Env, RuleID: c.ID, Customer: s.Customer, State: st, At: now, Since: since,
			Value: s.Value, Volume: s.Volume, Threshold: s.Threshold, Event: event}
	}
	switch cur {
	case OK:
		if !holds {
			return nil, nil
		}
		if c.For.D() <= 0 {
			return tr(Firing, now, EventFiring), after(Firing, now)
		}
		return tr(Pending, now, ""), after(Pending, now)
	case Pending:
		if !holds {
			return tr(OK, now, ""), nil
		}
		if now.Sub(in.Since) >= c.For.D() {
			return tr(Firing, in.Since, EventFiring), after(Firing, in.Since)
		}
		return nil, after(Pending, in.Since)
	default: // firing
		if !holds {
			return tr(OK, now, EventResolved), nil
		}
		return nil, after(Firing, in.Since)
	}
}

// newID is a notification id: time-ordered (UUID v7), so ids sort as
// their transitions do.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// unsentHorizon bounds how far back a process looks for notifications
// that were never delivered.
const unsentHorizon = 24 * time.Hour

// load reads a rule's instances from the store and sends what was not
// delivered.
func (e *Evaluator) load(ctx context.Context, rs *ruleState, c *compiled, now time.Time) error {
	latest, err := e.cfg.Store.Latest(ctx, c.Org, c.Env, c.ID)
	if err != nil {
		return err
	}
	ins := map[string]*Instance{}
	for _, t := range latest {
		ins[t.Customer] = &Instance{Customer: t.Customer, State: t.State, Since: t.Since, Value: t.Value, Volume: t.Volume, Threshold: t.Threshold}
	}
	unsent, done, err := e.cfg.Store.Unsent(ctx, c.Org, c.Env, c.ID, now.Add(-unsentHorizon))
	if err != nil {
		return err
	}
	e.mu.Lock()
	rs.instances = ins
	e.mu.Unlock()
	for _, t := range unsent {
		e.cfg.Notifier.Send(newNotification(&c.Rule, t, e.cfg.Dashboard), c.Channels, done[t.ID])
	}
	return nil
}

// window is the time range a rule reads at now.
func (e *Evaluator) window(c *compiled, now time.Time) (time.Time, time.Time) {
	if c.Kind != KindQuota {
		return now.Add(-c.Window.D()), now
	}
	per := "billing_period"
	if c.Quota != "" {
		q, _ := e.quota(c.Quota)
		per = q.Per
	}
	switch per {
	case "minute":
		return now.Truncate(time.Minute), now
	case "hour":
		return now.Truncate(time.Hour), now
	case "day":
		loc := e.cfg.Periods.Location
		if loc == nil {
			loc = time.UTC
		}
		t := now.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc), now
	}
	return e.cfg.Periods.Of(now).Start, now
}

// threshold is the value a customer's figure is compared with.
func (e *Evaluator) threshold(c *compiled, customer string) float64 {
	if c.Kind != KindQuota {
		return c.Threshold
	}
	limit := c.Limit
	if c.Quota != "" {
		q, _ := e.quota(c.Quota)
		limit = q.Limit
		if n, ok := q.Overrides[customer]; ok {
			limit = n
		}
	}
	return float64(limit) * c.Percent / 100
}

// RuleStatus is a rule with what this process knows of it.
type RuleStatus struct {
	Rule
	// Error says why the rule is not evaluated (e.g. an unknown quota).
	Error string `json:"error,omitempty"`
	// Evaluated is true when this process evaluates the rule (holds its
	// lease); then LastEval, LastTookMS and LastError describe the latest
	// evaluation and Instances its pending and firing customers.
	Evaluated  bool       `json:"evaluated"`
	LastEval   time.Time  `json:"last_evaluation,omitzero"`
	LastTookMS float64    `json:"last_took_ms,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	Instances  []Instance `json:"instances,omitempty"`
}

// Rules lists the rules of org and env (env "" for all) with their status.
func (e *Evaluator) Rules(org, env string) []RuleStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []RuleStatus
	for _, rs := range e.rules {
		r := rs.c.Rule
		if r.Org != org || (env != "" && r.Env != env) {
			continue
		}
		st := RuleStatus{Rule: r, Evaluated: rs.held, LastEval: rs.lastEval, LastTookMS: float64(rs.lastTook.Microseconds()) / 1000}
		if rs.err != nil {
			st.Error = rs.err.Error()
		}
		if rs.lastErr != nil {
			st.LastError = rs.lastErr.Error()
		}
		for _, in := range rs.instances {
			st.Instances = append(st.Instances, *in)
		}
		sort.Slice(st.Instances, func(i, j int) bool { return st.Instances[i].Customer < st.Instances[j].Customer })
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Env != out[j].Env {
			return out[i].Env < out[j].Env
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Rule returns one rule of org/env.
func (e *Evaluator) Rule(org, env, id string) (Rule, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs, ok := e.rules[ruleKey(org, env, id)]
	if !ok {
		return Rule{}, false
	}
	return rs.c.Rule, true
}
