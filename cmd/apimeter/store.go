package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
)

// storeFlags choose where events are kept.
type storeFlags struct {
	Store     string        `env:"APIMETER_STORE" placeholder:"URL" help:"Event store: empty for the embedded DuckDB file in --data, or clickhouse://host:9000/db (native protocol; needs --redis for aliases and counters). See docs/scale.md."`
	Retention time.Duration `env:"APIMETER_RETENTION" help:"With a ClickHouse store: drop a month of events once all of it is older than this (e.g. 2160h); 0 keeps everything."`
}

// eventStore is the store a server runs on and what the read side needs
// of it.
type eventStore struct {
	apimeter.Store
	DB         *sql.DB
	Dialect    stats.Dialect
	DailyTable string // "" when the store has none
	// Embedded says the alias table and counters may live in DB.
	Embedded bool
	// RebuildUsage recomputes the usage counters from the stored events.
	RebuildUsage func(ctx context.Context, ps identity.Periods) (map[identity.CounterKey]identity.Counts, error)
	// Apps lists the application ids when the store keeps them (nil:
	// the apps file in the data directory).
	Apps apps.Loader
	// Duck is the DuckDB store, nil on ClickHouse.
	Duck *duckdb.Store
}

func isClickHouse(url string) bool { return strings.HasPrefix(url, "clickhouse://") }

// openEventStore opens the store f names: DuckDB in the data directory by
// default, ClickHouse for a clickhouse:// address.
func openEventStore(ctx context.Context, f serverFlags, so duckdb.Options, log *slog.Logger) (*eventStore, error) {
	switch {
	case f.Store == "":
		st, err := duckdb.Open(ctx, filepath.Join(f.Data, DBFile), so)
		if err != nil {
			return nil, err
		}
		return &eventStore{Store: st, DB: st.DB(), Dialect: stats.DuckDB{}, DailyTable: duckdb.DailyTable, Embedded: true, Duck: st,
			RebuildUsage: func(ctx context.Context, ps identity.Periods) (map[identity.CounterKey]identity.Counts, error) {
				return identity.RebuildCounters(ctx, st.DB(), ps)
			}}, nil
	case isClickHouse(f.Store):
		if f.Redis == "" {
			return nil, fmt.Errorf("--store %s: a ClickHouse store needs --redis for the alias table and usage counters (they are shared by every collector)", f.Store)
		}
		st, err := clickhouse.Open(ctx, f.Store, clickhouse.Options{DedupeHorizon: f.DedupeHorizon, Retention: f.Retention, NoDedupe: so.NoDedupe, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--store: %w", err)
		}
		return &eventStore{Store: st, DB: st.DB(), Dialect: stats.ClickHouse{},
			Apps: func() ([]apps.App, error) { return st.Apps(context.Background()) },
			RebuildUsage: func(ctx context.Context, ps identity.Periods) (map[identity.CounterKey]identity.Counts, error) {
				return identity.RebuildCountersFrom(ctx, st.DB(), clickhouse.UsageRebuildSQL, ps)
			}}, nil
	}
	return nil, fmt.Errorf("--store %q: want empty (embedded DuckDB) or clickhouse://host:9000/db", f.Store)
}

// openAppsStore opens the ClickHouse store at url for the apps commands,
// which write no events (no dedupe set to load).
func openAppsStore(ctx context.Context, url string) (*clickhouse.Store, error) {
	if !isClickHouse(url) {
		return nil, fmt.Errorf("--store %q: want clickhouse://host:9000/db (leave it empty for the apps file in --data)", url)
	}
	st, err := clickhouse.Open(ctx, url, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	return st, nil
}
