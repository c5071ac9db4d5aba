package stats

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/duckdb"
)

// randomDailyQuery builds a valid request that the daily table can answer
// (DailyEligible), over whole days or with partial days at the edges.
func randomDailyQuery(r *rand.Rand) (dims string, q url.Values) {
	q = url.Values{}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	dimNames := []string{"route", "request_verb", "response_status_code"}
	r.Shuffle(len(dimNames), func(i, j int) { dimNames[i], dimNames[j] = dimNames[j], dimNames[i] })
	dims = strings.Join(dimNames[:r.IntN(3)], ",")
	metrics := []string{"message_count", "sum(message_count)", "error_count", "is_error", "tps",
		"sum(total_response_time)", "avg(total_response_time)", "min(total_response_time)", "max(total_response_time)",
		"p50(total_response_time)", "p95(total_response_time)", "p99(total_response_time)"}
	var sels []string
	for range 1 + r.IntN(3) {
		sels = append(sels, metrics[r.IntN(len(metrics))])
	}
	q.Set("select", strings.Join(sels, ","))
	start := time.Date(2024, 1, 1+r.IntN(50), 0, 0, 0, 0, time.UTC)
	end := start.Add(time.Duration(1+r.IntN(20)) * 24 * time.Hour)
	if r.IntN(2) == 0 { // partial days at the edges
		start = start.Add(time.Duration(r.IntN(24)) * time.Hour)
		end = end.Add(time.Duration(r.IntN(24)) * time.Hour)
	}
	q.Set("timeRange", start.Format("01/02/2006 15:04")+"~"+end.Format("01/02/2006 15:04"))
	if u := pick("", "", "day", "week", "month"); u != "" {
		q.Set("timeUnit", u)
	}
	if r.IntN(2) == 0 {
		q.Set("filter", pick(
			"(response_status_code lt 500)",
			"(request_verb eq 'GET' and response_status_code lt 500)",
			"(route in '/a/x','/b') or (response_status_code ge 404)",
			"(route like '/a%')",
			"(request_verb ne 'PUT')",
		))
	}
	if r.IntN(2) == 0 {
		q.Set("sortby", metrics[r.IntN(len(metrics))])
	}
	if r.IntN(3) == 0 {
		q.Set("topk", strconv.Itoa(1+r.IntN(4)))
	}
	if r.IntN(3) == 0 {
		q.Set("sort", pick("ASC", "DESC"))
	}
	return dims, q
}

// TestDailyMatchesEvents runs random queries the daily table can answer
// through RunDaily and through the plain-Go evaluation of the events:
// after the days are built, after late events arrive in built days (they
// must count at once), and after the next build.
func TestDailyMatchesEvents(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 5))
	events := randomEvents(r, 800)
	st := openStore(t, events)
	if _, err := st.BuildDaily(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(stage string, n int) (covered, withLateGap int) {
		for i := range n {
			dims, q := randomDailyQuery(r)
			p, err := Parse("o", "e", dims, q)
			if err != nil {
				t.Fatalf("%s: query %d: /stats/%s?%s rejected: %v", stage, i, dims, q.Encode(), err)
			}
			if !DailyEligible(p) {
				t.Fatalf("%s: /stats/%s?%s: not answerable from the daily table", stage, dims, q.Encode())
			}
			got, err := RunDaily(ctx, st.DB(), DuckDB{}, p, duckdb.DailyTable)
			if err != nil {
				t.Fatalf("%s: /stats/%s?%s: %v\nSQL: %s", stage, dims, q.Encode(), err, Build(p, DuckDB{}).SQL)
			}
			if diff := answerDiff(p, got, evaluate(p, events)); diff != "" {
				t.Fatalf("%s: /stats/%s?%s (cover %v): %s", stage, dims, q.Encode(), p.Cover, diff)
			}
			if p.Cover != nil {
				covered++
				if len(p.Cover.Ranges) > 1 {
					withLateGap++
				}
			}
		}
		return covered, withLateGap
	}
	n := 150
	if testing.Short() {
		n = 40
	}
	if c, _ := check("built", n); c < n/2 {
		t.Fatalf("only %d of %d queries read the daily table", c, n)
	}

	// Late events: in days already built, ingested now.
	var late []apimeter.Event
	for i := range 40 {
		e := events[2+r.IntN(len(events)-2)]
		e.ID = "late" + strconv.Itoa(i)
		e.Weight = 1 + int64(r.IntN(3))
		late = append(late, e)
	}
	if _, err := st.Append(ctx, late); err != nil {
		t.Fatal(err)
	}
	events = append(events, late...)
	if _, gaps := check("late events, before the next build", n); gaps == 0 {
		t.Fatal("no query had a late day left out of its cover: the late events were not exercised")
	}
	built, err := st.BuildDaily(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if built == 0 {
		t.Fatal("the next build rebuilt no day after late events")
	}
	var stamps int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(DISTINCT built_at) FROM "+duckdb.DailyDaysTable).Scan(&stamps); err != nil || stamps != 1 {
		t.Fatalf("after a pass the built days carry %d built_at values (%v), want 1: readers would scan more rows for late events than needed", stamps, err)
	}
	check("rebuilt", n)
}

// TestDailyNotice checks that the answer names the tables it read.
func TestDailyNotice(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, randomEvents(rand.New(rand.NewPCG(1, 2)), 200))
	if _, err := st.BuildDaily(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ timeRange, want string }{
		{"01/02/2024 00:00~01/09/2024 00:00", "Table used: events_daily"},
		{"01/02/2024 06:00~01/09/2024 00:00", "Table used: events_daily, events"},
		{"01/02/2024 06:00~01/02/2024 18:00", "Table used: events"},
	} {
		p, err := Parse("o", "e", "route", url.Values{"select": {"p95(total_response_time)"}, "timeRange": {c.timeRange}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := RunDaily(ctx, st.DB(), DuckDB{}, p, duckdb.DailyTable)
		if err != nil {
			t.Fatal(err)
		}
		notices := Render(p, DuckDB{}, res).MetaData.Notices
		if notices[1] != c.want {
			t.Errorf("timeRange %s: notice %q, want %q", c.timeRange, notices[1], c.want)
		}
	}
}
