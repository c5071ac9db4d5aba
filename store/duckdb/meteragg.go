package duckdb

import (
	"context"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/meter"
)

// meterAggSchema holds the meters' aggregates and their folds (package
// meter, agg.go).
const meterAggSchema = `
CREATE TABLE IF NOT EXISTS meter_agg (
  def VARCHAR NOT NULL,       -- meter.Def of the meter
  span_ms BIGINT NOT NULL,    -- an hour, a UTC day, or a day plus its shift from UTC midnight
  version BIGINT NOT NULL,    -- the fold that wrote the row
  bucket_ms BIGINT NOT NULL,  -- the hour's or day's start, epoch ms
  subject VARCHAR NOT NULL,
  gv VARCHAR[] NOT NULL,      -- NULL, then the groupBy values by key
  n DOUBLE NOT NULL,
  sx DOUBLE,
  mn DOUBLE,
  mx DOUBLE,
  lt BIGINT,
  lv DOUBLE
);
CREATE TABLE IF NOT EXISTS meter_folds (
  def VARCHAR NOT NULL,
  span_ms BIGINT NOT NULL,
  from_ms BIGINT NOT NULL,
  to_ms BIGINT NOT NULL,
  version BIGINT NOT NULL,
  built_ms BIGINT NOT NULL,
  next_ms BIGINT NOT NULL
);
`

// DefaultFoldInterval is how often the meters' aggregates are brought up
// to date.
const DefaultFoldInterval = meter.DefaultFoldInterval

// FoldMeters brings every meter's aggregates up to date (the fold loop
// does it every FoldInterval).
func (u *Usage) FoldMeters(ctx context.Context) error {
	u.foldMu.Lock()
	defer u.foldMu.Unlock()
	ms, err := u.allMeters(ctx)
	if err != nil {
		return err
	}
	return meter.Fold(ctx, meter.FoldConfig{DB: u.st.db, Dialect: meter.DuckDB{}, Built: u.built}, ms)
}

// built is the start of a fold pass (meter.FoldConfig.Built): for usage
// events, the ingest time of the commit under way, if any, else now; for
// API calls, the oldest batch not yet answered.
func (u *Usage) built(call bool) time.Time {
	if call {
		return u.st.oldestPending()
	}
	u.commitMu.Lock()
	defer u.commitMu.Unlock()
	now := time.Now()
	if u.committing != 0 && u.committing < now.UnixMilli() {
		return time.UnixMilli(u.committing)
	}
	return now
}

// setCommitting records the ingest time of the commit under way (0: none).
func (u *Usage) setCommitting(ms int64) {
	u.commitMu.Lock()
	u.committing = ms
	u.commitMu.Unlock()
}

// allMeters lists the meters of every org and env.
func (u *Usage) allMeters(ctx context.Context) ([]meter.Meter, error) {
	rows, err := u.st.db.QueryContext(ctx, `SELECT org, env, body FROM meters ORDER BY org, env, slug`)
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
		m, err := decodeMeter(body, org, env)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
