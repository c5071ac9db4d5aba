package meter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/dataset"
	"github.com/apimeter/apimeter/meter"
)

// aggSeed is the seed of TestMeterAggregatesRandom: APIMETER_AGG_SEED,
// else a fixed one (CI is deterministic; a failing seed is printed).
func aggSeed(t *testing.T) uint64 {
	if v := os.Getenv("APIMETER_AGG_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return 20261206
}

// aggEvents are n usage events of type "tokens" at distinct milliseconds
// of [start, start+span) (so that LATEST has one answer), with a few
// subjects, groups that are sometimes missing and values that are
// sometimes missing or not numbers.
func aggEvents(r *rand.Rand, n int, prefix string, start time.Time, span time.Duration, used map[int64]bool) ([]meter.Event, []sent) {
	subjects := []string{"acme", "globex", "initech", "umbrella", "hooli"}
	models := []string{"gpt-4", "gpt-3.5", "claude"}
	regions := []string{"eu", "us", "ap", "sa"}
	var evs []meter.Event
	var ss []sent
	for i := range n {
		var at int64
		for {
			at = start.UnixMilli() + r.Int64N(int64(span/time.Millisecond))
			if !used[at] {
				used[at] = true
				break
			}
		}
		d := map[string]any{}
		switch r.IntN(12) {
		case 0:
		case 1:
			d["tokens"] = "n/a"
		case 2:
			d["tokens"] = strconv.Itoa(r.IntN(500))
		default:
			d["tokens"] = r.IntN(1000) - 100
		}
		if r.IntN(7) != 0 {
			d["model"] = models[r.IntN(len(models))]
		}
		if r.IntN(5) != 0 {
			d["region"] = regions[r.IntN(len(regions))]
		}
		d["user"] = fmt.Sprintf("u%d", r.IntN(15))
		d["usage"] = map[string]any{"input": r.Float64() * 100}
		body, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": fmt.Sprintf("%s-%d", prefix, i), "source": "agg", "type": "tokens",
			"subject": subjects[r.IntN(len(subjects))],
			"time":    time.UnixMilli(at).UTC().Format(time.RFC3339Nano),
			"data":    d,
		})
		got, err := meter.Decode(meter.ContentTypeEvent, body, "o", "prod", time.Now(), meter.Limits{})
		if err != nil {
			panic(err)
		}
		evs = append(evs, got[0])
		var back map[string]any
		dec := json.NewDecoder(strings.NewReader(string(got[0].Data)))
		dec.UseNumber()
		dec.Decode(&back)
		ss = append(ss, sent{subject: got[0].Subject, typ: "tokens", time: got[0].Time, data: back})
	}
	return evs, ss
}

// putMeters defines one random meter per aggregation in aggs, slugged
// prefix0, prefix1, ..., each changed by edit first when it is not nil.
func putMeters(t *testing.T, ctx context.Context, e engine, r *rand.Rand, prefix string, aggs []string, edit func(*meter.Meter)) []meter.Meter {
	t.Helper()
	var meters []meter.Meter
	for i, a := range aggs {
		m := randomMeter(r, fmt.Sprintf("%s%d", prefix, i), a)
		if edit != nil {
			edit(&m)
		}
		if err := e.Usage.PutMeter(ctx, m); err != nil {
			t.Fatal(err)
		}
		meters = append(meters, m)
	}
	return meters
}

// randomMeter is a meter of aggregation agg with a random value and
// random group keys.
func randomMeter(r *rand.Rand, slug, agg string) meter.Meter {
	m := meter.Meter{Org: "o", Env: "prod", ID: meter.NewID(), Slug: slug, EventType: "tokens", Aggregation: agg, GroupBy: map[string]string{}}
	switch agg {
	case meter.Count:
	case meter.UniqueCount:
		m.ValueProperty = []string{"$.user", "$.model"}[r.IntN(2)]
	default:
		m.ValueProperty = []string{"$.tokens", "$.usage.input"}[r.IntN(2)]
	}
	for _, k := range []string{"model", "region", "user"} {
		if r.IntN(2) == 0 {
			m.GroupBy[k] = "$." + k
		}
	}
	return m
}

