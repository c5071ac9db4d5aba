package meter

import (
	"context"
	"database/sql"
	"errors"
)

// AppendResult says what an AppendUsage did with a batch.
type AppendResult struct {
	Stored     int
	Duplicates int // (org, env, source, id) already stored within the horizon, or repeated in the batch
}

// Store keeps usage events and meter definitions; store/duckdb and
// store/clickhouse implement it.
type Store interface {
	// AppendUsage stores events once per (org, env, source, id) within
	// the store's dedupe horizon and returns only after they are durable.
	// Concurrent calls share commits.
	AppendUsage(ctx context.Context, events []Event) (AppendResult, error)
	// PutMeter creates or replaces the meter of (m.Org, m.Env, m.Slug).
	PutMeter(ctx context.Context, m Meter) error
	// Meters lists the meters of (org, env), by slug.
	Meters(ctx context.Context, org, env string) ([]Meter, error)
	// DeleteMeter deletes the meter of (org, env) with this slug, or
	// returns ErrNotFound.
	DeleteMeter(ctx context.Context, org, env, slug string) error
	// DB is the database meter queries read.
	DB() *sql.DB
	Close() error
}

// ErrNotFound is returned for a meter that does not exist.
var ErrNotFound = errors.New("meter not found")
