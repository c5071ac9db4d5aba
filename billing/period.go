package billing

import (
	"fmt"
	"time"
)

// Period is a billing period: a calendar month in UTC, [From, To).
type Period struct {
	Name     string // YYYY-MM
	From, To time.Time
}

// ParsePeriod reads a period named YYYY-MM.
func ParsePeriod(s string) (Period, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil || t.Year() < 1970 || t.Year() > 9998 {
		return Period{}, fmt.Errorf("period %q: want a calendar month as YYYY-MM, e.g. 2026-11", s)
	}
	return Period{Name: s, From: t.UTC(), To: t.AddDate(0, 1, 0).UTC()}, nil
}
