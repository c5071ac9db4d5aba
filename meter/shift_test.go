package meter

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestShiftSpan(t *testing.T) {
	for _, c := range []struct {
		name   string
		offset int
		want   int64
	}{
		{"UTC", 0, dayMs},
		{"Europe/Berlin winter (+1)", 3600, dayMs + 23*hourMs},
		{"Europe/Berlin summer (+2)", 7200, dayMs + 22*hourMs},
		{"America/New_York (-5)", -5 * 3600, dayMs + 5*hourMs},
		{"Asia/Kathmandu (+5:45)", 5*3600 + 45*60, dayMs + 18*hourMs + 15*60_000},
		{"America/St_Johns (-3:30)", -(3*3600 + 30*60), dayMs + 3*hourMs + 30*60_000},
		{"Pacific/Kiritimati (+14)", 14 * 3600, dayMs + 10*hourMs},
	} {
		if got := shiftSpan(c.offset); got != c.want {
			t.Errorf("%s: shiftSpan(%d) = %d, want %d", c.name, c.offset, got, c.want)
		}
		// A local midnight starts a row of the span.
		loc := time.FixedZone(c.name, c.offset)
		mid := time.Date(2026, 10, 12, 0, 0, 0, 0, loc).UnixMilli()
		if s := shiftSpan(c.offset); floorSpan(mid, s) != mid || ceilSpan(mid+1, s) != mid+dayMs {
			t.Errorf("%s: local midnight %d is not a row start of span %d", c.name, mid, s)
		}
	}
}

func TestWantedSpans(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	oct := func(d, h int) time.Time { return time.Date(2026, 10, d, h, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		name string
		p    Params
		want []int64
	}{
		{"Berlin across the change to winter time", Params{From: oct(1, 0), To: oct(31, 0), WindowSize: Day, TimeZone: berlin},
			[]int64{dayMs + 22*hourMs, dayMs + 23*hourMs}},
		{"Berlin, summer time only", Params{From: oct(1, 0), To: oct(20, 0), WindowSize: Day, TimeZone: berlin}, []int64{dayMs + 22*hourMs}},
		{"Berlin, winter time held less than a day", Params{From: oct(1, 0), To: oct(25, 12), WindowSize: Day, TimeZone: berlin}, []int64{dayMs + 22*hourMs}},
		{"Kolkata", Params{From: oct(1, 0), To: oct(3, 0), WindowSize: Day, TimeZone: kolkata}, []int64{dayMs + 18*hourMs + 30*60_000}},
		{"UTC", Params{From: oct(1, 0), To: oct(31, 0), WindowSize: Day, TimeZone: time.UTC}, nil},
		{"hours", Params{From: oct(1, 0), To: oct(31, 0), WindowSize: Hour, TimeZone: berlin}, nil},
		{"Berlin in 1880 (local mean time, +0:53:28)", Params{From: time.Date(1880, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(1880, 2, 1, 0, 0, 0, 0, time.UTC), WindowSize: Day, TimeZone: berlin}, nil},
	} {
		segs, err := zoneSegments(c.p.TimeZone, c.p.From, c.p.To)
		if err != nil {
			t.Fatal(err)
		}
		if got := wantedSpans(c.p, segs); !slices.Equal(got, c.want) {
			t.Errorf("%s: wantedSpans = %v, want %v", c.name, got, c.want)
		}
	}
	asked := map[int64]bool{}
	for i := range maxShifts - 1 {
		asked[dayMs+int64(i+1)*hourMs] = true
	}
	if got := toAsk(asked, []int64{dayMs + hourMs, dayMs + 20*hourMs, dayMs + 21*hourMs}); !slices.Equal(got, []int64{dayMs + 20*hourMs}) {
		t.Errorf("toAsk with %d shifts kept = %v, want only one more (at most %d)", len(asked), got, maxShifts)
	}
}

// TestPlanShiftedDays: a DAY window in Europe/Berlin reads one shifted
// day row per subject and group where a fold of its shift covers it and
// no hour of it has new events; the day clocks change (25 hours, two
// offsets) and the windows cut by the range read hours.
func TestPlanShiftedDays(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC)
	p := Params{From: from, To: to, WindowSize: Day, TimeZone: berlin}
	segs, err := zoneSegments(berlin, from, to)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := from.Add(-48*time.Hour).UnixMilli(), to.Add(48*time.Hour).UnixMilli()
	summer, winter := dayMs+22*hourMs, dayMs+23*hourMs
	folds := []fold{
		{span: hourMs, from: lo, to: hi, version: 1},
		{span: dayMs, from: lo, to: hi, version: 1},
		{span: summer, from: floorSpan(lo, summer), to: floorSpan(hi, summer), version: 1},
		{span: winter, from: floorSpan(lo, winter), to: floorSpan(hi, winter), version: 1},
	}
	last := fold{next: hi}
	count := func(c cover) map[int64]int {
		n := map[int64]int{}
		for _, s := range c.agg {
			n[s.span] += int((s.to - s.from) / spanLen(s.span))
		}
		return n
	}
	c := plan(p, segs, last, folds, nil)
	checkCover(t, "Berlin", p, segs, c)
	// Oct 1 (from 00:00 UTC, 02:00 local) to 22:00: 22 hours; Oct 2–24:
	// summer days; Oct 25 (25 hours, from 22:00 UTC): a summer day and
	// its last hour; Oct 26–30: winter days; Oct 30 23:00 to Oct 31 00:00
	// UTC: an hour.
	want := map[int64]int{hourMs: 22 + 1 + 1, summer: 24, winter: 5}
	if got := count(c); !maps.Equal(got, want) {
		t.Errorf("rows read per span = %v, want %v", got, want)
	}
	// An hour of Oct 10 with new events: that day from its other hour
	// rows and the events of that hour.
	dirty := map[int64]bool{time.Date(2026, 10, 10, 3, 0, 0, 0, time.UTC).UnixMilli(): true}
	c = plan(p, segs, last, folds, dirty)
	checkCover(t, "Berlin, one hour with new events", p, segs, c)
	want = map[int64]int{hourMs: 22 + 1 + 1 + 23, summer: 23, winter: 5}
	if got := count(c); !maps.Equal(got, want) {
		t.Errorf("with a dirty hour: rows read per span = %v, want %v", got, want)
	}
	// October in Berlin as one window (from and to at local midnight):
	// 31 days of 24 hours from the first midnight (summer days, as one
	// window takes any row within it) and the extra hour of October 25.
	month := Params{From: time.Date(2026, 9, 30, 22, 0, 0, 0, time.UTC), To: time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), TimeZone: berlin}
	msegs, err := zoneSegments(berlin, month.From, month.To)
	if err != nil {
		t.Fatal(err)
	}
	c = plan(month, msegs, last, folds, nil)
	checkCover(t, "October in Berlin", month, msegs, c)
	want = map[int64]int{hourMs: 1, summer: 31}
	if got := count(c); !maps.Equal(got, want) {
		t.Errorf("October in Berlin: rows read per span = %v, want %v", got, want)
	}
	// Without the winter shift kept: those days read hours.
	c = plan(p, segs, last, folds[:3], nil)
	checkCover(t, "Berlin, summer shift only", p, segs, c)
	if got := count(c); got[winter] != 0 || got[hourMs] != 22+1+1+5*24 || got[summer] != 24 {
		t.Errorf("summer shift only: rows read per span = %v", got)
	}
}

