package main

import (
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/apimeter/apimeter/demo"
)

// TestDemoBannerSaysWhatIsStaged: the demo's banner says that the sample
// API fails calls on purpose (which statuses, how often per route), that
// some live calls carry no token or a forged one, and how busy the traffic
// and its history are, so that the dashboard's errors and counts are not a
// surprise.
func TestDemoBannerSaysWhatIsStaged(t *testing.T) {
	var b strings.Builder
	printDemo(&b, demoInfo{URL: "http://127.0.0.1:7070", APIURL: "http://127.0.0.1:7071", Org: "demo", Env: "prod", Secret: []byte("s"),
		Dashboard: "http://127.0.0.1:7070/ui/", Rate: 1, Backfill: 30000, Span: 720 * time.Hour, Weight: 86})
	out := b.String()
	for _, want := range []string{
		"fails some calls on purpose, with 400, 404, 429, 500 or 503",
		"POST /orders 8 %",
		"2 % send no token and 1 % a forged one: the API answers those 401",
		"1 calls a second on average",
		"30000 stored events over 720h0m0s, each standing for 86 calls",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the banner does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, demo.Faults()) {
		t.Errorf("the banner lacks demo.Faults()")
	}
}

// TestDemoDefaultsKeepHistoryAndLiveAlike: with the demo's defaults, the
// history's calls per hour (events times weight over the span) are within
// a few percent of the live traffic's average rate.
func TestDemoDefaultsKeepHistoryAndLiveAlike(t *testing.T) {
	var c demoCmd
	parseDefaults(t, &c)
	weight := demo.PaceOf(c.Rate).Weight(c.Backfill, c.Span)
	history := float64(int64(c.Backfill)*weight) / c.Span.Hours()
	live := c.Rate * 3600
	if r := history / live; r < 0.95 || r > 1.05 {
		t.Errorf("defaults: history %.0f calls an hour (%d events of weight %d over %v), live %.0f: ratio %.2f", history, c.Backfill, weight, c.Span, live, r)
	}
}

// parseDefaults fills a command's flags with their defaults, as kong does
// for a command line that gives none.
func parseDefaults(t *testing.T, cmd any) {
	t.Helper()
	p, err := kong.New(cmd, kong.Name("apimeter-test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(nil); err != nil {
		t.Fatal(err)
	}
}
