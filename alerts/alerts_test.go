package alerts_test

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/internal/redistest"
	"github.com/apimeter/apimeter/stats"
)

// TestFiresWithinTwoIntervalsAndResolvesOnce: a rule whose condition
// starts to hold fires at the first tick after it has held for its For,
// no later than two intervals after that; it resolves within two
// intervals once the calls leave the window; the receiver gets exactly
// one firing and one resolved notification.
func TestFiresWithinTwoIntervalsAndResolvesOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		rule := alerts.Rule{ID: "errors", Org: "acme", Env: "prod", Name: "Orders failing", Metric: "sum(is_error)",
			Window: d("5m"), API: "orders", Threshold: 5, For: d("30s")}
		r := newRig(t, b, recv, t0, rule)
		r.tick(t, t0)
		holds := t0.Add(3 * time.Second)
		b.add(t, many(10, call{at: holds, status: 503})...)
		b.add(t, many(50, call{at: holds, status: 200})...) // successes do not count
		b.add(t, many(20, call{at: holds, api: "other", status: 500})...)

		var fired, resolved time.Time
		for at := t0.Add(r.interval); at.Before(holds.Add(10 * time.Minute)); at = at.Add(r.interval) {
			r.tick(t, at)
			evs := recv.events()
			if fired.IsZero() && len(evs) > 0 {
				fired = at
			}
			if resolved.IsZero() && len(evs) > 1 {
				resolved = at
			}
		}
		if fired.IsZero() {
			t.Fatalf("never fired; received %v", recv.events())
		}
		if fired.Before(holds.Add(30*time.Second)) || fired.After(holds.Add(30*time.Second+2*r.interval)) {
			t.Errorf("fired at +%s after the condition began to hold; want from +30s (for) to +%s", fired.Sub(holds), 30*time.Second+2*r.interval)
		}
		cleared := holds.Add(5*time.Minute + 10*time.Millisecond) // the last call leaves the window
		if resolved.IsZero() || resolved.Before(cleared) || resolved.After(cleared.Add(2*r.interval)) {
			t.Errorf("resolved at %v, the calls left the window at %v; want within two intervals", resolved, cleared)
		}
		if got := recv.events(); !equal(got, []string{"firing", "resolved"}) {
			t.Fatalf("notifications %v, want exactly [firing resolved]", got)
		}
		n := recv.notifications()
		f := n[0]
		if f.Rule.ID != "errors" || f.Rule.Name != "Orders failing" || f.Value == nil || *f.Value != 10 || f.Threshold != 5 || f.Volume != 60 {
			t.Errorf("firing notification %+v: want rule errors, value 10, threshold 5, volume 60", f)
		}
		if want := "https://apimeter.example.com/ui/?env=prod&org=acme#/alerts?rule=errors"; f.Dashboard != want {
			t.Errorf("dashboard link %q, want %q", f.Dashboard, want)
		}
		if n[1].Value == nil || *n[1].Value != 0 {
			t.Errorf("resolved notification value %v, want 0", n[1].Value)
		}
		if n[0].ID == n[1].ID {
			t.Errorf("firing and resolved share id %s", n[0].ID)
		}
		ds, err := r.store.RecentDeliveries(context.Background(), "acme", "prod", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 2 || ds[0].Outcome != alerts.Delivered || ds[1].Outcome != alerts.Delivered {
			t.Errorf("delivery log %+v, want two delivered", ds)
		}
	})
}

