package alerts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/usagetest"
)

// usageOf opens the usage events and meters beside b's event store, with
// the meter dialect of its engine.
func usageOf(t *testing.T, b *backend) (meter.Store, meter.Dialect) {
	t.Helper()
	e := usagetest.Open(t, b.store, usagetest.Options{})
	return e.Usage, e.Dialect
}

// TestMeterRuleFiresPerSubject: a threshold rule over a meter's value
// (tokens summed per subject over 10 minutes) fires for exactly the
// subjects whose sum passes the threshold, once each, with the meter's
// value; a resent event is not counted twice; each resolves once its
// events leave the window. A rule over the meter's total fires once.
func TestMeterRuleFiresPerSubject(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		us, d := usageOf(t, b)
		if err := us.PutMeter(ctx, meter.Meter{Org: "acme", Env: "prod", Slug: "tokens", EventType: "completion",
			Aggregation: meter.Sum, ValueProperty: "$.tokens", CreatedAt: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
		recv := newReceiver(t)
		t0 := base()
		perSubject := alerts.Rule{ID: "big-spenders", Org: "acme", Env: "prod", Meter: "tokens", Per: alerts.PerSubject,
			Window: d10m(), Threshold: 1000}
		total := alerts.Rule{ID: "all-tokens", Org: "acme", Env: "prod", Meter: "tokens", Window: d10m(), Threshold: 2500}
		r := newRigCfg(t, b, recv, t0, func(c *alerts.Config) {
			c.Meters = meter.AlertSource{Store: us, Dialect: d}
		}, perSubject, total)
		at := t0.Add(time.Second)
		var batch []map[string]any
		add := func(subject string, tokens ...int) {
			for _, n := range tokens {
				batch = append(batch, map[string]any{
					"specversion": "1.0", "id": fmt.Sprintf("e%d", len(batch)), "source": "llm", "type": "completion",
					"subject": subject, "time": at.Add(time.Duration(len(batch)) * time.Millisecond).Format(time.RFC3339Nano),
					"data": map[string]any{"tokens": n},
				})
			}
		}
		add("alpha", 600, 500) // 1,100: fires
		add("beta", 400, 500)  // 900: quiet
		add("gamma", 1001)     // fires
		add("delta", 10)
		body, _ := json.Marshal(batch)
		evs, err := meter.Decode("application/cloudevents-batch+json", body, "acme", "prod", at, meter.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := us.AppendUsage(ctx, evs); err != nil {
			t.Fatal(err)
		}
		// beta's second event sent again: counted once, beta stays at 900.
		if _, err := us.AppendUsage(ctx, evs[3:4]); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			r.tick(t, t0.Add(time.Duration(i)*r.interval))
		}
		got := recv.events()
		sort.Strings(got)
		if want := []string{"firing", "firing alpha", "firing gamma"}; !equal(got, want) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
		for _, n := range recv.notifications() {
			want := map[string]float64{"alpha": 1100, "gamma": 1001, "": 3011}[n.Customer]
			if n.Value == nil || *n.Value != want {
				t.Errorf("%q: value %v, want %v", n.Customer, n.Value, want)
			}
		}
		// The events leave the 10-minute window: each resolves, once.
		for at := t0.Add(10 * time.Minute); at.Before(t0.Add(12 * time.Minute)); at = at.Add(r.interval) {
			r.tick(t, at)
		}
		got = recv.events()
		sort.Strings(got)
		if want := []string{"firing", "firing alpha", "firing gamma", "resolved", "resolved alpha", "resolved gamma"}; !equal(got, want) {
			t.Fatalf("notifications %v, want %v", got, want)
		}
	})
}

// TestMeterRuleChecks: what a meter rule cannot take is refused, naming
// the field.
func TestMeterRuleChecks(t *testing.T) {
	status := 500
	for _, c := range []struct {
		rule  alerts.Rule
		field string
	}{
		{alerts.Rule{Per: alerts.PerCompany}, "per"},
		{alerts.Rule{API: "orders"}, "api"},
		{alerts.Rule{Status: &status}, "status"},
		{alerts.Rule{Filter: "route eq '/x'"}, "filter"},
		{alerts.Rule{Key: "k"}, "key"},
		{alerts.Rule{MinVolume: 5}, "min_volume"},
		{alerts.Rule{Metric: "sum(message_count)"}, "meter"},
		{alerts.Rule{Kind: alerts.KindAbsence}, "meter"},
	} {
		r := c.rule
		r.ID, r.Org, r.Env, r.Meter, r.Window, r.Threshold = "m", "acme", "prod", "tokens", d10m(), 1
		err := r.Check()
		fe, ok := err.(*alerts.FieldError)
		if !ok || fe.Field != c.field {
			t.Errorf("%+v: got %v, want an error on %s", c.rule, err, c.field)
		}
	}
	r := alerts.Rule{ID: "m", Org: "acme", Env: "prod", Metric: "sum(message_count)", Per: alerts.PerSubject, Window: d10m(), Threshold: 1}
	if fe, ok := r.Check().(*alerts.FieldError); !ok || fe.Field != "per" {
		t.Errorf("per subject on a call metric: got %v, want an error on per", r.Check())
	}
}

func d10m() alerts.Duration { return d("10m") }
