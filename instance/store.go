package instance

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
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
)

// StoreConfig name the store of a command that opens one.
type StoreConfig struct {
	Store string `env:"APIMETER_STORE" placeholder:"URL" help:"Store of events, application ids and keys: empty or duckdb for the embedded DuckDB file in --data; clickhouse://[user:password@]host:9000/db for ClickHouse, shared by several processes (serve and consume then need --redis)."`
}

// clickhouse reports whether the store is ClickHouse.
func (f StoreConfig) ClickHouse() bool { return strings.HasPrefix(f.Store, "clickhouse://") }

// String is the store as messages and logs name it: never its password.
func (f StoreConfig) String() string {
	if f.Store == "" {
		return "duckdb"
	}
	return clickhouse.Redact(f.Store)
}

func (f *StoreConfig) Validate() error {
	switch {
	case f.Store == "" || f.Store == "duckdb":
		return nil
	case f.ClickHouse():
		if _, err := clickhouse.ParseDSN(f.Store); err != nil {
			return fmt.Errorf("--store: %w", err)
		}
		return nil
	}
	return fmt.Errorf("--store %s: want duckdb (the embedded store in --data) or clickhouse://host:9000/db", f)
}

// StoreError is a store that could not be opened: one line naming the
// store (without its password) and what is wrong. Server errors can span
// lines (ClickHouse exceptions); the command prints one.
type StoreError struct {
	Store string // the --store value, password left out
	Err   error
}

func (e *StoreError) Error() string {
	return "--store " + e.Store + ": " + strings.Join(strings.Fields(e.Err.Error()), " ")
}

func (e *StoreError) Unwrap() error { return e.Err }

// eventStore is what a server needs of its store, whatever the engine.
type eventStore interface {
	apimeter.Store
	// DB is the database the Metrics API and the usage rebuild read.
	DB() *sql.DB
	// Ready is the store's check in /readyz.
	Ready(ctx context.Context) error
}

// engine is what differs between the stores around the event store: how
// its events are read, and whether several processes share it.
type engine struct {
	// Dialect renders the Metrics API's SQL; Rollups says the store keeps
	// the rollup tables (package rollup).
	Dialect stats.Dialect
	Rollups bool
	// RebuildUsage sums the events into usage counters (--usage-rebuild).
	RebuildUsage func(ctx context.Context, db *sql.DB, ps identity.Periods) (map[identity.CounterKey]identity.Counts, error)
	// Shared is true when several processes write the store at once:
	// what they must agree on (application ids, keys, aliases, usage
	// counters) cannot live in one process's data directory or memory.
	Shared bool
}

// Options are what benchmarks and tests set beyond the flags.
type Options struct {
	// NoDedupe turns the store's idempotency check off (bench ingest
	// --no-dedupe).
	NoDedupe bool
	// wire adds parts to the instance (routes, background work) before it
	// serves its first request.
	wire func(in *Instance) error
}

// openStore opens the store f names, with the catalog of its application
// ids and keys.
func openStore(ctx context.Context, f Config, o Options, log *slog.Logger) (eventStore, engine, *catalog, error) {
	if !f.ClickHouse() {
		memoryLimit, dedupeMemory, err := f.memorySizes()
		if err != nil {
			return nil, engine{}, nil, err
		}
		st, err := duckdb.Open(ctx, filepath.Join(f.Data, DBFile), duckdb.Options{
			DedupeHorizon: f.DedupeHorizon, DedupeMemory: dedupeMemory, MemoryLimit: memoryLimit,
			DailyInterval: f.DailyInterval, Retention: f.Retention, NoDedupe: o.NoDedupe, Logger: log,
		})
		if err != nil {
			return nil, engine{}, nil, err
		}
		cat, err := dirCatalog(f.Data)
		if err != nil {
			st.Close()
			return nil, engine{}, nil, err
		}
		return st, engine{Dialect: stats.DuckDB{}, Rollups: true, RebuildUsage: identity.RebuildCounters}, cat, nil
	}
	st, err := clickhouse.Open(ctx, f.Store, clickhouse.Options{
		DedupeHorizon: f.DedupeHorizon, Retention: f.Retention, NoDedupe: o.NoDedupe, Logger: log,
	})
	if err != nil {
		return nil, engine{}, nil, &StoreError{Store: f.StoreConfig.String(), Err: err}
	}
	cat, err := tableCatalog(st)
	if err != nil {
		st.Close()
		return nil, engine{}, nil, &StoreError{Store: f.StoreConfig.String(), Err: err}
	}
	eng := engine{
		Dialect: stats.ClickHouse{},
		Rollups: true,
		RebuildUsage: func(ctx context.Context, db *sql.DB, ps identity.Periods) (map[identity.CounterKey]identity.Counts, error) {
			return identity.RebuildCountersFrom(ctx, db, clickhouse.UsageRebuildSQL, ps)
		},
		Shared: true,
	}
	return st, eng, cat, nil
}

