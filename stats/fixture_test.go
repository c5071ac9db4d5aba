package stats

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// ev is a compact fixture event.
type ev struct {
	at       string // "2006-01-02 15:04"
	env      string // "" means test
	proxy    string
	app      string // company id (developer_app)
	user     string
	target   string
	verb     string
	path     string
	status   int
	weight   int64
	latency  float64
	tlatency float64
	reqSize  int64
	respSize int64
}

func (e ev) event(i int) apimeter.Event {
	ts, err := time.Parse("2006-01-02 15:04", e.at)
	if err != nil {
		panic(err)
	}
	env := e.env
	if env == "" {
		env = "test"
	}
	w := e.weight
	if w == 0 {
		w = 1
	}
	verb := e.verb
	if verb == "" {
		verb = "GET"
	}
	path := e.path
	if path == "" {
		path = "/v1/things"
	}
	return apimeter.Event{
		ID: "ev" + itoa(i), Org: "myorg", Env: env, Direction: apimeter.Incoming,
		APIName: e.proxy, TargetURL: e.target, RequestTime: ts, ResponseTime: ts.Add(time.Duration(e.latency * float64(time.Millisecond))),
		Method: verb, URI: "https://api.example.com" + path, Path: path, Route: path,
		Status: e.status, LatencyMs: e.latency, TargetLatencyMs: e.tlatency,
		RequestSize: e.reqSize, ResponseSize: e.respSize,
		UserID: e.user, CompanyID: e.app, Weight: w,
	}
}

func itoa(i int) string { return time.Duration(i).String() }

// openStore opens a DuckDB store in a temporary directory holding events.
func openStore(t testing.TB, events []apimeter.Event) *duckdb.Store {
	t.Helper()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	for i := 0; i < len(events); i += 1000 {
		j := min(i+1000, len(events))
		res, err := st.Append(ctx, events[i:j])
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if res.Duplicates != 0 {
			t.Fatalf("fixture has %d duplicate ids", res.Duplicates)
		}
	}
	return st
}

// fixture is the hand-computed data set of Apigee's documented examples. The
// expected answers in stats_test.go are worked out from these rows.
var fixture = []ev{
	// March 2018: 744944087 + 1 calls = 7.44944088E8.
	{at: "2018-03-05 10:00", proxy: "weatherapi", app: "Test-App", user: "u1", status: 200, weight: 744944087, latency: 10},
	{at: "2018-03-31 23:58", proxy: "weatherapi", app: "Test-App", user: "u1", status: 200, latency: 10},
	{at: "2018-03-31 23:59", proxy: "weatherapi", app: "Test-App", user: "u1", status: 200, latency: 10}, // end is exclusive
	{at: "2018-03-01 10:00", env: "prod", proxy: "weatherapi", status: 200, latency: 10},                 // other env

	// June 20-21 2018: target-reroute 886 + 6645 + 1109 = 8640 calls;
	// developer_app per day: Test-App 886 and johndoe_app 6645 on the 20th,
	// marys_app 1109 on the 21st.
	{at: "2018-06-20 10:00", proxy: "target-reroute", app: "Test-App", user: "u1", status: 200, weight: 886, latency: 20},
	{at: "2018-06-20 11:00", proxy: "target-reroute", app: "johndoe_app", user: "u2", status: 200, weight: 6645, latency: 30},
	{at: "2018-06-21 09:30", proxy: "target-reroute", app: "marys_app", user: "u3", status: 200, weight: 1109, latency: 40},
	{at: "2018-06-22 00:00", proxy: "target-reroute", app: "marys_app", user: "u3", status: 200, latency: 40}, // after range

	// May 8-15 2018 (weeks start Monday 05/07 and 05/14).
	{at: "2018-05-07 23:59", proxy: "testCache", app: "Test-App", target: "http://api.company.com", status: 500, latency: 5}, // before range
	{at: "2018-05-08 09:00", proxy: "testCache", app: "Test-App", target: "http://api.company.com", verb: "GET", status: 500, weight: 12000, latency: 100, tlatency: 80},
	{at: "2018-05-09 09:00", proxy: "testCache", app: "johndoe_app", target: "http://api.company.com", verb: "POST", status: 503, weight: 77, latency: 200, tlatency: 150},
	{at: "2018-05-10 09:00", proxy: "weatherapi", app: "marys_app", target: "http://backend.example", verb: "PUT", status: 404, latency: 50, tlatency: 45},
	{at: "2018-05-11 09:00", proxy: "weatherapi", app: "marys_app", target: "http://backend.example", verb: "GET", status: 200, weight: 3, latency: 60, tlatency: 50},
	{at: "2018-05-14 12:00", proxy: "testCache", app: "Test-App", target: "http://api.company.com", verb: "GET", status: 200, weight: 5, latency: 10, tlatency: 5},
	{at: "2018-05-15 00:00", proxy: "testCache", app: "Test-App", target: "http://api.company.com", status: 500, latency: 5}, // end is exclusive

	// Sept 24 - Oct 25 2018, for /stats/apis,apps.
	{at: "2018-09-24 08:00", proxy: "weatherapi", app: "Test-App", status: 200, latency: 10},
	{at: "2018-09-24 09:00", proxy: "weatherapi", app: "Test-App", status: 200, latency: 10},
	{at: "2018-09-25 09:00", proxy: "weatherapi", app: "marys_app", status: 200, latency: 10},
	{at: "2018-10-01 09:00", proxy: "testCache", app: "Test-App", status: 200, weight: 2, latency: 10},

	// Weighted (sampled) calls: weights 1, 10 and 100 on 2018-12-03.
	{at: "2018-12-03 10:00", proxy: "weighted", user: "w1", status: 200, weight: 100, latency: 10, reqSize: 100, respSize: 1000},
	{at: "2018-12-03 11:00", proxy: "weighted", user: "w2", status: 500, weight: 10, latency: 20, reqSize: 200, respSize: -1},
	{at: "2018-12-03 12:00", proxy: "weighted", user: "w2", status: 200, weight: 1, latency: 30, reqSize: 300, respSize: 3000},
}

func fixtureEvents() []apimeter.Event {
	out := make([]apimeter.Event, len(fixture))
	for i, e := range fixture {
		out[i] = e.event(i)
	}
	return out
}

// engine is a store the Metrics API runs on; the correctness suites (seed
// examples, property test, dimensions) run unchanged on each.
type engine struct {
	name    string
	dialect Dialect
	// open stores events in a fresh store and returns its database.
	open func(t testing.TB, events []apimeter.Event) *sql.DB
}

func engines() []engine {
	return []engine{
		{"DuckDB", DuckDB{}, func(t testing.TB, events []apimeter.Event) *sql.DB { return openStore(t, events).DB() }},
		{"ClickHouse", ClickHouse{}, openClickHouse},
	}
}

// forEngines runs fn as one subtest per engine.
func forEngines(t *testing.T, fn func(t *testing.T, e engine)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) { fn(t, e) })
	}
}

// openClickHouse stores events in a fresh database of the test binary's
// clickhouse-server (chtest), skipping when none can be started.
func openClickHouse(t testing.TB, events []apimeter.Event) *sql.DB {
	t.Helper()
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, chtest.Shared(t).DSN(chtest.Database(t)), clickhouse.Options{})
	if err != nil {
		t.Fatalf("open clickhouse store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	for i := 0; i < len(events); i += 1000 {
		j := min(i+1000, len(events))
		res, err := st.Append(ctx, events[i:j])
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if res.Duplicates != 0 {
			t.Fatalf("fixture has %d duplicate ids", res.Duplicates)
		}
	}
	return st.DB()
}