// TestPlanCoverRandom: whatever folds, shifts, dirty hours and queries,
// the plan reads every instant of the range exactly once, each aggregate
// row within one window.
func TestPlanCoverRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 30))
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns", "Pacific/Chatham"}
	base := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC).UnixMilli()
	shifted := 0
	for i := range 3000 {
		loc, _ := time.LoadLocation(zones[r.IntN(len(zones))])
		a := base + r.Int64N(20*dayMs)
		b := a + 1 + r.Int64N(12*dayMs)
		switch r.IntN(3) {
		case 0:
			a, b = floorTo(a, hourMs), ceilTo(b, hourMs)
		case 1:
			a, b = floorTo(a, 15*60_000), ceilTo(b, 15*60_000)
		}
		p := Params{From: time.UnixMilli(a).UTC(), To: time.UnixMilli(b).UTC(), WindowSize: []string{"", Hour, Day, Day}[r.IntN(4)], TimeZone: loc}
		segs, err := zoneSegments(loc, p.From, p.To)
		if err != nil {
			t.Fatal(err)
		}
		var folds []fold
		spans := []int64{hourMs, dayMs}
		for _, z := range zones[1:] {
			if r.IntN(2) == 0 {
				l, _ := time.LoadLocation(z)
				_, off := time.UnixMilli(a).In(l).Zone()
				spans = append(spans, shiftSpan(off))
			}
		}
		for v, s := range spans {
			// A backfill and a few refolded days or hours.
			lo := floorSpan(base-5*dayMs+r.Int64N(10*dayMs), s)
			hi := floorSpan(base+20*dayMs+r.Int64N(10*dayMs), s)
			folds = append(folds, fold{span: s, from: floorSpan(0, s), to: lo, version: 1}, fold{span: s, from: lo, to: hi, version: int64(v + 2)})
			for range r.IntN(4) {
				d := floorSpan(base+r.Int64N(20*dayMs), s)
				folds = append(folds, fold{span: s, from: d, to: d + spanLen(s), version: int64(100 + r.IntN(10))})
			}
		}
		dirty := map[int64]bool{}
		for range r.IntN(5) {
			dirty[floorTo(base+r.Int64N(30*dayMs), hourMs)] = true
		}
		last := fold{next: floorTo(base+r.Int64N(40*dayMs), hourMs)}
		c := plan(p, segs, last, folds, dirty)
		checkCover(t, "case "+time.UnixMilli(a).UTC().String(), p, segs, c)
		// The same cover with its hours read from the events
		// (subjecthours.go): still each instant once, no hour rows, and
		// adjacent ranges of events joined.
		e := eventHours(c)
		checkCover(t, "events for hours, case "+time.UnixMilli(a).UTC().String(), p, segs, e)
		for k, s := range e.raw {
			if k > 0 && e.raw[k-1].to == s.from {
				t.Fatalf("case %d: adjacent ranges of events %+v and %+v not joined", i, e.raw[k-1], s)
			}
		}
		if slices.ContainsFunc(e.agg, func(s span) bool { return s.span == hourMs }) {
			t.Fatalf("case %d: hour rows left in %+v", i, e.agg)
		}
		for _, s := range c.agg {
			if s.span > dayMs {
				shifted++
			}
			if s.to > last.next {
				t.Fatalf("case %d: reads rows of %d..%d, after the last pass's end %d", i, s.from, s.to, last.next)
			}
			for h := floorTo(s.from, hourMs); h < s.to; h += hourMs {
				if dirty[h] {
					t.Fatalf("case %d: reads rows of span %d at %d..%d over an hour with new events", i, s.span, s.from, s.to)
				}
			}
		}
		if t.Failed() {
			t.Fatalf("case %d: %+v", i, p)
		}
	}
	if shifted < 300 {
		t.Errorf("only %d shifted days read in 3000 plans", shifted)
	}
	t.Logf("%d shifted days read", shifted)
}