// TestPerCustomerFiresForExactlyThoseOver: one instance per company; only
// the companies whose error rate is over 5% with at least 50 calls fire,
// each once; the minimum volume keeps a company with a high rate on few
// calls quiet.
func TestPerCustomerFiresForExactlyThoseOver(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		rule := alerts.Rule{ID: "company-errors", Org: "acme", Env: "prod", Metric: alerts.ErrorRate, Per: alerts.PerCompany,
			Window: d("10m"), Threshold: 0.05, MinVolume: 50}
		r := newRig(t, b, recv, t0, rule)
		at := t0.Add(time.Second)
		add := func(company string, calls, errors int) {
			b.add(t, many(errors, call{at: at, company: company, status: 500})...)
			b.add(t, many(calls-errors, call{at: at, company: company, status: 200})...)
		}
		add("alpha", 100, 10)  // 10%: fires
		add("beta", 100, 2)    // 2%: quiet
		add("gamma", 20, 10)   // 50% on 20 calls: under the minimum volume
		add("delta", 60, 6)    // 10%: fires
		add("eps'ilon", 50, 3) // 6% on exactly 50: fires
		add("", 100, 100)      // calls of no company are no instance
		for i := 1; i <= 3; i++ {
			r.tick(t, t0.Add(time.Duration(i)*r.interval))
		}
		got := recv.events()
		sort.Strings(got)
		if want := []string{"firing alpha", "firing delta", "firing eps'ilon"}; !equal(got, want) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
		for _, n := range recv.notifications() {
			if n.Customer == "alpha" && (n.Value == nil || *n.Value != 0.1 || n.Volume != 100) {
				t.Errorf("alpha: value %v volume %v, want 0.1 on 100 calls", n.Value, n.Volume)
			}
			if !strings.Contains(n.Dashboard, "#/customer?kind=company&id=") {
				t.Errorf("dashboard link %q does not open the company", n.Dashboard)
			}
		}
		// Beta's errors pass 5%: beta alone fires.
		b.add(t, many(10, call{at: t0.Add(35 * time.Second), company: "beta", status: 500})...)
		r.tick(t, t0.Add(4*r.interval))
		if got := recv.events(); len(got) != 4 || got[3] != "firing beta" {
			t.Fatalf("after beta's errors: %v, want one more: firing beta", got)
		}
		cur, err := r.store.Current(context.Background(), "acme", "prod")
		if err != nil {
			t.Fatal(err)
		}
		var firing []string
		for _, c := range cur {
			firing = append(firing, c.Customer+":"+string(c.State))
		}
		sort.Strings(firing)
		if want := []string{"alpha:firing", "beta:firing", "delta:firing", "eps'ilon:firing"}; !equal(firing, want) {
			t.Errorf("stored state %v, want %v", firing, want)
		}
	})
}

// TestMinimumVolume: one failed call does not page anyone; enough calls
// with the same share do.
func TestMinimumVolume(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		r := newRig(t, b, recv, t0, alerts.Rule{ID: "rate", Org: "acme", Env: "prod", Metric: alerts.ErrorRate, Window: d("5m"), Threshold: 0.5, MinVolume: 10})
		b.add(t, call{at: t0.Add(time.Second), status: 500})
		r.tick(t, t0.Add(r.interval))
		r.tick(t, t0.Add(2*r.interval))
		if got := recv.events(); len(got) != 0 {
			t.Fatalf("one failed call (100%% of 1, minimum volume 10) notified %v", got)
		}
		b.add(t, many(9, call{at: t0.Add(25 * time.Second), status: 500})...)
		r.tick(t, t0.Add(3*r.interval))
		if got := recv.events(); !equal(got, []string{"firing"}) {
			t.Fatalf("ten failed calls: %v, want [firing]", got)
		}
	})
}

// TestAbsenceFiresWhenCallsStopAndResolvesWhenTheyResume.
func TestAbsenceFiresWhenCallsStopAndResolvesWhenTheyResume(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		r := newRig(t, b, recv, t0, alerts.Rule{ID: "silence", Org: "acme", Env: "prod", Kind: alerts.KindAbsence, API: "orders", Window: d("2m")})
		// Calls every 10 s for 3 minutes, ticks alongside: nothing fires.
		var last time.Time
		for at := t0; at.Before(t0.Add(3 * time.Minute)); at = at.Add(r.interval) {
			b.add(t, call{at: at})
			b.add(t, call{at: at, api: "other"})
			last = at
			r.tick(t, at.Add(time.Second))
		}
		if got := recv.events(); len(got) != 0 {
			t.Fatalf("while calls arrive: %v", got)
		}
		// Calls to orders stop (other APIs go on); the window empties at
		// last + 2m.
		var fired time.Time
		at := last.Add(r.interval)
		for ; at.Before(last.Add(4 * time.Minute)); at = at.Add(r.interval) {
			b.add(t, call{at: at.Add(-time.Second), api: "other"})
			r.tick(t, at)
			if fired.IsZero() && len(recv.events()) > 0 {
				fired = at
			}
		}
		if fired.IsZero() || fired.Before(last.Add(2*time.Minute)) || fired.After(last.Add(2*time.Minute+2*r.interval)) {
			t.Fatalf("absence fired at %v (last call %v): want within two intervals of the window emptying", fired, last)
		}
		b.add(t, call{at: at})
		r.tick(t, at.Add(time.Second))
		r.tick(t, at.Add(r.interval))
		if got := recv.events(); !equal(got, []string{"firing", "resolved"}) {
			t.Fatalf("notifications %v, want [firing resolved]", got)
		}
	})
}

