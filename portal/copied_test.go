package portal_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
)

// TestUsageAfterFold: a company's usage of folded days is read from the
// fold's copy of its calls (rollup.CallsTable, on DuckDB), and stays what
// the customer made, what the Metrics API's plans answer and what an org
// key reads (checkUsage) through the fold, late events for a folded day
// (read from the events until the next fold) and the fold again. On
// ClickHouse the same answers come from the Metrics API's plans.
func TestUsageAfterFold(t *testing.T) {
	for _, engine := range []string{"duckdb", "clickhouse"} {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine)
			check := func(stage string) {
				for _, c := range customers {
					t.Run(stage+"/"+strings.ReplaceAll(custName(c), " ", "_"), func(t *testing.T) { e.checkUsage(t, c, e.tok[custName(c)]) })
				}
			}
			if err := e.fold(); err != nil {
				t.Fatal(err)
			}
			if engine == "duckdb" {
				// The previous period's days are complete: folded, with
				// the calls of both companies copied.
				var n int
				rows, err := e.db.QueryContext(context.Background(), `SELECT count(*) FROM `+rollup.CallsTable+` WHERE org = 'acme' AND company_id = 'c1'`)
				if err == nil {
					for rows.Next() {
						err = rows.Scan(&n)
					}
					rows.Close()
				}
				if err != nil || n == 0 {
					t.Fatalf("%s holds %d calls of c1 (%v): the fold copied none", rollup.CallsTable, n, err)
				}
			}
			check("folded")

			// Late calls of c1 (and of u1, one of its users) in a day of
			// the previous period, folded already.
			prev := e.periods.Of(e.periods.Of(e.now).Start.Add(-time.Nanosecond))
			var late []apimeter.Event
			for i := range 30 {
				ev := e.events[0]
				ev.ID = fmt.Sprintf("late%d", i)
				ev.UserID, ev.CompanyID, ev.APIKeyID = "u1", "c1", "fp_late"
				ev.Route, ev.Status, ev.LatencyMs, ev.Weight = "/late/{id}", 200+i%3*150, float64(1000+i), 1
				ev.RequestTime = prev.Start.Add(26*time.Hour + time.Duration(i)*time.Minute)
				ev.ResponseTime = ev.RequestTime.Add(time.Second)
				late = append(late, ev)
			}
			if _, err := e.st.Append(context.Background(), late); err != nil {
				t.Fatal(err)
			}
			e.events = append(e.events, late...)
			check("late")

			if err := e.fold(); err != nil {
				t.Fatal(err)
			}
			check("folded again")
		})
	}
}