// checkCover fails unless c's spans partition [From, To) and each row of
// an aggregate span lies within one window.
func checkCover(t *testing.T, what string, p Params, segs []segment, c cover) {
	t.Helper()
	all := append(slices.Clone(c.raw), c.agg...)
	slices.SortFunc(all, func(a, b span) int { return int(sign(a.from - b.from)) })
	at := p.From.UnixMilli()
	for _, s := range all {
		if s.from != at {
			t.Errorf("%s: covered up to %d, next span starts at %d", what, at, s.from)
			return
		}
		at = s.to
	}
	if at != p.To.UnixMilli() {
		t.Errorf("%s: covered up to %d, want %d", what, at, p.To.UnixMilli())
	}
	ps := windows(p, segs)
	for _, s := range c.agg {
		for x := s.from; x < s.to; x += spanLen(s.span) {
			i, _ := slices.BinarySearchFunc(ps, x, func(pc [2]int64, t int64) int { return int(sign(pc[1] - 1 - t)) })
			if i == len(ps) || ps[i][0] > x || ps[i][1] < x+spanLen(s.span) {
				t.Errorf("%s: the row of span %d at %d is not within one window", what, s.span, x)
				return
			}
			if floorSpan(x, s.span) != x {
				t.Errorf("%s: %d is not a row start of span %d", what, x, s.span)
			}
		}
	}
}

// BenchmarkPlanDecades plans a query without from (every day since 1970)
// in Europe/Berlin for a meter keeping eight shifts, with a few hours of
// new events: the planner's share of a meter query at its widest.
func BenchmarkPlanDecades(b *testing.B) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	to := time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)
	p := Params{From: minTime, To: to, TimeZone: berlin}
	segs, err := zoneSegments(berlin, p.From, p.To)
	if err != nil {
		b.Fatal(err)
	}
	lo, first, hi := minTime.UnixMilli(), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), floorTo(to.UnixMilli(), hourMs)
	var folds []fold
	for i, s := range []int64{hourMs, dayMs, dayMs + 22*hourMs, dayMs + 23*hourMs, dayMs + 5*hourMs, dayMs + 4*hourMs, dayMs + 18*hourMs + 30*60_000, dayMs + 9*hourMs, dayMs + 16*hourMs, dayMs + 14*hourMs} {
		folds = append(folds, fold{span: s, from: floorSpan(lo, s), to: floorSpan(first, s), version: 1}, fold{span: s, from: floorSpan(first, s), to: floorSpan(hi, s), version: int64(i + 2)})
	}
	dirty := map[int64]bool{hi - 30*hourMs: true, hi - 400*hourMs: true, hi - 5000*hourMs: true}
	b.ReportAllocs()
	for b.Loop() {
		if c := plan(p, segs, fold{next: hi}, folds, dirty); len(c.agg) == 0 {
			b.Fatal("no aggregates")
		}
	}
}
