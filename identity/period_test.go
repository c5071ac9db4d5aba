package identity_test

import (
	"testing"
	"time"

	"github.com/apimeter/apimeter/identity"
)

func TestPeriods(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tz database: %v", err)
	}
	kathmandu := time.FixedZone("+0545", 5*3600+45*60)
	cases := []struct {
		name       string
		ps         identity.Periods
		at         string
		label      string
		start, end string
	}{
		{"calendar month UTC", identity.Periods{}, "2026-11-24T10:00:00Z", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"last instant of a month", identity.Periods{}, "2026-10-31T23:59:59.999Z", "2026-10", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"},
		{"first instant of a month", identity.Periods{}, "2026-11-01T00:00:00Z", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"December rolls the year", identity.Periods{}, "2026-12-31T12:00:00Z", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"anchor 15 before the anchor", identity.Periods{AnchorDay: 15}, "2026-11-14T23:00:00Z", "2026-10", "2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"},
		{"anchor 15 on the anchor", identity.Periods{AnchorDay: 15}, "2026-11-15T00:00:00Z", "2026-11", "2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z"},
		{"anchor 31 in February", identity.Periods{AnchorDay: 31}, "2027-03-01T00:00:00Z", "2027-02", "2027-02-28T00:00:00Z", "2027-03-31T00:00:00Z"},
		{"anchor 15 in January wraps back", identity.Periods{AnchorDay: 15}, "2027-01-03T00:00:00Z", "2026-12", "2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"},
		{"New York midnight", identity.Periods{Location: ny}, "2026-12-01T04:59:59Z", "2026-11", "2026-11-01T04:00:00Z", "2026-12-01T05:00:00Z"},
		{"New York after midnight", identity.Periods{Location: ny}, "2026-12-01T05:00:00Z", "2026-12", "2026-12-01T05:00:00Z", "2027-01-01T05:00:00Z"},
		{"quarter-hour zone", identity.Periods{Location: kathmandu}, "2026-11-30T18:15:00Z", "2026-12", "2026-11-30T18:15:00Z", "2026-12-31T18:15:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, _ := time.Parse(time.RFC3339Nano, c.at)
			p := c.ps.Of(at)
			start, _ := time.Parse(time.RFC3339, c.start)
			end, _ := time.Parse(time.RFC3339, c.end)
			if p.Label != c.label || !p.Start.Equal(start) || !p.End.Equal(end) {
				t.Fatalf("Of(%s) = %s [%s, %s), want %s [%s, %s)", c.at, p.Label, p.Start.UTC(), p.End.UTC(), c.label, start, end)
			}
			q, err := c.ps.Parse(c.label, at)
			if err != nil || q.Label != p.Label || !q.Start.Equal(p.Start) || !q.End.Equal(p.End) {
				t.Fatalf("Parse(%s) = %+v, %v; want %+v", c.label, q, err, p)
			}
		})
	}
}

func TestParsePeriodNames(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	cases := []struct{ in, want string }{
		{"", "2026-11"}, {"current", "2026-11"}, {"previous", "2026-10"}, {"2025-01", "2025-01"},
		{"2026-13", "error"}, {"2026-1", "error"}, {"nov", "error"}, {"2026-11-01", "error"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			p, err := identity.Periods{}.Parse(c.in, now)
			got := p.Label
			if err != nil {
				got = "error"
			}
			if got != c.want {
				t.Fatalf("Parse(%q) = %s (%v), want %s", c.in, got, err, c.want)
			}
		})
	}
}
