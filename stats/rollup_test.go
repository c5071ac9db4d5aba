package stats

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// rollupStore is a store with rollups, as the parity test drives it.
type rollupStore struct {
	db      *sql.DB
	dialect Dialect
	// add appends events and returns how many the store took as
	// duplicates.
	add func(t *testing.T, events []apimeter.Event) int
	// fold brings the rollups up to date (the embedded store's pass; a
	// no-op where materialized views keep them current).
	fold func(t *testing.T)
}

func rollupStores() []struct {
	name string
	open func(t *testing.T) rollupStore
} {
	return []struct {
		name string
		open func(t *testing.T) rollupStore
	}{
		{"DuckDB", openDuckRollups},
		{"ClickHouse", openClickHouseRollups},
	}
}

func openDuckRollups(t *testing.T) rollupStore {
	st := openStore(t, nil)
	return rollupStore{
		db: st.DB(), dialect: DuckDB{},
		add: func(t *testing.T, events []apimeter.Event) int {
			res, err := st.Append(context.Background(), events)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			return res.Duplicates
		},
		fold: func(t *testing.T) {
			if _, err := st.BuildRollups(context.Background()); err != nil {
				t.Fatalf("fold rollups: %v", err)
			}
		},
	}
}

// randomRollupQuery builds a valid request that mostly a rollup family can
// answer, and now and then one that none can (other dimensions, metrics,
// minute buckets or a zone off the hour), which must fall back.
func randomRollupQuery(r *rand.Rand) (dims string, q url.Values) {
	q = url.Values{}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	groups := [][]string{
		{"apiproxy", "route", "request_verb", "response_status_code", "environment"},
		{"developer_app", "company_id"},
		{"user_id", "developer", "developer_app"},
		{"api_key", "client_id", "user_id", "company_id"},
	}
	g := groups[r.IntN(len(groups))]
	names := append([]string{}, g...)
	if r.IntN(8) == 0 {
		names = append(names, pick("proxy_basepath", "target_url", "request_path"))
	}
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	seen := map[string]bool{}
	var ds []string
	for _, n := range names[:r.IntN(min(3, len(names))+1)] {
		d, _ := lookupDimension(n)
		if !seen[d.column] {
			seen[d.column] = true
			ds = append(ds, n)
		}
	}
	dims = strings.Join(ds, ",")
	metrics := []string{"message_count", "sum(message_count)", "error_count", "is_error", "tps",
		"sum(total_response_time)", "avg(total_response_time)", "total_response_time",
		"min(total_response_time)", "max(total_response_time)",
		"p50(total_response_time)", "p95(total_response_time)", "p99(total_response_time)"}
	if r.IntN(10) == 0 {
		metrics = append(metrics, "unique_users", "sum(response_size)", "avg(target_response_time)")
	}
	var sels []string
	for range 1 + r.IntN(3) {
		sels = append(sels, metrics[r.IntN(len(metrics))])
	}
	q.Set("select", strings.Join(sels, ","))
	start := time.Date(2024, 1, 1+r.IntN(50), 0, 0, 0, 0, time.UTC)
	span := time.Duration(1+r.IntN(20*24)) * time.Hour
	switch r.IntN(3) {
	case 0: // whole days
		span = span.Truncate(24*time.Hour) + 24*time.Hour
	case 1: // whole hours
		start = start.Add(time.Duration(r.IntN(24)) * time.Hour)
	default: // minutes at the edges
		start = start.Add(time.Duration(r.IntN(24*60)) * time.Minute)
		span += time.Duration(r.IntN(60)) * time.Minute
	}
	end := start.Add(span)
	q.Set("timeRange", start.Format("01/02/2006 15:04")+"~"+end.Format("01/02/2006 15:04"))
	if u := pick("", "", "hour", "day", "day", "week", "month", "minute"); u != "" {
		if u == "minute" && end.Sub(start) > 30*24*time.Hour {
			u = "hour"
		}
		q.Set("timeUnit", u)
	}
	if r.IntN(4) == 0 {
		q.Set("tzo", pick("60", "-120", "330"))
	}
	if r.IntN(2) == 0 {
		var conds []string
		for _, d := range g[:1+r.IntN(min(2, len(g)))] {
			switch d {
			case "response_status_code":
				conds = append(conds, "response_status_code "+pick("lt 500", "ge 404", "in 200,201", "ne 503"))
			case "request_verb":
				conds = append(conds, "request_verb "+pick("eq 'GET'", "ne 'PUT'"))
			case "apiproxy":
				conds = append(conds, "apiproxy "+pick("in 'alpha','beta'", "like 'g%'", "ne 'Delta'"))
			case "route":
				conds = append(conds, "route "+pick("in '/a/x','/b'", "like '/a%'"))
			case "environment":
				conds = append(conds, "environment eq 'e'")
			case "developer_app", "company_id":
				conds = append(conds, d+" "+pick("eq 'acme'", "isnotnull", "like 'Acme\\%'", "in 'zeta','acme'"))
			case "user_id", "developer":
				conds = append(conds, d+" "+pick("eq 'u1'", "isnull", "in 'u2','u3'", "like 'u_%'"))
			default:
				conds = append(conds, d+" "+pick("eq 'k1'", "ne 'k2'"))
			}
		}
		q.Set("filter", "("+strings.Join(conds, ") "+pick("and", "or")+" (")+")")
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
	if r.IntN(3) == 0 {
		q.Set("limit", strconv.Itoa(1+r.IntN(5)))
	}
	if r.IntN(2) == 0 {
		q.Set("tsAscending", pick("true", "false"))
	}
	return dims, q
}

// TestRollupsMatchEvents is the rollups' parity test: on each store it
// folds the rollups, checks hundreds of random queries (dimensions,
// filters, time units, zones, percentiles) through RunRollups against the
// plain-Go evaluation of the same events, then adds late events (in folded
// periods) and duplicates (which must not count), checks again before the
// next fold (late periods are read from the events table) and after it.
// The seed is logged; APIMETER_ROLLUP_SEED replays one.
func TestRollupsMatchEvents(t *testing.T) {
	for _, s := range rollupStores() {
		t.Run(s.name, func(t *testing.T) { testRollupsMatchEvents(t, s.open) })
	}
}

func testRollupsMatchEvents(t *testing.T, open func(t *testing.T) rollupStore) {
	ctx := context.Background()
	seed := uint64(29)
	if v := os.Getenv("APIMETER_ROLLUP_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("APIMETER_ROLLUP_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (APIMETER_ROLLUP_SEED=%d replays it)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 1))
	st := open(t)
	events := randomEvents(r, 1500)
	if dups := st.add(t, events); dups != 0 {
		t.Fatalf("%d duplicates in fresh events", dups)
	}
	st.fold(t)
	n := 300
	if testing.Short() {
		n = 80
	}
	check := func(stage string) (rolled, withGap int, used map[string]bool) {
		used = map[string]bool{}
		for i := range n {
			dims, q := randomRollupQuery(r)
			p, err := Parse("o", "e", dims, q)
			if err != nil {
				t.Fatalf("%s: query %d: /stats/%s?%s rejected: %v", stage, i, dims, q.Encode(), err)
			}
			got, err := RunRollups(ctx, st.db, st.dialect, p)
			if err != nil {
				t.Fatalf("%s: /stats/%s?%s: %v\nSQL: %s", stage, dims, q.Encode(), err, Build(p, st.dialect).SQL)
			}
			if diff := answerDiff(p, got, evaluate(p, events)); diff != "" {
				t.Fatalf("%s: /stats/%s?%s (read %s): %s\nSQL: %s", stage, dims, q.Encode(), tablesUsed(p), diff, Build(p, st.dialect).SQL)
			}
			if p.Cover != nil {
				rolled++
				for _, tb := range strings.Split(tablesUsed(p), ", ") {
					used[tb] = true
				}
				// A gap strictly inside the range: a period left to the
				// events table although whole.
				for _, g := range p.Cover.Gaps(p.From, p.To) {
					if g[1].Sub(g[0]) >= time.Hour && g[0].After(p.From) && g[1].Before(p.To) {
						withGap++
						break
					}
				}
			}
		}
		t.Logf("%s: %d of %d queries read rollups; tables read: %v", stage, rolled, n, keys(used))
		return rolled, withGap, used
	}
	rolled, _, used := check("folded")
	// Percentiles, min and max by user, company or key are left to the
	// events table (no histogram family has those keys): about half.
	if rolled < n/3 {
		t.Fatalf("only %d of %d queries read the rollups", rolled, n)
	}
	for _, f := range rollup.Families {
		if !used[f.Table(rollup.Day)] && !used[f.Table(rollup.Hour)] {
			t.Errorf("no query read the %s family", f.Name)
		}
	}
	for _, g := range rollup.Grains {
		if !used[rollup.Families[0].Table(g)] {
			t.Errorf("no query read %s", rollup.Families[0].Table(g))
		}
	}

	// Late events in folded periods, and duplicates of stored events
	// (same ids, other values: the store must keep the first).
	var late, dups []apimeter.Event
	for i := range 60 {
		e := events[2+r.IntN(len(events)-2)]
		e.ID = "late" + strconv.Itoa(i)
		e.Weight = 1 + int64(r.IntN(3))
		e.LatencyMs = float64(1 + r.IntN(900))
		late = append(late, e)
		d := events[2+r.IntN(len(events)-2)]
		d.Weight, d.Status = 7, 500
		dups = append(dups, d)
	}
	if got := st.add(t, late); got != 0 {
		t.Fatalf("late events: %d taken as duplicates", got)
	}
	if got := st.add(t, dups); got != len(dups) {
		t.Fatalf("duplicates: %d of %d taken as duplicates", got, len(dups))
	}
	events = append(events, late...)
	if _, gaps, _ := check("late events, before the next fold"); gaps == 0 && st.dialect.Name() == "DuckDB" {
		t.Fatal("no query left a late period to the events table: the late events were not exercised")
	}
	st.fold(t)
	if rolled, _, _ := check("folded again"); rolled < n/3 {
		t.Fatalf("after the next fold only %d of %d queries read the rollups", rolled, n)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func openClickHouseRollups(t *testing.T) rollupStore {
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, chtest.Shared(t).DSN(chtest.Database(t)), clickhouse.Options{})
	if err != nil {
		t.Fatalf("open clickhouse store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return rollupStore{
		db: st.DB(), dialect: ClickHouse{},
		add: func(t *testing.T, events []apimeter.Event) int {
			res, err := st.Append(ctx, events)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			return res.Duplicates
		},
		// Materialized views fold every insert.
		fold: func(*testing.T) {},
	}
}

// TestRollupNotice checks which tables a query reads, as its metaData
// notice names them.
func TestRollupNotice(t *testing.T) {
	ctx := context.Background()
	st := openDuckRollups(t)
	st.add(t, randomEvents(rand.New(rand.NewPCG(1, 2)), 300))
	st.fold(t)
	for _, c := range []struct{ dims, sel, timeRange, want string }{
		{"route", "p95(total_response_time)", "01/02/2024 00:00~01/09/2024 00:00", "rollup_api_latency_day"},
		{"route", "p95(total_response_time)", "01/02/2024 06:00~01/09/2024 00:00", "rollup_api_latency_day, rollup_api_latency_hour"},
		{"apiproxy", "sum(message_count)", "01/02/2024 06:30~01/09/2024 00:00", "rollup_api_day, rollup_api_hour, events"},
		{"user_id", "sum(message_count)", "01/02/2024 00:00~01/09/2024 00:00", "rollup_user_day"},
		{"developer_app", "sum(is_error)", "01/02/2024 06:00~01/02/2024 18:00", "rollup_company_hour"},
		{"api_key", "sum(message_count)", "01/02/2024 06:10~01/02/2024 06:50", "events"},
		{"user_id", "p95(total_response_time)", "01/02/2024 00:00~01/09/2024 00:00", "events"},
		{"", "unique_users", "01/02/2024 00:00~01/09/2024 00:00", "events"},
	} {
		p, err := Parse("o", "e", c.dims, url.Values{"select": {c.sel}, "timeRange": {c.timeRange}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := RunRollups(ctx, st.db, st.dialect, p)
		if err != nil {
			t.Fatal(err)
		}
		if got := Render(p, DuckDB{}, res).MetaData.Notices[1]; got != "Table used: "+c.want {
			t.Errorf("/stats/%s?select=%s&timeRange=%s: notice %q, want %q", c.dims, c.sel, c.timeRange, got, "Table used: "+c.want)
		}
	}
}