var aggZones = []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
	"Australia/Eucla", "Australia/Adelaide", "America/St_Johns", "Pacific/Chatham"}

// randomQuery is a random query of m over [lo, hi): aligned or ragged
// bounds, any window size the range allows, any zone, subjects, groups
// and group filters.
func randomQuery(r *rand.Rand, m *meter.Meter, lo, hi time.Time) url.Values {
	v := url.Values{}
	span := hi.Sub(lo)
	pick := func() time.Time {
		t := lo.Add(time.Duration(r.Int64N(int64(span))))
		switch r.IntN(4) {
		case 0:
			return t.Truncate(time.Hour)
		case 1:
			return t.Truncate(24 * time.Hour)
		}
		return t.Truncate(time.Millisecond)
	}
	from, to := pick(), pick()
	if r.IntN(6) == 0 {
		from, to = lo, hi
	}
	if to.Before(from) {
		from, to = to, from
	}
	if !from.Before(to) {
		to = from.Add(time.Hour)
	}
	v.Set("from", from.Format(time.RFC3339Nano))
	v.Set("to", to.Format(time.RFC3339Nano))
	ws := []string{"", meter.Hour, meter.Day, meter.Day}[r.IntN(4)]
	if to.Sub(from) < 6*time.Hour && r.IntN(3) == 0 {
		ws = meter.Minute
	}
	if ws == meter.Hour && to.Sub(from) > 5*24*time.Hour {
		ws = meter.Day
	}
	if ws != "" {
		v.Set("windowSize", ws)
		v.Set("windowTimeZone", aggZones[r.IntN(len(aggZones))])
	}
	switch r.IntN(4) {
	case 0:
		v.Add("groupBy", "subject")
	case 1:
		v["subject"] = []string{"acme", "initech", "nobody"}[:1+r.IntN(3)]
	}
	for _, k := range slices.Sorted(mapsKeys(m.GroupBy)) {
		switch r.IntN(4) {
		case 0:
			v.Add("groupBy", k)
		case 1:
			vals := map[string][]string{"model": {"gpt-4", "claude"}, "region": {"eu", "ap"}, "user": {"u1", "u2", "u3"}, "verb": {"GET", "POST"}}[k]
			if len(vals) > 1 {
				v["filterGroupBy["+k+"]"] = vals[:1+r.IntN(len(vals)-1)]
			}
		}
	}
	return v
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestMeterAggregatesRandom checks the meters' aggregates against the
// events, on both stores: random meters of every aggregation, defined
// before and after the events (backfill), events sent late into folded
// hours, resent, and in the hour under way (not folded), a meter changed
// and one deleted; after each step, random queries (window sizes, zones
// with :30 and :45 offsets and summer time, subjects, groups and group
// filters, ragged bounds) must equal the test's own evaluation of the
// events sent, and most must read the aggregates.
func TestMeterAggregatesRandom(t *testing.T) {
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		seed := aggSeed(t)
		r := rand.New(rand.NewPCG(seed, 2))
		t.Logf("seed %d (APIMETER_AGG_SEED)", seed)
		start := time.Date(2026, 10, 22, 0, 0, 0, 0, time.UTC)
		end := start.Add(12 * 24 * time.Hour)
		now := time.Now().UTC()
		used := map[int64]bool{}
		evs, ss := aggEvents(r, 4000, "a", start, end.Sub(start), used)
		ingest := func(evs []meter.Event, stored int) {
			t.Helper()
			for i := 0; i < len(evs); i += 700 {
				res, err := e.Usage.AppendUsage(ctx, evs[i:min(i+700, len(evs))])
				if err != nil {
					t.Fatal(err)
				}
				stored -= res.Stored
			}
			if stored != 0 {
				t.Fatalf("stored %d fewer events than sent", stored)
			}
		}
		ingest(evs, len(evs))

		aggs := []string{meter.Sum, meter.Count, meter.UniqueCount, meter.Avg, meter.Min, meter.Max, meter.Latest}
		var meters []meter.Meter
		put := func(m meter.Meter) {
			t.Helper()
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := e.Usage.PutMeter(ctx, m); err != nil {
				t.Fatal(err)
			}
			meters = slices.DeleteFunc(meters, func(o meter.Meter) bool { return o.Slug == m.Slug })
			meters = append(meters, m)
		}
		for i, a := range aggs {
			put(randomMeter(r, fmt.Sprintf("m%d", i), a))
		}
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}

		qlo, qhi := start.Add(-2*24*time.Hour), now.Add(2*time.Hour)
		shiftedTotal := 0
		check := func(step string, n int, wantAgg bool) {
			t.Helper()
			read, shifted := 0, 0
			for i := range n {
				m := &meters[r.IntN(len(meters))]
				lo, hi := start.Add(-24*time.Hour), end.Add(24*time.Hour)
				if i%10 == 0 {
					lo, hi = qlo, qhi
				}
				v := randomQuery(r, m, lo, hi)
				p, err := meter.ParseParams(v, m, now)
				if err != nil {
					t.Fatalf("%s: %s?%s: %v", step, m.Slug, v.Encode(), err)
				}
				got, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, m, p)
				if err != nil {
					t.Fatalf("%s: %s?%s: %v", step, m.Slug, v.Encode(), err)
				}
				sameRows(t, fmt.Sprintf("%s: %s (%s %s) ?%s", step, m.Slug, m.Aggregation, m.ValueProperty, v.Encode()), got.Data, expect(ss, m, p))
				q, _, err := meter.Plan(ctx, e.Usage.DB(), e.Dialect, m, p)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(q, meter.AggTable) {
					read++
				}
				if readsShifted(q) {
					shifted++
				}
				if t.Failed() {
					t.FailNow()
				}
			}
			t.Logf("%s: %d of %d queries read aggregates, %d shifted days", step, read, n, shifted)
			shiftedTotal += shifted
			if wantAgg && read < n/3 {
				t.Errorf("%s: only %d of %d queries read aggregates", step, read, n)
			}
		}
		check("backfilled", 80, true)

		// Meters defined after the events: answered from the events until
		// a pass backfills them.
		for i, a := range []string{meter.Sum, meter.Latest, meter.Avg} {
			put(randomMeter(r, fmt.Sprintf("late%d", i), a))
		}
		check("new meters, not folded", 20, false)
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}

		// Late events into folded hours, a resent batch, and events of the
		// hour under way.
		late, lss := aggEvents(r, 300, "b", start, end.Sub(start), used)
		ingest(late, len(late))
		ss = append(ss, lss...)
		ingest(evs[100:900], 0)
		recent, rss := aggEvents(r, 50, "c", now.Truncate(time.Hour), now.Sub(now.Truncate(time.Hour))+time.Millisecond, used)
		ingest(recent, len(recent))
		ss = append(ss, rss...)
		check("late events, not folded", 60, true)
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		check("late events folded", 60, true)

		// A meter changed (same slug) and one deleted.
		changed := randomMeter(r, "m0", meter.Max)
		put(changed)
		check("changed meter, not folded", 20, false)
		dropped := meters[1]
		if err := e.Usage.DeleteMeter(ctx, "o", "prod", dropped.Slug); err != nil {
			t.Fatal(err)
		}
		meters = slices.DeleteFunc(meters, func(o meter.Meter) bool { return o.Slug == dropped.Slug })
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		// Resent again after the fold: still counted once.
		ingest(evs[:500], 0)
		check("after changes", 80, true)
		if shiftedTotal == 0 {
			t.Errorf("no query read shifted days (DAY windows in zones such as Europe/Berlin)")
		}
		// The deleted meter's aggregates are gone (ClickHouse deletes
		// them in the background: its mutation is waited for).
		def := meter.Def(&dropped)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int64
			if err := e.Usage.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+meter.AggTable+` WHERE def = ?`, def).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the deleted meter still has %d aggregate rows", n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// TestCallMeterAggregates checks meters over API calls: after a fold, the