// TestReceiverErrorsAreRetried: a receiver answering 500 twice gets the
// notification on the third attempt, once; the log shows each attempt.
func TestReceiverErrorsAreRetried(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		recv.fail = 2
		t0 := base()
		r := newRig(t, b, recv, t0, alerts.Rule{ID: "calls", Org: "acme", Env: "prod", Metric: "sum(message_count)", Window: d("5m"), Threshold: 2})
		b.add(t, many(3, call{at: t0})...)
		r.tick(t, t0.Add(time.Second))
		if got := recv.events(); !equal(got, []string{"firing"}) {
			t.Fatalf("notifications %v, want one firing after the retries", got)
		}
		if recv.hits != 3 {
			t.Errorf("receiver saw %d requests, want 3 (500, 500, then 204)", recv.hits)
		}
		ds, err := r.store.RecentDeliveries(context.Background(), "acme", "prod", 10)
		if err != nil {
			t.Fatal(err)
		}
		var log []string
		for i := len(ds) - 1; i >= 0; i-- {
			log = append(log, fmt.Sprintf("%d:%s:%d", ds[i].Attempt, ds[i].Outcome, ds[i].Status))
		}
		if want := []string{"1:retry:500", "2:retry:500", "3:delivered:204"}; !equal(log, want) {
			t.Errorf("delivery log %v, want %v", log, want)
		}
		// Every attempt carries the same notification id.
		r.tick(t, t0.Add(r.interval))
		if got := recv.events(); len(got) != 1 {
			t.Errorf("a firing rule notified again: %v", got)
		}
	})
}

// TestRestartKeepsState: a new evaluator on the same store (a restarted
// process) neither repeats a firing nor fires a resolved rule, and sends
// a notification the old one stored but never delivered.
func TestRestartKeepsState(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		rules := []alerts.Rule{
			{ID: "stays", Org: "acme", Env: "prod", Metric: "sum(message_count)", API: "steady", Window: d("30m"), Threshold: 2},
			{ID: "flash", Org: "acme", Env: "prod", Metric: "sum(message_count)", API: "flash", Window: d("1m"), Threshold: 2},
		}
		r := newRig(t, b, recv, t0, rules...)
		b.add(t, many(3, call{at: t0, api: "steady"})...)
		b.add(t, many(3, call{at: t0, api: "flash"})...)
		r.tick(t, t0.Add(time.Second))
		r.tick(t, t0.Add(2*time.Minute)) // flash resolves
		got := recv.events()
		sort.Strings(got)
		if !equal(got, []string{"firing", "firing", "resolved"}) {
			t.Fatalf("before restart: %v", got)
		}
		r.notifier.Close()

		r2 := newRig(t, b, recv, t0.Add(2*time.Minute+r.interval), rules...)
		for i := 1; i <= 3; i++ {
			r2.tick(t, t0.Add(2*time.Minute+time.Duration(i)*r.interval))
		}
		if got := recv.events(); len(got) != 3 {
			t.Fatalf("after restart: %v, want nothing new", got)
		}
		st := r2.eval.Rules("acme", "prod")
		for _, s := range st {
			if s.ID == "stays" && (len(s.Instances) != 1 || s.Instances[0].State != alerts.Firing) {
				t.Errorf("rule stays after restart: %+v, want firing", s.Instances)
			}
		}
	})
}

