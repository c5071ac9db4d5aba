package demo

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/moesif"
)

// TestHistoryIsAsBusyAsLiveTraffic backfills a history as the demo does
// and compares its calls per hour (events times their weight) over the last
// day with what the live traffic's pacing makes in the same hours: the two
// must agree, in total and in the daily curve, so that a chart does not
// jump where the history ends.
func TestHistoryIsAsBusyAsLiveTraffic(t *testing.T) {
	const n, rate = 24000, 1.0
	span := 96 * time.Hour
	pace := PaceOf(rate)
	weight := pace.Weight(n, span)
	var mu sync.Mutex
	var events []moesif.Event
	err := Backfill(context.Background(), n, 2, span, weight, Background(5), func(_ context.Context, b []moesif.Event) error {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Calls per hour of day (UTC) over the last 48 hours: history and live.
	var history, live [24]float64
	for _, e := range events {
		at, err := moesif.ParseTime(e.Request.Time)
		if err != nil {
			t.Fatal(err)
		}
		if now.Sub(at) > 48*time.Hour {
			continue
		}
		w := int64(1)
		if len(e.Weight) > 0 {
			w, _ = strconv.ParseInt(string(e.Weight), 10, 64)
		}
		history[at.UTC().Hour()] += float64(w)
	}
	tr := &Traffic{Pace: pace}
	for at := now.Add(-48 * time.Hour); at.Before(now); {
		live[at.UTC().Hour()]++
		at = at.Add(tr.Interval(at))
	}
	var hSum, lSum float64
	for h := range 24 {
		hSum += history[h]
		lSum += live[h]
	}
	t.Logf("last 48 h: history %.0f calls (%d events of weight %d), live pacing %.0f calls", hSum, n, weight, lSum)
	if r := hSum / lSum; r < 0.85 || r > 1.15 {
		t.Errorf("history %.0f calls, live traffic %.0f in the same 48 hours: ratio %.2f, want about 1", hSum, lSum, r)
	}
	// Both are busier in the afternoon (UTC) than at night, alike.
	day := func(a [24]float64) float64 { return a[13] + a[14] + a[15] + a[16] }
	night := func(a [24]float64) float64 { return a[1] + a[2] + a[3] + a[4] }
	for _, c := range []struct {
		name string
		a    [24]float64
	}{{"history", history}, {"live", live}} {
		if r := day(c.a) / night(c.a); r < 2 {
			t.Errorf("%s: 13-17 h UTC has %.1f times the calls of 01-05 h, want the daily curve (about 2.8)", c.name, r)
		}
	}
	if r := (day(history) / night(history)) / (day(live) / night(live)); r < 0.7 || r > 1.4 {
		t.Errorf("the daily curves differ: history day/night %.2f, live %.2f", day(history)/night(history), day(live)/night(live))
	}
}
