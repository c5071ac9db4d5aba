package identity

import (
	"fmt"
	"time"
)

// Periods defines billing periods: each starts at 00:00 on AnchorDay of a
// month in Location and ends where the next one starts. A month shorter
// than AnchorDay starts its period on its last day. The zero value is the
// calendar month in UTC.
type Periods struct {
	// AnchorDay is the day of the month a period starts on, 1 to 31. Zero
	// means 1.
	AnchorDay int
	// Location is the time zone of the anchor; nil means UTC.
	Location *time.Location
}

// Period is one billing period, named by the year and month it starts in.
type Period struct {
	Label      string // "2026-11"
	Start, End time.Time
}

// Contains reports whether t falls in the period.
func (p Period) Contains(t time.Time) bool { return !t.Before(p.Start) && t.Before(p.End) }

func (ps Periods) loc() *time.Location {
	if ps.Location == nil {
		return time.UTC
	}
	return ps.Location
}

func (ps Periods) anchor(y int, m time.Month) time.Time {
	day := ps.AnchorDay
	if day <= 0 {
		day = 1
	}
	// Day 0 of the next month is the last day of this one.
	if last := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day(); day > last {
		day = last
	}
	return time.Date(y, m, day, 0, 0, 0, 0, ps.loc())
}

func (ps Periods) period(y int, m time.Month) Period {
	start := ps.anchor(y, m)
	ny, nm := y, m+1
	if nm > 12 {
		ny, nm = y+1, 1
	}
	return Period{Label: fmt.Sprintf("%04d-%02d", y, int(m)), Start: start, End: ps.anchor(ny, nm)}
}

// Of returns the period that t falls in.
func (ps Periods) Of(t time.Time) Period {
	lt := t.In(ps.loc())
	y, m := lt.Year(), lt.Month()
	if lt.Before(ps.anchor(y, m)) {
		m--
		if m < 1 {
			y, m = y-1, 12
		}
	}
	return ps.period(y, m)
}

// Parse returns the period named label ("2026-11"), or the current one for
// "" or "current" and the one before it for "previous".
func (ps Periods) Parse(label string, now time.Time) (Period, error) {
	switch label {
	case "", "current":
		return ps.Of(now), nil
	case "previous":
		return ps.Of(ps.Of(now).Start.Add(-time.Nanosecond)), nil
	}
	t, err := time.Parse("2006-01", label)
	if err != nil || len(label) != 7 {
		return Period{}, fmt.Errorf("%q is not YYYY-MM (the month the period starts in), current or previous", label)
	}
	return ps.period(t.Year(), t.Month()), nil
}
