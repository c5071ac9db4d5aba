package stats

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFormatNumber(t *testing.T) {
	tenth := 0.1 // a variable, so the sum is done in float64
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name string
		in   *float64
		want string
	}{
		{"missing", nil, "0.0"},
		{"zero", f(0), "0.0"},
		{"whole", f(1100), "1100.0"},
		{"seed large", f(744944088), "7.44944088E8"},
		{"ten million", f(1e7), "1.0E7"},
		{"just below ten million", f(9999999), "9999999.0"},
		{"fraction", f(0.25), "0.25"},
		{"thousandth", f(0.001), "0.001"},
		{"below a thousandth", f(0.0001), "1.0E-4"},
		{"small with digits", f(0.00012345), "1.2345E-4"},
		{"negative", f(-12.5), "-12.5"},
		{"shortest digits", f(tenth + 2*tenth), "0.30000000000000004"},
		{"huge", f(1.5e300), "1.5E300"},
		{"NaN", f(math.NaN()), "NaN"},
		{"infinity", f(math.Inf(1)), "Infinity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatNumber(tc.in); got != tc.want {
				t.Errorf("FormatNumber = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQuota(t *testing.T) {
	st := openStore(t, fixtureEvents())
	now := time.Date(2026, 1, 1, 12, 0, 15, 0, time.UTC)
	mux := newMux(t, Config{DB: st.DB(), QuotaPerMinute: 3, Now: func() time.Time { return now }})
	u := func(org string) string {
		return "/v1/o/" + org + "/e/test/stats?select=sum(message_count)&timeRange=03/01/2018%2000:00~03/31/2018%2023:59"
	}
	steps := []struct {
		name   string
		at     time.Duration // after 12:00:15
		org    string
		status int
		retry  string
	}{
		{"first", 0, "myorg", 200, ""},
		{"second", time.Second, "myorg", 200, ""},
		{"third", 2 * time.Second, "myorg", 200, ""},
		{"fourth is over quota", 5 * time.Second, "myorg", 429, "40"},
		{"another org has its own quota", 5 * time.Second, "other", 200, ""},
		{"bad requests count too", 30 * time.Second, "myorg", 429, "15"},
		{"next minute", 45 * time.Second, "myorg", 200, ""},
	}
	for _, s := range steps {
		now = time.Date(2026, 1, 1, 12, 0, 15, 0, time.UTC).Add(s.at)
		rec := get(mux, u(s.org))
		if rec.Code != s.status || rec.Header().Get("Retry-After") != s.retry {
			t.Fatalf("%s: status %d Retry-After %q, want %d %q: %s", s.name, rec.Code, rec.Header().Get("Retry-After"), s.status, s.retry, rec.Body)
		}
		if s.status == http.StatusTooManyRequests {
			body := rec.Body.String()
			for _, want := range []string{`"code":"analytics.service.QuotaExceeded"`, "3 calls per minute", `"contexts":[]`, "retry after " + s.retry + " s"} {
				if !strings.Contains(body, want) {
					t.Errorf("%s: body %s lacks %s", s.name, body, want)
				}
			}
		}
	}
}
