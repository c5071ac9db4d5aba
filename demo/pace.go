package demo

import (
	"math"
	"time"
)

// Pace is how busy the demo's API is over the day: PerHour calls an hour
// on average, half as many again at the afternoon peak (15:00 UTC) and half
// as many in the night. The backfilled history and the live traffic follow
// the same Pace, so a chart of the last hours continues the history's
// curve rather than jumping from it.
type Pace struct {
	PerHour float64
}

// PaceOf is the pace of rate calls per second on average.
func PaceOf(rate float64) Pace { return Pace{PerHour: rate * 3600} }

// Weight is how many calls each of n backfilled events must stand for
// (the collector's weight, as a sampling SDK sends it) for a history over
// span to be as busy as p: the history stays as cheap to backfill as n
// events, and its charts line up with the live calls. At least 1.
func (p Pace) Weight(n int, span time.Duration) int64 {
	if n <= 0 {
		return 1
	}
	return max(1, int64(math.Round(p.PerHour*span.Hours()/float64(n))))
}

// dayCurve is the share of the mean rate at t: 1 on average over a day,
// from 0.5 at 03:00 UTC to 1.5 at 15:00 UTC.
func dayCurve(t time.Time) float64 {
	h := float64(t.UTC().Hour()) + float64(t.UTC().Minute())/60
	return 1 + 0.5*math.Cos(2*math.Pi*(h-15)/24)
}

// PerSecond is the pace's rate at t, in calls per second.
func (p Pace) PerSecond(t time.Time) float64 {
	return p.PerHour / 3600 * dayCurve(t)
}

// at returns a time in [from, from+span) drawn with the pace's curve as
// density: uniform draws kept with probability curve/max (rejection).
func at(from time.Time, span time.Duration, uniform func() float64) time.Time {
	for {
		t := from.Add(time.Duration(uniform() * float64(span)))
		if uniform()*1.5 < dayCurve(t) {
			return t
		}
	}
}