// TestOneEvaluatorPerRuleAcrossProcesses: two evaluators on one
// ClickHouse store with Redis leases; the rule fires once, and the
// second evaluator takes over (with the stored state) when the first
// stops.
func TestOneEvaluatorPerRuleAcrossProcesses(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		if b.engine != alerts.ClickHouse {
			t.Skip("the embedded store has one process")
		}
		rc := redistest.Start(t)
		recv := newReceiver(t)
		t0 := base()
		rule := alerts.Rule{ID: "calls", Org: "acme", Env: "prod", Metric: "sum(message_count)", Window: d("10m"), Threshold: 2}
		a := newRigWith(t, b, recv, t0, &alerts.RedisLeaser{Client: rc, Prefix: "t:", Owner: "a"}, rule)
		bb := newRigWith(t, b, recv, t0, &alerts.RedisLeaser{Client: rc, Prefix: "t:", Owner: "b"}, rule)
		b.add(t, many(3, call{at: t0})...)
		for i := 1; i <= 3; i++ {
			at := t0.Add(time.Duration(i) * a.interval)
			a.tick(t, at)
			bb.tick(t, at)
		}
		if got := recv.events(); !equal(got, []string{"firing"}) {
			t.Fatalf("two processes: %v, want one firing", got)
		}
		// a stops and gives its lease up; b takes the rule over, knows it
		// fires, and resolves it once when the calls leave the window.
		if err := (&alerts.RedisLeaser{Client: rc, Prefix: "t:", Owner: "a"}).Release(context.Background(), []string{"acme/prod/calls"}); err != nil {
			t.Fatal(err)
		}
		bb.tick(t, t0.Add(4*a.interval))
		if got := recv.events(); len(got) != 1 {
			t.Fatalf("after take-over: %v, want no repeat", got)
		}
		bb.tick(t, t0.Add(11*time.Minute))
		if got := recv.events(); !equal(got, []string{"firing", "resolved"}) {
			t.Fatalf("after the window: %v, want [firing resolved]", got)
		}
	})
}

type quotas map[string]alerts.QuotaLimit

func (q quotas) QuotaLimit(name string) (alerts.QuotaLimit, bool) { v, ok := q[name]; return v, ok }

// TestQuotaRules: a customer's calls this billing period against a share
// of a limit, the rule's own or a gateway quota's (with its overrides and
// APIs).
func TestQuotaRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		tick := base().Add(10 * time.Second)
		ps := identity.Periods{}
		at := tick.Add(-5 * time.Second)
		if start := ps.Of(tick).Start; at.Before(start) {
			at = start
		}
		gw := quotas{"monthly": {By: "user", Per: "billing_period", Limit: 100, Overrides: map[string]int64{"big": 1000}, APIs: []string{"orders"}}}
		r := newRigCfg(t, b, recv, tick, func(c *alerts.Config) { c.Quotas, c.Periods = gw, ps },
			alerts.Rule{ID: "own-limit", Org: "acme", Env: "prod", Kind: alerts.KindQuota, Per: alerts.PerUser, Limit: 50, Percent: 80},
			alerts.Rule{ID: "gateway", Org: "acme", Env: "prod", Kind: alerts.KindQuota, Per: alerts.PerUser, Quota: "monthly", Percent: 90},
		)
		b.add(t, many(95, call{at: at, user: "ann"})...)                // 95 of 100 (gateway), 95 of 50
		b.add(t, many(85, call{at: at, user: "bob"})...)                // 85: under 90% of 100, over 80% of 50
		b.add(t, many(30, call{at: at, user: "cy"})...)                 // 30: under both
		b.add(t, many(950, call{at: at, user: "big"})...)               // 95% of its override 1000, over 50
		b.add(t, many(200, call{at: at, user: "dee", api: "other"})...) // not the gateway quota's API
		r.tick(t, tick)
		got := map[string]bool{}
		for _, n := range recv.notifications() {
			got[n.Rule.ID+" "+n.Customer+" "+fmt.Sprint(n.Threshold)] = true
		}
		want := map[string]bool{
			"own-limit ann 40": true, "own-limit bob 40": true, "own-limit big 40": true, "own-limit dee 40": true,
			"gateway ann 90": true, "gateway big 900": true,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("notified %v, want %v", got, want)
		}
	})
}