// answers (from the aggregates) equal those read from the events alone,
// which TestMetersOverCallsEqualMetricsAPI holds to the Metrics API.
func TestCallMeterAggregates(t *testing.T) {
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(aggSeed(t), 3))
		end := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
		g := dataset.New(dataset.Config{Events: 3000, Org: "o", Env: "prod", Span: 5 * 24 * time.Hour, End: end, Seed: 5, Users: 40, Companies: 6})
		calls := make([]apimeter.Event, 3000)
		calls = calls[:g.Fill(calls)]
		if _, err := e.Events.Append(ctx, calls); err != nil {
			t.Fatal(err)
		}
		var meters []meter.Meter
		for i, m := range []meter.Meter{
			{EventType: meter.CallType, Aggregation: meter.Count, GroupBy: map[string]string{"verb": "$.verb", "route": "$.route"}},
			{EventType: meter.CallType, Aggregation: meter.Sum, ValueProperty: "$.responseBytes", GroupBy: map[string]string{"verb": "$.verb"}},
			{EventType: meter.CallType, Aggregation: meter.Avg, ValueProperty: "$.latencyMs", GroupBy: map[string]string{"status": "$.status"}},
			{EventType: meter.CallType, Aggregation: meter.Max, ValueProperty: "$.latencyMs", Filter: &meter.CallFilter{Errors: new(bool)}},
			{EventType: meter.CallType, Aggregation: meter.Latest, ValueProperty: "$.status", GroupBy: map[string]string{"verb": "$.verb"}},
		} {
			m.Org, m.Env, m.ID, m.Slug = "o", "prod", meter.NewID(), fmt.Sprintf("c%d", i)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := e.Usage.PutMeter(ctx, m); err != nil {
				t.Fatal(err)
			}
			meters = append(meters, m)
		}
		type q struct {
			m *meter.Meter
			p meter.Params
		}
		var qs []q
		var before [][]meter.Row
		for range 40 {
			m := &meters[r.IntN(len(meters))]
			v := randomQuery(r, m, end.Add(-6*24*time.Hour), end.Add(24*time.Hour))
			v.Del("subject")
			p, err := meter.ParseParams(v, m, end)
			if err != nil {
				t.Fatal(err)
			}
			res, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, m, p)
			if err != nil {
				t.Fatal(err)
			}
			qs = append(qs, q{m, p})
			before = append(before, res.Data)
		}
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		read := 0
		for i, x := range qs {
			res, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, x.m, x.p)
			if err != nil {
				t.Fatal(err)
			}
			sameRows(t, fmt.Sprintf("%s (%s %s) %+v", x.m.Slug, x.m.Aggregation, x.m.ValueProperty, x.p), res.Data, before[i])
			sq, _, err := meter.Plan(ctx, e.Usage.DB(), e.Dialect, x.m, x.p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(sq, meter.AggTable) {
				read++
			}
		}
		if read < len(qs)/3 {
			t.Errorf("only %d of %d queries read aggregates", read, len(qs))
		}
	})
}

