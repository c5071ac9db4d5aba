package meter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/usagetest"
)

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

// engine is one store's usage tables beside its event store; the
// stores' fold loops are off in these tests, which call Fold.
type engine = usagetest.Engine

// engines runs f on the embedded DuckDB store and on ClickHouse.
func engines(t *testing.T, f func(t *testing.T, e engine)) {
	usagetest.Each(t, usagetest.Options{ManualFold: true}, f)
}

// sent is a usage event as the test sent it, decoded the test's own way
// (encoding/json with json.Number), independent of the package's
// flattening.
type sent struct {
	subject string
	typ     string
	time    time.Time
	data    map[string]any
}

func genEvents(n int, seed uint64, start time.Time, span time.Duration) ([]meter.Event, []sent) {
	r := rand.New(rand.NewPCG(seed, 1))
	subjects := []string{"acme", "globex", "initech"}
	models := []string{"gpt-4", "gpt-3.5", "claude"}
	var evs []meter.Event
	var ss []sent
	for i := range n {
		d := map[string]any{}
		switch r.IntN(10) {
		case 0: // no tokens
		case 1:
			d["tokens"] = "abc" // not a number: not counted
		case 2:
			d["tokens"] = strconv.Itoa(r.IntN(1000)) // a number sent as a string
		default:
			d["tokens"] = r.IntN(1000)
		}
		if r.IntN(8) != 0 {
			d["model"] = models[r.IntN(len(models))]
		}
		d["user"] = fmt.Sprintf("u%d", r.IntN(20))
		d["usage"] = map[string]any{"input": r.IntN(50), "output": map[string]any{"n": r.IntN(7)}}
		typ := "tokens"
		if r.IntN(10) == 0 {
			typ = "other"
		}
		body, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": fmt.Sprintf("ev-%d-%d", seed, i), "source": "test", "type": typ,
			"subject": subjects[r.IntN(len(subjects))],
			"time":    start.Add(time.Duration(r.Int64N(int64(span/time.Millisecond))) * time.Millisecond).Format(time.RFC3339Nano),
			"data":    d,
		})
		got, err := meter.Decode(meter.ContentTypeEvent, body, "o", "prod", time.Now(), meter.Limits{})
		if err != nil {
			panic(err)
		}
		evs = append(evs, got[0])
		var back map[string]any
		dec := json.NewDecoder(bytes.NewReader(got[0].Data))
		dec.UseNumber()
		dec.Decode(&back)
		ss = append(ss, sent{subject: got[0].Subject, typ: typ, time: got[0].Time, data: back})
	}
	return evs, ss
}

// lookup walks $.a.b in data the test's way.
func lookup(data map[string]any, path string) (any, bool) {
	var cur any = data
	for _, seg := range strings.Split(strings.TrimPrefix(path, "$."), ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		if !json.Valid([]byte(x)) || strings.ContainsAny(x, "\"[{tfn ") {
			return 0, false
		}
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

func textOf(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// expect computes the answer to p the test's way, from what was sent.
func expect(ss []sent, m *meter.Meter, p meter.Params) []meter.Row {
	type key struct {
		w    time.Time
		subj string
		g    string
	}
	type acc struct {
		row    meter.Row
		sum    float64
		n      float64
		min    float64
		max    float64
		latest time.Time
		last   float64
		uniq   map[string]bool
	}
	groups := map[key]*acc{}
	var order []key
	bySubject := len(p.Subjects) > 0 || slices.Contains(p.GroupBy, "subject")
	var gkeys []string
	for _, g := range p.GroupBy {
		if g != "subject" {
			gkeys = append(gkeys, g)
		}
	}
	slices.Sort(gkeys)
	for _, s := range ss {
		if s.typ != m.EventType || s.time.Before(p.From) || !s.time.Before(p.To) {
			continue
		}
		if len(p.Subjects) > 0 && !slices.Contains(p.Subjects, s.subject) {
			continue
		}
		keep := true
		for k, vs := range p.FilterGroupBy {
			v, ok := lookup(s.data, m.GroupBy[k])
			t, _ := textOf(v)
			if !ok || !slices.Contains(vs, t) {
				keep = false
			}
		}
		if !keep {
			continue
		}
		var x float64
		var xs string
		if m.Aggregation != meter.Count {
			v, ok := lookup(s.data, m.ValueProperty)
			if !ok {
				continue
			}
			if m.Aggregation == meter.UniqueCount {
				if xs, ok = textOf(v); !ok {
					continue
				}
			} else if x, ok = numberOf(v); !ok {
				continue
			}
		}
		ws, we := p.From, p.To
		if p.WindowSize != "" {
			ws, we = windowOf(s.time, p)
		}
		gv := map[string]*string{}
		var gk []string
		for _, g := range gkeys {
			v, ok := lookup(s.data, m.GroupBy[g])
			if t, tok := textOf(v); ok && tok {
				gv[g] = &t
				gk = append(gk, "1"+t)
			} else {
				gv[g] = nil
				gk = append(gk, "0")
			}
		}
		k := key{ws, "", strings.Join(gk, "\x00")}
		if bySubject {
			k.subj = s.subject
		}
		a := groups[k]
		if a == nil {
			a = &acc{row: meter.Row{WindowStart: ws, WindowEnd: we, GroupBy: gv}, min: math.Inf(1), max: math.Inf(-1), uniq: map[string]bool{}}
			if bySubject {
				subj := s.subject
				a.row.Subject = &subj
			}
			groups[k] = a
			order = append(order, k)
		}
		a.sum += x
		a.n++
		a.min = math.Min(a.min, x)
		a.max = math.Max(a.max, x)
		a.uniq[xs] = true
		if !s.time.Before(a.latest) {
			a.latest, a.last = s.time, x
		}
	}
	var out []meter.Row
	for _, k := range order {
		a := groups[k]
		switch m.Aggregation {
		case meter.Count:
			a.row.Value = a.n
		case meter.Sum:
			a.row.Value = a.sum
		case meter.Avg:
			a.row.Value = a.sum / a.n
		case meter.Min:
			a.row.Value = a.min
		case meter.Max:
			a.row.Value = a.max
		case meter.UniqueCount:
			a.row.Value = float64(len(a.uniq))
		case meter.Latest:
			a.row.Value = a.last
		}
		out = append(out, a.row)
	}
	return out
}

// windowOf is the window of t the test's way: a local day from midnight to
// midnight; a real hour or minute (the instant less the local minutes,
// seconds and below), so that the two 01:00 hours of a night when clocks
// go back are two windows.
func windowOf(t time.Time, p meter.Params) (time.Time, time.Time) {
	l := t.In(p.TimeZone)
	switch p.WindowSize {
	case meter.Day:
		y, m, d := l.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, p.TimeZone).UTC(), time.Date(y, m, d+1, 0, 0, 0, 0, p.TimeZone).UTC()
	case meter.Hour:
		s := t.Add(-time.Duration(l.Minute())*time.Minute - time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond()))
		return s.UTC(), s.Add(time.Hour).UTC()
	}
	s := t.Add(-time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond()))
	return s.UTC(), s.Add(time.Minute).UTC()
}

