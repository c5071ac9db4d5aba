// Package usagetest opens a store's usage tables (package meter's Store)
// beside its event store, on the embedded DuckDB store and on ClickHouse,
// for the tests of the packages that read meters (meter, billing, alerts):
// one way to open them, so that those tests run against the same stores.
package usagetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// Engine is one store's usage tables beside its event store.
type Engine struct {
	Usage   meter.Store
	Dialect meter.Dialect
	Events  apimeter.Store
	// Fold brings the meters' aggregates up to date.
	Fold func(context.Context) error
}

// Options say how the usage tables are opened.
type Options struct {
	// ManualFold turns the stores' fold loops off (and, on ClickHouse,
	// the margin left for other collectors' commits): the test calls
	// Engine.Fold when it wants the aggregates current.
	ManualFold bool
}

// Open opens the usage tables of events, a DuckDB or ClickHouse store
// the test has opened; they are closed when the test ends.
func Open(t testing.TB, events apimeter.Store, o Options) Engine {
	t.Helper()
	ctx := context.Background()
	switch st := events.(type) {
	case *duckdb.Store:
		opts := duckdb.UsageOptions{}
		if o.ManualFold {
			opts.FoldInterval = -1
		}
		u, err := st.OpenUsage(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return Engine{u, meter.DuckDB{}, st, u.FoldMeters}
	case *clickhouse.Store:
		opts := clickhouse.UsageOptions{}
		if o.ManualFold {
			opts.FoldInterval, opts.FoldMargin = -1, -1
		}
		u, err := st.OpenUsage(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return Engine{u, meter.ClickHouse{}, st, u.FoldMeters}
	}
	t.Fatalf("usagetest: no usage tables for %T", events)
	return Engine{}
}

// Each runs f on a new embedded DuckDB store and on a new ClickHouse
// database (chtest: skipped where no clickhouse-server is installed,
// unless APIMETER_REQUIRE_CLICKHOUSE is set).
func Each(t *testing.T, o Options, f func(t *testing.T, e Engine)) {
	t.Run("DuckDB", func(t *testing.T) {
		st, err := duckdb.Open(context.Background(), filepath.Join(t.TempDir(), "u.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, Open(t, st, o))
	})
	t.Run("ClickHouse", func(t *testing.T) {
		st, err := clickhouse.Open(context.Background(), chtest.Shared(t).DSN(chtest.Database(t)), clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, Open(t, st, o))
	})
}
