package alerts_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range benchStores {
		s.close()
	}
	chtest.StopShared()
	os.Exit(code)
}

// backend is an event store of one engine, opened for a test.
type backend struct {
	name    string
	store   apimeter.Store
	db      *sql.DB
	dialect stats.Dialect
	engine  string
	dsn     string // ClickHouse only
}

// eachBackend runs fn on the embedded DuckDB store and on ClickHouse.
func eachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("duckdb", func(t *testing.T) {
		st, err := duckdb.Open(context.Background(), filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, &backend{name: "duckdb", store: st, db: st.DB(), dialect: stats.DuckDB{}, engine: alerts.DuckDB})
	})
	t.Run("clickhouse", func(t *testing.T) {
		dsn := chtest.Shared(t).DSN(chtest.Database(t))
		st, err := clickhouse.Open(context.Background(), dsn, clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, &backend{name: "clickhouse", store: st, db: st.DB(), dialect: stats.ClickHouse{}, engine: alerts.ClickHouse, dsn: dsn})
	})
}

var evSeq atomic.Int64

// call is one API call to store.
type call struct {
	at      time.Time
	api     string
	status  int
	user    string
	company string
	latency float64
}

func (b *backend) add(t *testing.T, calls ...call) {
	t.Helper()
	evs := make([]apimeter.Event, len(calls))
	for i, c := range calls {
		api := c.api
		if api == "" {
			api = "orders"
		}
		st := c.status
		if st == 0 {
			st = 200
		}
		evs[i] = apimeter.Event{
			ID: fmt.Sprintf("ev%d", evSeq.Add(1)), Org: "acme", Env: "prod", Direction: apimeter.Incoming,
			APIName: api, RequestTime: c.at, ResponseTime: c.at.Add(time.Millisecond),
			Method: "GET", URI: "/orders/1", Path: "/orders/1", Route: "/orders/{id}",
			Status: st, LatencyMs: c.latency, UserID: c.user, CompanyID: c.company,
			RequestSize: -1, ResponseSize: -1, Weight: 1,
		}
	}
	if _, err := b.store.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// many is n calls at t with the same fields.
func many(n int, c call) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
		out[i].at = c.at.Add(time.Duration(i) * time.Millisecond)
	}
	return out
}

// receiver is a real HTTP server that records the notifications it gets.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
	// fail answers the first fail requests with 500.
	fail int
	hits int
}

type received struct {
	header http.Header
	body   []byte
	n      alerts.Notification
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.hits++
		if r.hits <= r.fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var n alerts.Notification
		json.Unmarshal(body, &n)
		r.got = append(r.got, received{header: req.Header.Clone(), body: body, n: n})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) notifications() []alerts.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]alerts.Notification, len(r.got))
	for i, g := range r.got {
		out[i] = g.n
	}
	return out
}

// events lists "event customer" of what was received, in order.
func (r *receiver) events() []string {
	var out []string
	for _, n := range r.notifications() {
		s := n.Event
		if n.Customer != "" {
			s += " " + n.Customer
		}
		out = append(out, s)
	}
	return out
}

const secret = "whsec_test_0123456789abcdef"

// clock is the evaluator's injected time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// rig is an evaluator on a backend with a receiver, driven tick by tick.
type rig struct {
	b        *backend
	store    *alerts.SQLStore
	eval     *alerts.Evaluator
	notifier *alerts.Notifier
	clock    *clock
	recv     *receiver
	interval time.Duration
}

func newRig(t *testing.T, b *backend, recv *receiver, start time.Time, rules ...alerts.Rule) *rig {
	t.Helper()
	return newRigWith(t, b, recv, start, nil, rules...)
}

func newRigWith(t *testing.T, b *backend, recv *receiver, start time.Time, leaser alerts.Leaser, rules ...alerts.Rule) *rig {
	t.Helper()
	return newRigCfg(t, b, recv, start, func(c *alerts.Config) { c.Leaser = leaser }, rules...)
}

// newRigCfg is newRig with set changing the evaluator's configuration.
func newRigCfg(t *testing.T, b *backend, recv *receiver, start time.Time, set func(*alerts.Config), rules ...alerts.Rule) *rig {
	t.Helper()
	ctx := context.Background()
	st, err := alerts.NewSQLStore(ctx, b.db, b.engine)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{b: b, store: st, clock: &clock{t: start}, recv: recv, interval: 10 * time.Second}
	r.notifier = alerts.NewNotifier(alerts.NotifierConfig{Store: st, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	t.Cleanup(r.notifier.Close)
	cfg := alerts.Config{
		Store: st, DB: b.db, Dialect: b.dialect, Notifier: r.notifier,
		Interval: r.interval, Dashboard: "https://apimeter.example.com", Now: r.clock.Now,
	}
	if set != nil {
		set(&cfg)
	}
	r.eval, err = alerts.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rules {
		if len(rules[i].Channels) == 0 {
			rules[i].Channels = []alerts.Channel{{Type: alerts.Webhook, URL: recv.srv.URL, Secret: secret}}
		}
		if err := rules[i].Check(); err != nil {
			t.Fatalf("rule %s: %v", rules[i].ID, err)
		}
	}
	r.eval.SetFileRules(rules)
	return r
}

// tick evaluates at t and waits for the deliveries it started.
func (r *rig) tick(t *testing.T, at time.Time) {
	t.Helper()
	r.clock.Set(at)
	if err := r.eval.Tick(context.Background()); err != nil {
		t.Fatalf("tick at %s: %v", at.Format(time.TimeOnly), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.notifier.Wait(ctx); err != nil {
		t.Fatalf("deliveries after tick at %s: %v", at.Format(time.TimeOnly), err)
	}
}

// base is a whole minute near now: stores keep what is recent.
func base() time.Time { return time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) }

func d(s string) alerts.Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return alerts.Duration(v)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