// sameRows compares an answer with the expected rows, in any order.
func sameRows(t *testing.T, what string, got, want []meter.Row) {
	t.Helper()
	norm := func(rows []meter.Row) []string {
		var out []string
		for _, r := range rows {
			b, _ := json.Marshal(struct {
				S, E time.Time
				Subj *string
				G    map[string]*string
			}{r.WindowStart, r.WindowEnd, r.Subject, r.GroupBy})
			out = append(out, string(b))
		}
		return out
	}
	gk, wk := norm(got), norm(want)
	wantBy := map[string]float64{}
	for i, k := range wk {
		wantBy[k] = want[i].Value
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d\ngot  %v\nwant %v", what, len(got), len(want), gk, wk)
		return
	}
	for i, k := range gk {
		w, ok := wantBy[k]
		if !ok {
			t.Errorf("%s: unexpected row %s (value %v)", what, k, got[i].Value)
			continue
		}
		if math.Abs(got[i].Value-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s: row %s: value %v, want %v", what, k, got[i].Value, w)
		}
	}
}

func testMeters() []meter.Meter {
	g := map[string]string{"model": "$.model", "user": "$.user"}
	return []meter.Meter{
		{Slug: "tokens_sum", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens", GroupBy: g},
		{Slug: "tokens_count", EventType: "tokens", Aggregation: meter.Count, GroupBy: g},
		{Slug: "users", EventType: "tokens", Aggregation: meter.UniqueCount, ValueProperty: "$.user", GroupBy: g},
		{Slug: "tokens_avg", EventType: "tokens", Aggregation: meter.Avg, ValueProperty: "$.tokens", GroupBy: g},
		{Slug: "tokens_min", EventType: "tokens", Aggregation: meter.Min, ValueProperty: "$.tokens", GroupBy: g},
		{Slug: "tokens_max", EventType: "tokens", Aggregation: meter.Max, ValueProperty: "$.tokens", GroupBy: g},
		{Slug: "input_latest", EventType: "tokens", Aggregation: meter.Latest, ValueProperty: "$.usage.input", GroupBy: g},
		{Slug: "nested_sum", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.usage.output.n", GroupBy: map[string]string{"n": "$.usage.output.n"}},
	}
}

// queries are the query strings each meter is asked, over events from
// 2026-10-24 to 2026-11-03: both the end of summer time in Europe
// (2026-10-25) and in the United States (2026-11-01).
var queries = []string{
	"",
	"from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z&windowSize=DAY",
	"from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z&windowSize=DAY&windowTimeZone=Europe/Berlin&groupBy=subject",
	"from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z&windowSize=DAY&windowTimeZone=America/New_York&groupBy=model",
	"from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z&windowSize=DAY&windowTimeZone=Asia/Kolkata&subject=acme&subject=initech",
	"from=2026-10-24T12:00:00Z&to=2026-10-26T00:00:00Z&windowSize=HOUR&windowTimeZone=Europe/Berlin&groupBy=model&groupBy=subject",
	"from=2026-10-24T12:00:00Z&to=2026-10-25T12:00:00Z&windowSize=HOUR&windowTimeZone=Asia/Kolkata",
	"from=2026-10-25T00:00:00Z&to=2026-10-25T02:00:00Z&windowSize=MINUTE",
	"from=2026-10-24T00:00:00Z&to=2026-11-03T00:00:00Z&groupBy=user&filterGroupBy%5Bmodel%5D=gpt-4",
	"from=2026-10-26T03:17:00.250Z&to=2026-10-30T00:00:00Z&windowSize=DAY&windowTimeZone=America/New_York&groupBy=subject&filterGroupBy%5Bmodel%5D=claude&filterGroupBy%5Bmodel%5D=gpt-4",
}

// TestMeterQueries ingests usage events (a resent batch and a batch with a
// repeated id among them), defines meters of every aggregation and asks
// each the queries above, on both stores: every answer must equal what the
// test computes from the events it sent.
func TestMeterQueries(t *testing.T) {
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		start := time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC)
		evs, ss := genEvents(3000, 7, start, 10*24*time.Hour)
		for i := 0; i < len(evs); i += 500 {
			res, err := e.Usage.AppendUsage(ctx, evs[i:i+500])
			if err != nil {
				t.Fatal(err)
			}
			if res.Stored != 500 || res.Duplicates != 0 {
				t.Fatalf("batch %d: %+v, want 500 stored", i/500, res)
			}
		}
		// Resent: nothing new.
		res, err := e.Usage.AppendUsage(ctx, evs[500:1000])
		if err != nil || res.Stored != 0 || res.Duplicates != 500 {
			t.Fatalf("resent batch: %+v %v, want 500 duplicates", res, err)
		}
		// The same id from another source is another event; the same id
		// twice in a batch is one.
		extra := []meter.Event{evs[0], evs[1], evs[1]}
		extra[0].Source = "other"
		extra[1].ID, extra[2].ID = "fresh", "fresh"
		res, err = e.Usage.AppendUsage(ctx, extra)
		if err != nil || res.Stored != 2 || res.Duplicates != 1 {
			t.Fatalf("mixed batch: %+v %v, want 2 stored, 1 duplicate", res, err)
		}
		ss = append(ss, ss[0], ss[1])

		for _, m := range testMeters() {
			m.Org, m.Env, m.ID = "o", "prod", meter.NewID()
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := e.Usage.PutMeter(ctx, m); err != nil {
				t.Fatal(err)
			}
			for _, q := range queries {
				v, _ := url.ParseQuery(q)
				if m.Slug == "nested_sum" {
					v.Del("filterGroupBy[model]")
					if v.Has("groupBy") {
						v["groupBy"] = []string{"n"}
					}
				}
				p, err := meter.ParseParams(v, &m, start.Add(10*24*time.Hour))
				if err != nil {
					t.Fatalf("%s?%s: %v", m.Slug, q, err)
				}
				got, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, &m, p)
				if err != nil {
					t.Fatalf("%s?%s: %v", m.Slug, q, err)
				}
				want := expect(ss, &m, p)
				if len(want) == 0 {
					t.Fatalf("%s?%s: the test expects no rows; it checks nothing", m.Slug, q)
				}
				sameRows(t, m.Slug+"?"+q, got.Data, want)
				if m.Aggregation == meter.Sum || m.Aggregation == meter.Count {
					// The events listed are those counted: their values add
					// up to the answer's, once each, in id order.
					var total, listed float64
					for _, r := range got.Data {
						total += r.Value
					}
					prev := ""
					err := meter.CountedEvents(ctx, e.Usage.DB(), e.Dialect, &m, p, func(c meter.CountedEvent) error {
						k := c.Subject + "\x00" + c.Source + "\x00" + c.ID
						if k <= prev {
							return fmt.Errorf("event %q after %q", k, prev)
						}
						prev = k
						listed += c.Value
						return nil
					})
					if err != nil || listed != total {
						t.Errorf("%s?%s: counted events add up to %v (%v), the answer to %v", m.Slug, q, listed, err, total)
					}
				}
			}
		}
		ms, err := e.Usage.Meters(ctx, "o", "prod")
		if err != nil || len(ms) != len(testMeters()) {
			t.Fatalf("meters: %d, %v; want %d", len(ms), err, len(testMeters()))
		}
		if err := e.Usage.DeleteMeter(ctx, "o", "prod", "users"); err != nil {
			t.Fatal(err)
		}
		if err := e.Usage.DeleteMeter(ctx, "o", "prod", "users"); err != meter.ErrNotFound {
			t.Fatalf("second delete: %v, want ErrNotFound", err)
		}
		ms, _ = e.Usage.Meters(ctx, "o", "prod")
		if len(ms) != len(testMeters())-1 {
			t.Fatalf("after delete: %d meters", len(ms))
		}
	})
}
