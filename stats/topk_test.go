package stats

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
)

// rankedEvents are ten days of calls in org "o": users drawn from a Zipf
// law (a few heavy users, a long tail: more than rollup.TopN users a day),
// a user "steady" that is heavy every day but the fifth, where it makes one
// call among more than TopN users making two (so a top query must read its
// rows of that day, and the same in half an hour of the last day), and in org "f" calls spread evenly over 400 users (the
// ranks settle nothing there).
func rankedEvents(r *rand.Rand) []apimeter.Event {
	base := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	var out []apimeter.Event
	add := func(org, user, company, key string, ts time.Time) {
		w := int64(1)
		if r.IntN(40) == 0 {
			w = 3
		}
		out = append(out, apimeter.Event{
			ID: fmt.Sprintf("r%d", len(out)), Org: org, Env: "e", Direction: apimeter.Incoming,
			APIName: "a", Method: "GET", URI: "http://h/x", Path: "/x", Route: "/x", Status: 200,
			RequestTime: ts, ResponseTime: ts, LatencyMs: float64(1 + r.IntN(300)),
			UserID: user, CompanyID: company, APIKeyID: key, Weight: w,
		})
	}
	zipf := rand.NewZipf(r, 1.3, 1, 999)
	for range 9000 {
		u := int(zipf.Uint64())
		ts := base.Add(time.Duration(r.Int64N(int64(10 * 24 * time.Hour))))
		add("o", "u"+strconv.Itoa(u), "c"+strconv.Itoa(u%37), "k"+strconv.Itoa(u)+"-"+strconv.Itoa(r.IntN(2)), ts)
	}
	for d := range 10 {
		day := base.Add(time.Duration(d) * 24 * time.Hour)
		n := 30
		if d == 4 {
			n = 1
			for i := range rollup.TopN + 20 {
				for range 2 {
					add("o", "p"+strconv.Itoa(i), "cp", "kp"+strconv.Itoa(i), day.Add(time.Duration(r.Int64N(int64(24*time.Hour)))))
				}
			}
		}
		for range n {
			add("o", "steady", "cs", "ks", day.Add(time.Duration(r.Int64N(int64(24*time.Hour)))))
		}
	}
	// Half an hour of day ten with more than TopN users making two calls
	// and steady one: a range ending inside it ranks those minutes from the
	// events, where steady is not listed either.
	edge := base.Add(9*24*time.Hour + 12*time.Hour)
	for i := range rollup.TopN + 50 {
		for range 2 {
			add("o", "e"+strconv.Itoa(i), "ce", "ke"+strconv.Itoa(i), edge.Add(time.Duration(r.Int64N(int64(30*time.Minute)))))
		}
	}
	add("o", "steady", "cs", "ks", edge.Add(10*time.Minute))
	for range 4000 {
		u := r.IntN(400)
		add("f", "f"+strconv.Itoa(u), "fc"+strconv.Itoa(u%150), "fk"+strconv.Itoa(u), base.Add(time.Duration(r.Int64N(int64(10*24*time.Hour)))))
	}
	return out
}

// TestRankedTopMatchesEvents checks top-N queries by user, company and API
// key against a plain evaluation of the events, on both stores: on the
// embedded store most of them are answered from the ranks of the folded
// periods (the test fails if none is), before and after late events.
func TestRankedTopMatchesEvents(t *testing.T) {
	for _, s := range rollupStores() {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			r := rand.New(rand.NewPCG(34, 29))
			st := s.open(t)
			events := rankedEvents(r)
			st.add(t, events)
			st.fold(t)
			base := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
			check := func(stage string, org string) (ranked int) {
				for i := range 40 {
					from := base.Add(time.Duration(r.IntN(3*24*60)) * time.Minute)
					to := from.Add(time.Duration(60+r.IntN(8*24*60)) * time.Minute)
					switch i % 5 {
					case 0:
						from, to = base.Add(time.Duration(r.IntN(3))*24*time.Hour), base.Add(time.Duration(7+r.IntN(4))*24*time.Hour)
					case 1:
						to = base.Add(9*24*time.Hour + 12*time.Hour + time.Duration(20+r.IntN(15))*time.Minute)
					}
					dims := []string{"user_id", "developer", "company_id", "apps", "client_id", "api_key"}[r.IntN(6)]
					limit, offset := 1+r.IntN(20), r.IntN(6)
					q := url.Values{
						"select":    {"sum(message_count)"},
						"limit":     {strconv.Itoa(limit)},
						"offset":    {strconv.Itoa(offset)},
						"timeRange": {from.Format("01/02/2006 15:04") + "~" + to.Format("01/02/2006 15:04")},
					}
					switch r.IntN(3) {
					case 0:
						q.Set("sortby", "sum(message_count)")
					case 1:
						q.Set("topk", strconv.Itoa(offset+limit+r.IntN(5)))
					}
					p, err := Parse(org, "e", dims, q)
					if err != nil {
						t.Fatal(err)
					}
					got, err := RunRollups(ctx, st.db, st.dialect, p)
					if err != nil {
						t.Fatalf("%s: /stats/%s?%s: %v", stage, dims, q.Encode(), err)
					}
					if diff := answerDiff(p, got, evaluate(p, events)); diff != "" {
						t.Fatalf("%s: /stats/%s?%s (ranked %v, read %s): %s", stage, dims, q.Encode(), p.Ranked, tablesUsed(p), diff)
					}
					if p.Ranked {
						ranked++
					}
				}
				t.Logf("%s, org %s: %d of 40 answered from the ranks", stage, org, ranked)
				return ranked
			}
			duck := st.dialect.Name() == "DuckDB"
			if n := check("folded", "o"); duck && n < 20 {
				t.Errorf("only %d of 40 top queries were answered from the ranks", n)
			}
			// Over even usage the ranks settle short ranges only (hours
			// with fewer than TopN users list them all).
			if n := check("folded", "f"); duck && n > 30 {
				t.Errorf("%d of 40 top queries over even usage were answered from the ranks: the fallback was hardly exercised", n)
			}
			// Late events in folded periods: those periods are read from
			// the events table until the next fold.
			var late []apimeter.Event
			for i := range 80 {
				e := events[r.IntN(9000)]
				e.ID = "late" + strconv.Itoa(i)
				if i%4 == 0 {
					e.UserID, e.CompanyID, e.APIKeyID = "steady", "cs", "ks"
				}
				late = append(late, e)
			}
			st.add(t, late)
			events = append(events, late...)
			if n := check("late events", "o"); duck && n < 10 {
				t.Errorf("with late events, only %d of 40 top queries were answered from the ranks", n)
			}
			st.fold(t)
			check("folded again", "o")
		})
	}
}