// spanRE matches the aggregate rows of a span in a meter query's SQL.
var spanRE = regexp.MustCompile(`span_ms = (\d+)`)

// readsShifted says whether the SQL q reads day rows of a shifted span
// (days starting at a zone's midnight rather than UTC's).
func readsShifted(q string) bool {
	for _, m := range spanRE.FindAllStringSubmatch(q, -1) {
		if n, _ := strconv.ParseInt(m[1], 10, 64); n > 86_400_000 {
			return true
		}
	}
	return false
}

// TestMeterShiftedDays follows a meter's day rows per UTC shift on both
// stores: DAY windows in zones whose days do not start at UTC midnight
// (Europe/Berlin across the night clocks go back, Asia/Kathmandu at
// +5:45) read hours until a pass has folded the shifts they asked for,
// then shifted days; a late event makes its day read hours and events
// until the next pass refolds it; a meter keeps at most eight shifts.
// Every answer equals the test's own sums of the events.
func TestMeterShiftedDays(t *testing.T) {
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(aggSeed(t), 4))
		start := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
		end := start.Add(10 * 24 * time.Hour)
		used := map[int64]bool{}
		evs, ss := aggEvents(r, 2000, "s", start, end.Sub(start), used)
		if _, err := e.Usage.AppendUsage(ctx, evs); err != nil {
			t.Fatal(err)
		}
		meters := putMeters(t, ctx, e, r, "s", []string{meter.Sum, meter.Count, meter.Avg, meter.Min, meter.Max, meter.Latest}, nil)
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		// Berlin's local midnights around the change (Oct 25), and
		// ragged bounds; Kathmandu's days start at 18:15 UTC.
		queries := []string{
			"from=2026-10-20T22:00:00Z&to=2026-10-29T23:00:00Z&windowSize=DAY&windowTimeZone=Europe/Berlin",
			"from=2026-10-20T00:00:00Z&to=2026-10-30T00:00:00Z&windowSize=DAY&windowTimeZone=Europe/Berlin&groupBy=subject",
			"from=2026-10-21T07:13:00.5Z&to=2026-10-28T15:00:00Z&windowSize=DAY&windowTimeZone=Europe/Berlin&subject=acme&subject=hooli",
			"from=2026-10-20T18:15:00Z&to=2026-10-29T18:15:00Z&windowSize=DAY&windowTimeZone=Asia/Kathmandu",
			"from=2026-10-21T22:00:00Z&to=2026-10-28T23:00:00Z&windowTimeZone=Europe/Berlin",
		}
		run := func(step string, wantShifted bool) {
			t.Helper()
			shifted := 0
			for _, q := range queries {
				for i := range meters {
					m := &meters[i]
					v, _ := url.ParseQuery(q)
					p, err := meter.ParseParams(v, m, now)
					if err != nil {
						t.Fatal(err)
					}
					got, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, m, p)
					if err != nil {
						t.Fatalf("%s: %s?%s: %v", step, m.Slug, q, err)
					}
					sameRows(t, fmt.Sprintf("%s: %s (%s) ?%s", step, m.Slug, m.Aggregation, q), got.Data, expect(ss, m, p))
					sq, _, err := meter.Plan(ctx, e.Usage.DB(), e.Dialect, m, p)
					if err != nil {
						t.Fatal(err)
					}
					if readsShifted(sq) {
						shifted++
					}
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			t.Logf("%s: %d queries read shifted days", step, shifted)
			if wantShifted != (shifted > 0) {
				t.Errorf("%s: %d queries read shifted days, want them to read %v", step, shifted, wantShifted)
			}
		}
		run("zones asked for, not folded", false)
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		run("shifted days folded", true)
		// A late event on Berlin's 25-hour day and one in Kathmandu's
		// day of Oct 23 (which starts at 18:15 UTC on Oct 22).
		for _, at := range []time.Time{time.Date(2026, 10, 25, 12, 0, 0, 0, time.UTC), time.Date(2026, 10, 22, 19, 0, 0, 0, time.UTC)} {
			late, lss := aggEvents(r, 3, fmt.Sprintf("late%d", at.Unix()), at, time.Hour, used)
			if _, err := e.Usage.AppendUsage(ctx, late); err != nil {
				t.Fatal(err)
			}
			ss = append(ss, lss...)
		}
		run("late events, not folded", true)
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		run("late events folded", true)
		// Nine more offsets asked for: a meter keeps eight shifts.
		m := &meters[0]
		for _, z := range []string{"America/New_York", "Asia/Kolkata", "Australia/Eucla", "Australia/Adelaide", "America/St_Johns", "Pacific/Chatham", "Asia/Tokyo", "America/Los_Angeles", "Asia/Dubai"} {
			v, _ := url.ParseQuery("from=2026-10-20T00:00:00Z&to=2026-10-23T00:00:00Z&windowSize=DAY&windowTimeZone=" + z)
			p, err := meter.ParseParams(v, m, now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := meter.Query(ctx, e.Usage.DB(), e.Dialect, m, p); err != nil {
				t.Fatal(err)
			}
		}
		var n int64
		if err := e.Usage.DB().QueryRowContext(ctx, `SELECT count(DISTINCT span_ms) FROM `+meter.FoldsTable+` WHERE def = ? AND span_ms > 86400000`, meter.Def(m)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 8 {
			t.Errorf("meter keeps %d shifts, want 8", n)
		}
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		run("eight shifts kept", true)
	})
}
