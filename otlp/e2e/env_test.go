package e2e_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/otlp"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// env is a running apimeter: the collector's server with a real DuckDB
// store, the identity resolver (JWT user claim, a company rule), the
// Metrics API behind a read key, and the OTLP receiver, on loopback.
type env struct {
	t     testing.TB
	store envStore
	srv   *server.Server
	http  *httptest.Server
	url   string
	appID string
	key   string
	prom  *prometheus.Registry
	// events is the events table as read: with FINAL on ClickHouse, where
	// a duplicate is one row only once merged or read so.
	events string
}

// envStore is what the tests need of a store: both engines have it.
type envStore interface {
	apimeter.Store
	DB() *sql.DB
}

type envOptions struct {
	// clickhouse runs the env on the test binary's shared clickhouse-server
	// (a database of its own) instead of an embedded DuckDB file.
	clickhouse bool
	// wrap, when set, wraps the server's Ingest (to hold an export).
	wrap        func(otlp.Ingester) otlp.Ingester
	maxInFlight int
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	var st envStore
	var dialect stats.Dialect = stats.DuckDB{}
	if opts.clickhouse {
		ch := chtest.Shared(t)
		cst, err := clickhouse.Open(context.Background(), ch.DSN(chtest.Database(t)), clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st, dialect = cst, stats.ClickHouse{}
	} else {
		dst, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st = dst
	}
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rule, err := identity.ParseCompanyRule("claim:tenant")
	if err != nil {
		t.Fatal(err)
	}
	prom := prometheus.NewRegistry()
	srv := server.New(server.Config{
		Store:      st,
		Apps:       reg,
		Scrubber:   scrub.New(nil, nil, 1024),
		Identifier: identity.NewResolver(identity.Config{JWT: identity.NewJWT(identity.JWTOptions{}), Company: []identity.CompanyRule{rule}}),
		Auth:       auth.New(auth.Config{Keys: keys}),
		Registerer: prom,
	})
	var ing otlp.Ingester = srv
	if opts.wrap != nil {
		ing = opts.wrap(srv)
	}
	otlp.New(otlp.Config{Apps: reg, Ingest: ing, Check: srv.CheckEvent, Registerer: prom, MaxInFlight: opts.maxInFlight}).Register(srv)
	stats.NewHandler(stats.Config{DB: st.DB(), Dialect: dialect, QuotaPerMinute: -1}).Register(srv)
	hs := httptest.NewServer(srv)
	e := &env{t: t, store: st, srv: srv, http: hs, url: hs.URL, appID: a.ID, key: key, prom: prom, events: "events"}
	if opts.clickhouse {
		e.events = "events FINAL"
	}
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return e
}

// metrics asks the Metrics API for sum(message_count) of acme/prod by
// dims (comma-separated) over the two days around now.
func (e *env) metrics(dims string) map[string]int {
	e.t.Helper()
	from := time.Now().UTC().Add(-24 * time.Hour).Format("01/02/2006 15:04")
	to := time.Now().UTC().Add(24 * time.Hour).Format("01/02/2006 15:04")
	u := e.url + "/v1/o/acme/environments/prod/stats/" + dims + "?select=sum(message_count)&timeRange=" + url.QueryEscape(from+"~"+to)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer stats.Response
	if err := json.Unmarshal(b, &answer); err != nil || resp.StatusCode != 200 || len(answer.Environments) != 1 {
		e.t.Fatalf("Metrics API: %s %s (%v)", resp.Status, b, err)
	}
	out := map[string]int{}
	if answer.Environments[0].Dimensions == nil {
		return out
	}
	for _, d := range *answer.Environments[0].Dimensions {
		v, err := strconv.ParseFloat(fmt.Sprint(d.Metrics[0].Values[0]), 64)
		if err != nil {
			e.t.Fatalf("value of %s: %v", d.Name, err)
		}
		out[d.Name] = int(v)
	}
	return out
}

// rows returns every stored event row, all columns written out as text.
func (e *env) rows() []string {
	e.t.Helper()
	rows, err := e.store.DB().Query("SELECT * FROM " + e.events)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			e.t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if bs, ok := v.([]byte); ok {
				v = string(bs)
			}
			fmt.Fprintf(&b, "%s=%v ", cols[i], v)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// counter is the value of a counter of the env's registry with the given
// labels (0 when absent).
func (e *env) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.prom.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}
