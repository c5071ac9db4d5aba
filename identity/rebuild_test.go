package identity_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestRebuildMatchesMeter checks that counters rebuilt from the events
// table at start-up equal the counters the Meter kept live, for billing
// periods with an anchor day and time zones whose midnight is not on a
// UTC hour, with events packed around period boundaries.
func TestRebuildMatchesMeter(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tz database: %v", err)
	}
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []apimeter.Event
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3000; i++ {
		at := base.Add(time.Duration(rng.Int64N(int64(120 * 24 * time.Hour))))
		if i%3 == 0 { // crowd the edges of days, where period boundaries lie
			at = at.Truncate(15 * time.Minute).Add(time.Duration(rng.IntN(3)-1) * time.Millisecond)
		}
		evs = append(evs, apimeter.Event{
			ID: fmt.Sprintf("e%d", i), Org: "acme", Env: []string{"prod", "test"}[i%2], RequestTime: at, ResponseTime: at,
			Method: "GET", Direction: apimeter.Incoming, Status: []int{200, 201, 404, 500, 0}[rng.IntN(5)],
			RequestSize: int64(rng.IntN(3)) - 1, ResponseSize: int64(rng.IntN(2000)),
			UserID: fmt.Sprintf("u%d", rng.IntN(7)), CompanyID: fmt.Sprintf("c%d", rng.IntN(3)), APIKeyID: fmt.Sprintf("fp_%d", rng.IntN(5)),
			Weight: []int64{1, 1, 10, 100}[rng.IntN(4)],
		})
	}
	cases := []struct {
		name string
		ps   identity.Periods
	}{
		{"calendar month UTC", identity.Periods{}},
		{"day 15 New York", identity.Periods{AnchorDay: 15, Location: ny}},
		{"day 31 UTC+05:45", identity.Periods{AnchorDay: 31, Location: time.FixedZone("+0545", 5*3600+45*60)}},
	}
	res, err := st.Append(ctx, evs)
	if err != nil || len(res.Stored) != len(evs) {
		t.Fatalf("append: %d stored, %v", len(res.Stored), err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			live := map[identity.CounterKey]identity.Counts{}
			(&identity.Meter{Periods: c.ps}).Deltas(res.Stored, live)
			rebuilt, err := identity.RebuildCounters(ctx, st.DB(), c.ps)
			if err != nil {
				t.Fatal(err)
			}
			if len(live) != len(rebuilt) {
				t.Fatalf("%d live counters, %d rebuilt", len(live), len(rebuilt))
			}
			for k, v := range live {
				if rebuilt[k] != v {
					t.Fatalf("counter %+v: live %+v, rebuilt %+v", k, v, rebuilt[k])
				}
			}
		})
	}
}
