package meter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/apimeter/apimeter/meter"
)

// hourRowsRE matches the hour rows of meter_agg in a meter query's SQL.
var hourRowsRE = regexp.MustCompile(`span_ms = 3600000\D`)

// withSubjectEvents is the engine's dialect reading at most n events of
// the named subjects instead of hour rows (negative: never).
func withSubjectEvents(t *testing.T, d meter.Dialect, n int) meter.Dialect {
	switch d.(type) {
	case meter.DuckDB:
		return meter.DuckDB{SubjectEvents: n}
	case meter.ClickHouse:
		return meter.ClickHouse{SubjectEvents: n}
	}
	t.Fatalf("no dialect for %T", d)
	return nil
}

// TestMeterSubjectHours checks, on both stores, that a query naming
// subjects answers the same whether the hours it would read from the
// meter's hour rows are read from the events (the named subjects' events
// few enough) or from the hour rows: HOUR and MINUTE windows, DAY windows
// in Europe/Berlin, ragged bounds, a subject with few events, one with
// more than the limit, one with none, events resent, and late events
// into folded hours before and after they are folded. Every answer equals
// the test's own evaluation of the events sent, and the plans read hour
// rows exactly when the limit says so.
func TestMeterSubjectHours(t *testing.T) {
	engines(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(aggSeed(t), 5))
		start := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
		end := start.Add(5 * 24 * time.Hour)
		used := map[int64]bool{}
		// About 300 events for each of aggEvents' five subjects, and 1
		// in 40 moved to "tiny".
		const limit = 100
		tinyOf := func(evs []meter.Event, ss []sent, every int) {
			for i := range evs {
				if i%every == 0 {
					evs[i].Subject, ss[i].subject = "tiny", "tiny"
				}
			}
		}
		evs, ss := aggEvents(r, 1500, "h", start, end.Sub(start), used)
		tinyOf(evs, ss, 40)
		if _, err := e.Usage.AppendUsage(ctx, evs); err != nil {
			t.Fatal(err)
		}
		meters := putMeters(t, ctx, e, r, "h", []string{meter.Sum, meter.Count, meter.Avg, meter.Latest}, func(m *meter.Meter) {
			m.GroupBy["model"] = "$.model"
		})
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		queries := []struct {
			q string
			// hours: the cover reads whole hours (from hour rows, or
			// from the events in their stead; not for hours at :30 UTC,
			// which hour rows do not fit); few: the named subjects'
			// events in them are within the limit.
			hours, few bool
		}{
			{"from=2026-10-20T00:00:00Z&to=2026-10-25T00:00:00Z&windowSize=HOUR&subject=tiny", true, true},
			{"from=2026-10-20T03:17:00.25Z&to=2026-10-24T19:00:00Z&windowSize=HOUR&windowTimeZone=Asia/Kolkata&subject=tiny&subject=nobody", false, true},
			{"from=2026-10-20T00:00:00Z&to=2026-10-25T00:00:00Z&windowSize=HOUR&subject=acme", true, false},
			{"from=2026-10-21T00:00:00Z&to=2026-10-24T00:00:00Z&windowSize=HOUR&subject=acme&subject=tiny&groupBy=model", true, false},
			{"from=2026-10-21T10:00:00Z&to=2026-10-21T13:30:00Z&windowSize=MINUTE&subject=tiny", false, true},
			{"from=2026-10-20T00:00:00Z&to=2026-10-25T00:00:00Z&windowSize=DAY&windowTimeZone=Europe/Berlin&subject=tiny&groupBy=model", true, true},
			{"from=2026-10-20T05:30:00Z&to=2026-10-24T07:45:10Z&subject=tiny", true, true},
			{"from=2026-10-20T05:30:00Z&to=2026-10-24T07:45:10Z&subject=nobody", true, true},
		}
		dialects := []struct {
			name string
			d    meter.Dialect
			// reads: whether hour rows are read, given the query's kind.
			reads func(hours, few bool) bool
		}{
			{"hour rows", withSubjectEvents(t, e.Dialect, -1), func(hours, few bool) bool { return hours }},
			{"events within the limit", withSubjectEvents(t, e.Dialect, limit), func(hours, few bool) bool { return hours && !few }},
			{"events", withSubjectEvents(t, e.Dialect, 1<<30), func(hours, few bool) bool { return false }},
			// ClickHouse's own limit: estimated from the hour rows.
			{"the store's", e.Dialect, nil},
		}
		now := time.Now().UTC()
		run := func(step string) {
			t.Helper()
			for _, qq := range queries {
				for i := range meters {
					m := &meters[i]
					v, _ := url.ParseQuery(qq.q)
					p, err := meter.ParseParams(v, m, now)
					if err != nil {
						t.Fatal(err)
					}
					want := expect(ss, m, p)
					for _, dd := range dialects {
						what := fmt.Sprintf("%s, %s: %s (%s) ?%s", step, dd.name, m.Slug, m.Aggregation, qq.q)
						got, err := meter.Query(ctx, e.Usage.DB(), dd.d, m, p)
						if err != nil {
							t.Fatalf("%s: %v", what, err)
						}
						sameRows(t, what, got.Data, want)
						sq, _, err := meter.Plan(ctx, e.Usage.DB(), dd.d, m, p)
						if err != nil {
							t.Fatal(err)
						}
						if dd.reads != nil && hourRowsRE.MatchString(sq) != dd.reads(qq.hours, qq.few) {
							t.Errorf("%s: reads hour rows: %v, want %v:\n%s", what, hourRowsRE.MatchString(sq), dd.reads(qq.hours, qq.few), sq)
						}
					}
				}
			}
			if t.Failed() {
				t.FailNow()
			}
		}
		run("folded")
		// A batch resent, and late events into folded hours (tiny's
		// still within the limit).
		if _, err := e.Usage.AppendUsage(ctx, evs[:400]); err != nil {
			t.Fatal(err)
		}
		late, lss := aggEvents(r, 200, "late", start.Add(30*time.Hour), 48*time.Hour, used)
		tinyOf(late, lss, 20)
		if _, err := e.Usage.AppendUsage(ctx, late); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, lss...)
		run("late events, not folded")
		if err := e.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		run("late events folded")
	})
}
