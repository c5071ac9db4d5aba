package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/meter"
)

// meterAggTables hold the meters' aggregates and their folds (package
// meter, agg.go). Every collector on the database folds; the folds table
// keeps, per (meter, span, range), the newest fold (ReplacingMergeTree),
// and readers take per hour the rows of the newest fold recorded, so that
// two collectors folding the same hours, or a fold cut short, never count
// twice. The version columns are unsigned: 18.16 versions replacing rows
// by an unsigned number or a date only.
var meterAggTables = []string{
	`CREATE TABLE IF NOT EXISTS meter_agg (
  def String,
  span_ms Int64,
  version UInt64,
  bucket_ms Int64,
  subject String,
  gv Array(Nullable(String)),
  n Float64,
  sx Nullable(Float64),
  mn Nullable(Float64),
  mx Nullable(Float64),
  lt Nullable(Int64),
  lv Nullable(Float64)
) ENGINE = MergeTree
ORDER BY (def, span_ms, bucket_ms, subject)`,
	`CREATE TABLE IF NOT EXISTS meter_folds (
  def String,
  span_ms Int64,
  from_ms Int64,
  to_ms Int64,
  version UInt64,
  built_ms Int64,
  next_ms Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (def, span_ms, from_ms, to_ms)`,
	// The hours of the usage events of each insert with their ingest
	// time, so that a meter query finds the hours with events stored
	// since the last fold pass without reading every event's ingest
	// time.
	`CREATE TABLE IF NOT EXISTS usage_hours (
  org String,
  env String,
  type String,
  h Int64,
  last_ms Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(last_ms, 1000), 'UTC'))
ORDER BY (org, env, type, last_ms)`,
	`CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hours_mv TO usage_hours AS
SELECT org, env, type, intDiv(ts_ms, 3600000) * 3600000 AS h, max(ingested_ms) AS last_ms FROM usage_events GROUP BY org, env, type, h`,
}

// DefaultFoldMargin is how long before a fold pass an event may have been
// committed by another collector and still be unseen (an INSERT's
// timeout is two minutes).
const DefaultFoldMargin = 5 * time.Minute

// DefaultFoldInterval is how often the meters' aggregates are brought up
// to date.
const DefaultFoldInterval = meter.DefaultFoldInterval

// openMeterAgg creates the aggregate tables and the usage events'
// millisecond ingest time (older tables get it as a column computed from
// the seconds of ingested_at).
func (u *Usage) openMeterAgg(ctx context.Context) error {
	var n uint64
	if err := u.st.conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = currentDatabase() AND table = 'usage_events' AND name = 'ingested_ms'`).Scan(&n); err != nil {
		return fmt.Errorf("clickhouse %s: usage columns: %w", u.st.addr, err)
	}
	if n == 0 {
		if err := u.st.conn.Exec(ctx, `ALTER TABLE usage_events ADD COLUMN ingested_ms Int64 DEFAULT toInt64(toUInt32(ingested_at)) * 1000`); err != nil {
			return fmt.Errorf("clickhouse %s: add usage_events.ingested_ms: %w", u.st.addr, err)
		}
	}
	for _, q := range meterAggTables {
		if err := u.st.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("clickhouse %s: create meter aggregate tables: %w", u.st.addr, err)
		}
	}
	return nil
}

// FoldMeters brings every meter's aggregates up to date (the fold loop
// does it every FoldInterval).
func (u *Usage) FoldMeters(ctx context.Context) error {
	u.foldMu.Lock()
	defer u.foldMu.Unlock()
	ms, err := u.allMeters(ctx)
	if err != nil {
		return err
	}
	return meter.Fold(ctx, meter.FoldConfig{DB: u.st.db, Dialect: meter.ClickHouse{}, Built: u.built}, ms)
}

// built is the start of a fold pass (meter.FoldConfig.Built): FoldMargin
// ago, for the commits of other collectors, and no later than this
// process's usage commit under way.
func (u *Usage) built(call bool) time.Time {
	u.commitMu.Lock()
	defer u.commitMu.Unlock()
	t := time.Now().Add(-u.opts.FoldMargin)
	if !call && u.committing != 0 && u.committing < t.UnixMilli() {
		t = time.UnixMilli(u.committing)
	}
	return t
}

func (u *Usage) setCommitting(ms int64) {
	u.commitMu.Lock()
	u.committing = ms
	u.commitMu.Unlock()
}

// allMeters lists the meters of every org and env.
func (u *Usage) allMeters(ctx context.Context) ([]meter.Meter, error) {
	rows, err := u.st.conn.Query(ctx, `SELECT org, env, body FROM meters FINAL WHERE deleted = 0 ORDER BY org, env, slug`)
	if err != nil {
		return nil, fmt.Errorf("list meters: %w", err)
	}
	defer rows.Close()
	var out []meter.Meter
	for rows.Next() {
		var org, env, body string
		if err := rows.Scan(&org, &env, &body); err != nil {
			return nil, err
		}
		var m meter.Meter
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			return nil, fmt.Errorf("stored meter: %w", err)
		}
		m.Org, m.Env = org, env
		out = append(out, m)
	}
	return out, rows.Err()
}