// TestRulesSharingAQuery: rules over the same rows (window, split,
// filter) are answered by one query selecting all their metrics; each
// still fires for exactly its own customers. With more customers than a
// rule reads, those furthest past the threshold are kept.
func TestRulesSharingAQuery(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		recv := newReceiver(t)
		t0 := base()
		rules := []alerts.Rule{
			{ID: "rate", Org: "acme", Env: "prod", Metric: alerts.ErrorRate, Per: alerts.PerUser, Window: d("10m"), Threshold: 0.2},
			{ID: "slow", Org: "acme", Env: "prod", Metric: "p95(total_response_time)", Per: alerts.PerUser, Window: d("10m"), Threshold: 500},
			{ID: "busy", Org: "acme", Env: "prod", Metric: "sum(message_count)", Per: alerts.PerUser, Window: d("10m"), Threshold: 15},
			{ID: "quiet", Org: "acme", Env: "prod", Metric: "sum(message_count)", Per: alerts.PerUser, Window: d("10m"), Op: alerts.Below, Threshold: 5},
		}
		r := newRigCfg(t, b, recv, t0, func(c *alerts.Config) { c.MaxInstances = 3 }, rules...)
		at := t0.Add(time.Second)
		b.add(t, many(10, call{at: at, user: "ann", status: 500, latency: 100})...) // rate 1.0
		b.add(t, many(10, call{at: at, user: "bob", latency: 900})...)              // slow
		b.add(t, many(20, call{at: at, user: "cy", latency: 10})...)                // busy
		b.add(t, many(2, call{at: at, user: "dee", latency: 10})...)                // quiet
		r.tick(t, t0.Add(r.interval))
		got := recv.events()
		var by []string
		for _, n := range recv.notifications() {
			by = append(by, n.Rule.ID+" "+n.Customer)
		}
		sort.Strings(by)
		// Four users, three read: "quiet" (ascending) and the others
		// (descending) each keep those furthest past their threshold.
		want := []string{"busy cy", "quiet dee", "rate ann", "slow bob"}
		if !equal(by, want) {
			t.Fatalf("notified %v (%d), want %v", by, len(got), want)
		}
	})
}

// TestUnorderedPlanAnswersAsRanked: stats.Plan.Unordered, which the
// evaluator reads per-customer rules with, answers the same groups and
// values as the ranked Metrics API query.
func TestUnorderedPlanAnswersAsRanked(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		t0 := base()
		for i := range 40 {
			b.add(t, many(1+i%7, call{at: t0.Add(time.Duration(i) * time.Second), user: fmt.Sprintf("u%d", i%9), status: 200 + 300*(i%3/2), latency: float64(i * 13 % 700)})...)
		}
		q := url.Values{"select": {"p95(total_response_time),sum(is_error),sum(message_count),avg(total_response_time)"}, "timeRange": {"01/01/2000 00:00~01/01/2000 00:01"}}
		p, err := stats.Parse("acme", "prod", "user_id", q)
		if err != nil {
			t.Fatal(err)
		}
		p.From, p.To = t0, t0.Add(time.Minute)
		rows := func(unordered bool) []string {
			pp := *p
			pp.Unordered = unordered
			res, err := stats.Run(context.Background(), b.db, b.dialect, &pp)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range res.Rows {
				s := r.Dims[0]
				for _, v := range r.Values {
					s += fmt.Sprintf(" %.6g", *v)
				}
				out = append(out, s)
			}
			sort.Strings(out)
			return out
		}
		ranked, unordered := rows(false), rows(true)
		if len(ranked) != 9 || !equal(ranked, unordered) {
			t.Fatalf("unordered %v\nranked    %v", unordered, ranked)
		}
	})
}

// TestParseFileErrors: a config file's error names the rule and the field.
func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"rules:\n  - {id: a, org: o, env: e, metric: error_rate, window: 5m}\n  - {id: b, org: o, env: e, metric: p99(nope), window: 5m}\n", "rules[1] (b): metric: unknown metric"},
		{"rules:\n  - {id: a, org: o, env: e, kind: absence, window: 5m}\n  - {id: a, org: o, env: e, kind: absence, window: 9m}\n", `id "a" given twice`},
		{"rules:\n  - {id: a, org: o, env: e, kind: absence, window: 5m, colour: red}\n", "colour"},
		{"rules:\n  - {id: a, org: o, env: e, metric: error_rate, window: soon}\n", "not a duration"},
	} {
		_, err := alerts.ParseFile([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.file, err, tc.want)
		}
	}
	rs, err := alerts.ParseFile([]byte("rules:\n  - {id: a, org: o, env: e, kind: absence, window: 5m}\n"))
	if err != nil || len(rs) != 1 || rs[0].Source != "file" || rs[0].Op != alerts.Above {
		t.Errorf("good file: %+v %v", rs, err)
	}
}