// catalog is where application ids and read and admin keys live: files in
// the data directory beside the embedded store; tables of the store when
// several processes share it, so that every collector knows every id and
// key and a key revoked through one is refused by all.
type catalog struct {
	Apps *apps.Registry
	Keys *auth.Keys
	// Tokens are the customer portal's tokens, kept where the keys are.
	Tokens *token.Tokens
	// createApp adds an application id for (org, env).
	createApp func(ctx context.Context, org, env string) (apps.App, error)
}

func (c *catalog) CreateApp(ctx context.Context, org, env string) (apps.App, error) {
	return c.createApp(ctx, org, env)
}

// catalogTables are a shared store's tables of application ids and keys
// (store/clickhouse).
type catalogTables interface {
	CreateApp(ctx context.Context, org, env string) (apps.App, error)
	Apps(ctx context.Context) ([]apps.App, error)
	auth.Source
	token.Source
}

// dirCatalog is the catalog of data directory dir.
func dirCatalog(dir string) (*catalog, error) {
	reg, err := apps.Open(dir)
	if err != nil {
		return nil, err
	}
	keys, err := auth.Open(dir)
	if err != nil {
		return nil, err
	}
	toks, err := token.Open(dir)
	if err != nil {
		return nil, err
	}
	return &catalog{Apps: reg, Keys: keys, Tokens: toks, createApp: func(_ context.Context, org, env string) (apps.App, error) {
		return apps.Create(dir, org, env)
	}}, nil
}

// tableCatalog is the catalog in the tables of t. Both are read again as
// the files are: on an unknown id or key (at most once a second) and, for
// keys, once a second anyway so that a revocation holds everywhere.
func tableCatalog(t catalogTables) (*catalog, error) {
	reg, err := apps.OpenLoader(func() ([]apps.App, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return t.Apps(ctx)
	})
	if err != nil {
		return nil, err
	}
	keys, err := auth.OpenSource(t)
	if err != nil {
		return nil, err
	}
	toks, err := token.OpenSource(t)
	if err != nil {
		return nil, err
	}
	return &catalog{Apps: reg, Keys: keys, Tokens: toks, createApp: t.CreateApp}, nil
}

// OpenCatalog opens the catalog of the store f names, for the commands
// that manage ids and keys without a server (apps, keys). close closes
// what it opened.
func OpenCatalog(ctx context.Context, f StoreConfig, data string) (cat *catalog, close func() error, err error) {
	if !f.ClickHouse() {
		cat, err := dirCatalog(data)
		return cat, func() error { return nil }, err
	}
	// No dedupe set: these commands append no events, so they need not
	// load the ids of the horizon.
	st, err := clickhouse.Open(ctx, f.Store, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return nil, nil, &StoreError{Store: f.String(), Err: err}
	}
	if cat, err = tableCatalog(st); err != nil {
		st.Close()
		return nil, nil, &StoreError{Store: f.String(), Err: err}
	}
	return cat, st.Close, nil
}

// sharedSettings are values every process on a shared store agrees on:
// the first written of a name wins (store/clickhouse).
type sharedSettings interface {
	Setting(ctx context.Context, name, value string) (string, error)
}

// fingerprintCheck is what the fingerprint key's check fingerprints.
const fingerprintCheck = "apimeter: fingerprint key check"

// checkFingerprintKey refuses to start a process whose fingerprint key
// (fingerprint.key in --data) differs from the one the other processes on
// a shared store use: its fingerprints of the same API key would differ
// from theirs, and usage per API key and alias key ids with them. The key
// stays on each machine's disk, never in the store, so that the store
// alone does not let anyone test guesses of a secret against its
// fingerprints; the store holds only the keyed fingerprint of a constant,
// which says nothing of the key.
func checkFingerprintKey(ctx context.Context, st any, scrubber *scrub.Scrubber) error {
	s, ok := st.(sharedSettings)
	if !ok {
		return nil
	}
	mine := scrubber.Fingerprint(fingerprintCheck)
	theirs, err := s.Setting(ctx, "fingerprint_key_check", mine)
	if err != nil {
		return fmt.Errorf("fingerprint key: %w", err)
	}
	if theirs != mine {
		return fmt.Errorf("fingerprint key: %s in --data is not the one the other processes on this store use; copy theirs to every machine (docs/scale.md)", scrub.FingerprintKeyFile)
	}
	return nil
}
