package billing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/internal/stripemocktest"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/usagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

type engine = usagetest.Engine

// engines runs f on the embedded DuckDB store and on ClickHouse.
func engines(t *testing.T, f func(t *testing.T, e engine)) {
	usagetest.Each(t, usagetest.Options{}, f)
}

var nov = billing.Period{Name: "2026-11", From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}

// want is the test's own tally of what it sent in November, per meter and
// customer.
type want map[[2]string]struct {
	value  float64
	events int64
}

// fixture writes the meters and profiles of org "o" env "prod".
func fixture(t *testing.T, e engine) {
	ctx := context.Background()
	for _, m := range []meter.Meter{
		{Slug: "tokens", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens", StripeEventName: "api_tokens"},
		{Slug: "requests", EventType: "request", Aggregation: meter.Count, StripeEventName: "api_requests"},
		{Slug: "seats", EventType: "seat", Aggregation: meter.Max, ValueProperty: "$.n"},
	} {
		m.Org, m.Env, m.ID = "o", "prod", m.Slug
		if err := e.Usage.PutMeter(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	err := e.Events.PutProfiles(ctx, []apimeter.Profile{
		{Org: "o", Env: "prod", Kind: "company", ID: "acme", ModifiedTime: at, Body: json.RawMessage(`{"company_id":"acme","metadata":{"stripe_customer_id":"cus_acme"}}`)},
		{Org: "o", Env: "prod", Kind: "user", ID: "bob", ModifiedTime: at, Body: json.RawMessage(`{"user_id":"bob","metadata":{"stripe_customer_id":"cus_bob","plan":"pro"}}`)},
		{Org: "o", Env: "prod", Kind: "company", ID: "globex", ModifiedTime: at, Body: json.RawMessage(`{"company_id":"globex","metadata":{}}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// send stores n events per customer starting at seq, some outside
// November, and adds November's to w.
func send(t *testing.T, e engine, w want, seq, n int) {
	var evs []meter.Event
	for _, c := range []string{"acme", "bob", "globex"} {
		for i := seq; i < seq+n; i++ {
			ts := nov.From.Add(time.Duration(i*7919%(29*24*60)) * time.Minute)
			if i%9 == 4 {
				ts = nov.From.Add(-time.Duration(i) * time.Minute) // October
			}
			if i%11 == 5 {
				ts = nov.To.Add(time.Duration(i) * time.Second) // December
			}
			tokens := float64(i%37) + 0.5
			in := !ts.Before(nov.From) && ts.Before(nov.To)
			for _, ev := range []map[string]any{
				{"type": "tokens", "data": map[string]any{"tokens": tokens}},
				{"type": "request", "data": map[string]any{}},
			} {
				ev["specversion"], ev["source"], ev["subject"] = "1.0", "test", c
				ev["id"] = fmt.Sprintf("%s-%s-%d", ev["type"], c, i)
				ev["time"] = ts.Format(time.RFC3339Nano)
				b, _ := json.Marshal(ev)
				got, err := meter.Decode(meter.ContentTypeEvent, b, "o", "prod", time.Now(), meter.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, got...)
			}
			if in {
				k := [2]string{"tokens", c}
				x := w[k]
				x.value += tokens
				x.events++
				w[k] = x
				k = [2]string{"requests", c}
				x = w[k]
				x.value++
				x.events++
				w[k] = x
			}
		}
	}
	if _, err := e.Usage.AppendUsage(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// checkExport compares the export with the test's tally and with the meter
// query over the same period.
func checkExport(t *testing.T, e engine, b *billing.Biller, w want) []billing.Line {
	t.Helper()
	ctx := context.Background()
	lines, err := b.Export(ctx, "o", "prod", nov)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(w) {
		t.Fatalf("export has %d lines, want %d: %+v", len(lines), len(w), lines)
	}
	for _, l := range lines {
		x := w[[2]string{l.Meter, l.Customer}]
		if !near(l.Value, x.value) || l.Events != x.events || l.Period != "2026-11" {
			t.Errorf("export %s/%s: value %v events %d, want %v %d", l.Meter, l.Customer, l.Value, l.Events, x.value, x.events)
		}
		ms, _ := e.Usage.Meters(ctx, "o", "prod")
		for i := range ms {
			if ms[i].Slug != l.Meter {
				continue
			}
			res, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, &ms[i], meter.Params{From: nov.From, To: nov.To, TimeZone: time.UTC, Subjects: []string{l.Customer}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Data) != 1 || res.Data[0].Value != l.Value {
				t.Errorf("export %s/%s = %v; meter query says %+v", l.Meter, l.Customer, l.Value, res.Data)
			}
		}
	}
	return lines
}

// sums adds up the values stripe-mock accepted per (event name, Stripe
// customer), counting a resent identifier once (as Stripe does), and
// fails on any request stripe-mock did not accept.
func sums(t *testing.T, reqs []recorded, into map[[2]string]float64, seen map[string]string) {
	t.Helper()
	for _, r := range reqs {
		if r.status/100 != 2 {
			t.Errorf("stripe-mock answered %d to %v", r.status, r.form)
			continue
		}
		id := r.form.Get("identifier")
		if prev, ok := seen[id]; ok {
			if prev != r.form.Encode() {
				t.Errorf("identifier %s sent with different forms: %s and %s", id, prev, r.form.Encode())
			}
			continue
		}
		seen[id] = r.form.Encode()
		v, err := strconv.ParseFloat(r.form.Get("payload[value]"), 64)
		if err != nil || v <= 0 {
			t.Errorf("payload[value] %q", r.form.Get("payload[value]"))
		}
		into[[2]string{r.form.Get("event_name"), r.form.Get("payload[stripe_customer_id]")}] += v
	}
}

// checkBilled compares what Stripe was sent with the export.
func checkBilled(t *testing.T, lines []billing.Line, billed map[[2]string]float64) {
	t.Helper()
	stripe := map[string]string{"acme": "cus_acme", "bob": "cus_bob"}
	event := map[string]string{"tokens": "api_tokens", "requests": "api_requests"}
	n := 0
	for _, l := range lines {
		id, ev := stripe[l.Customer], event[l.Meter]
		if id == "" || ev == "" {
			continue
		}
		n++
		if got := billed[[2]string{ev, id}]; !near(got, l.Value) {
			t.Errorf("Stripe billed %s %s %v; export says %v", ev, id, got, l.Value)
		}
	}
	if n != len(billed) {
		t.Errorf("Stripe billed %d meter/customer pairs, want %d: %v", len(billed), n, billed)
	}
}

func TestPushToStripeMock(t *testing.T) {
	mock := stripemocktest.Start(t)
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		fixture(t, e)
		w := want{}
		send(t, e, w, 0, 40)
		b := billing.New(billing.Config{Usage: e.Usage, Dialect: e.Dialect, Profiles: e.Events})
		rec := newRecorder(t, mock)
		p := &billing.Pusher{Source: b, APIBase: rec.srv.URL, APIKey: "sk_test_123",
			Now: func() time.Time { return time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) }}
		billed := map[[2]string]float64{}
		seen := map[string]string{}

		// 1: the period's first push.
		lines := checkExport(t, e, b, w)
		res, err := p.Push(ctx, "o", "prod", nov)
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 4 || len(res.NoStripe) != 2 {
			t.Errorf("first push: %+v, want 4 sent and globex twice without a Stripe id", res)
		}
		reqs := rec.take()
		if len(reqs) != 4 {
			t.Fatalf("first push: %d requests, want 4", len(reqs))
		}
		for _, r := range reqs {
			if ts := r.form.Get("timestamp"); ts != strconv.FormatInt(nov.To.Add(-time.Second).Unix(), 10) {
				t.Errorf("timestamp %s, want the period's last second", ts)
			}
		}
		sums(t, reqs, billed, seen)
		checkBilled(t, lines, billed)

		// 2: nothing new, nothing sent.
		res, err = p.Push(ctx, "o", "prod", nov)
		if err != nil || res.Sent != 0 || res.UpToDate != 4 {
			t.Fatalf("second push: %+v %v, want nothing sent", res, err)
		}
		if reqs := rec.take(); len(reqs) != 0 {
			t.Fatalf("second push sent %d requests", len(reqs))
		}

		// 3: late events: only the difference.
		send(t, e, w, 40, 10)
		lines = checkExport(t, e, b, w)
		if _, err := p.Push(ctx, "o", "prod", nov); err != nil {
			t.Fatal(err)
		}
		reqs = rec.take()
		if len(reqs) != 4 {
			t.Fatalf("third push: %d requests, want 4", len(reqs))
		}
		sums(t, reqs, billed, seen)
		checkBilled(t, lines, billed)

		// 4: killed before its second send reached Stripe, then resumed.
		send(t, e, w, 50, 10)
		lines = checkExport(t, e, b, w)
		rec.mu.Lock()
		rec.failBefore = rec.n + 2
		rec.mu.Unlock()
		if _, err := p.Push(ctx, "o", "prod", nov); err == nil {
			t.Fatal("push through a failing proxy succeeded")
		}
		if res, err := p.Push(ctx, "o", "prod", nov); err != nil || res.Resent != 1 || res.Sent != 3 {
			t.Fatalf("resumed push: %+v %v, want the pending intent resent and 3 sent in all", res, err)
		}
		sums(t, rec.take(), billed, seen)
		checkBilled(t, lines, billed)

		// 4b: the pushing process's context is cancelled while its second
		// meter event is on the way, then a new push resumes.
		send(t, e, w, 100, 5)
		lines = checkExport(t, e, b, w)
		cctx, cancel := context.WithCancel(ctx)
		rec.mu.Lock()
		target := rec.n + 2
		rec.hook = func(n int) {
			if n == target {
				cancel()
			}
		}
		rec.mu.Unlock()
		if _, err := p.Push(cctx, "o", "prod", nov); err == nil {
			t.Fatal("a cancelled push succeeded")
		}
		rec.mu.Lock()
		rec.hook = nil
		rec.mu.Unlock()
		if _, err := p.Push(ctx, "o", "prod", nov); err != nil {
			t.Fatal(err)
		}
		sums(t, rec.take(), billed, seen)
		checkBilled(t, lines, billed)

		// 5: Stripe accepted, the answer was lost (a crash before the
		// ledger): the resumed push resends the same identifier, and
		// late events go out as a separate difference.
		send(t, e, w, 60, 10)
		rec.mu.Lock()
		rec.failAfter = rec.n + 1
		rec.mu.Unlock()
		if _, err := p.Push(ctx, "o", "prod", nov); err == nil {
			t.Fatal("push with a lost answer succeeded")
		}
		send(t, e, w, 70, 5)
		lines = checkExport(t, e, b, w)
		res, err = p.Push(ctx, "o", "prod", nov)
		if err != nil || res.Resent != 1 || res.Sent != 5 {
			t.Fatalf("resumed push: %+v %v, want 1 resent and 5 sent", res, err)
		}
		reqs = rec.take()
		if reqs[0].form.Get("identifier") != reqs[1].form.Get("identifier") {
			t.Errorf("the resent meter event has identifier %s, the lost one %s", reqs[1].form.Get("identifier"), reqs[0].form.Get("identifier"))
		}
		sums(t, reqs, billed, seen)
		checkBilled(t, lines, billed)

		if res, err := p.Push(ctx, "o", "prod", nov); err != nil || res.Sent != 0 {
			t.Fatalf("final push: %+v %v, want nothing sent", res, err)
		}
		checkStatements(t, e, lines, w)
	})
}

// statements are the digests of each engine's statements, which must agree.
var statements = map[string]string{}

// checkStatements: each line's statement holds the export's value and
// count, verifies from its events, and has the same digest on both
// engines.
func checkStatements(t *testing.T, e engine, lines []billing.Line, w want) {
	t.Helper()
	b := billing.New(billing.Config{Usage: e.Usage, Dialect: e.Dialect, Secret: []byte("0123456789abcdef0123456789abcdef")})
	pub, _ := b.PublicKey("o")
	for _, l := range lines {
		ce, err := b.Statement(context.Background(), "o", "prod", l.Meter, l.Customer, nov)
		if err != nil {
			t.Fatal(err)
		}
		s := ce.Statement
		if s.Value != l.Value || s.Events != l.Events || int64(len(ce.Events)) != w[[2]string{l.Meter, l.Customer}].events {
			t.Errorf("statement %s/%s: value %v, %d events; export %v, %d", l.Meter, l.Customer, s.Value, s.Events, l.Value, l.Events)
		}
		if d := billing.Verify(ce, pub); len(d) > 0 {
			t.Errorf("statement %s/%s does not verify: %v", l.Meter, l.Customer, d)
		}
		k := l.Meter + "/" + l.Customer
		if prev, ok := statements[k]; ok && prev != s.Digest+s.Signature {
			t.Errorf("statement %s: digest and signature differ between engines", k)
		}
		statements[k] = s.Digest + s.Signature
	}
}
