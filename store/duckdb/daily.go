package duckdb

import (
	"context"
	"fmt"
	"time"
)

// The daily table: events pre-aggregated per UTC day by the columns the
// Metrics API most often groups and filters on, with the latency kept as a
// key so that percentiles stay exact. The Metrics API reads it for whole
// days it covers and the events table for the rest (package stats decides
// which days; see Cover there). A row stands for the events of one day with
// the same org, env, route, method, status and latency: weight is the sum of
// their weights, max_weight the largest.
//
// A pass builds every complete UTC day that is not built yet, and rebuilds
// days that received late events (an event is late when its day was built
// before the event was ingested: retries, replays, backfills). A day's
// built_at is a time no later than the ingest time of any event the pass
// did not see: readers treat a built day as not covered as soon as it has an
// event with ingested_at >= built_at, so a late event counts at once, from
// the events table, until the next pass folds it in.
const (
	DailyTable     = "events_daily"
	DailyDaysTable = "events_daily_days"
)

const dailySchema = `
CREATE TABLE IF NOT EXISTS events_daily (
  org VARCHAR NOT NULL,
  env VARCHAR NOT NULL,
  ts TIMESTAMP NOT NULL,        -- start of the UTC day
  route VARCHAR NOT NULL,
  method VARCHAR NOT NULL,
  status INTEGER NOT NULL,
  latency_ms DOUBLE NOT NULL,
  weight BIGINT NOT NULL,       -- sum of the events' weights
  max_weight BIGINT NOT NULL    -- largest weight among them
);
CREATE TABLE IF NOT EXISTS events_daily_days (
  day TIMESTAMP PRIMARY KEY,    -- start of the UTC day
  built_at TIMESTAMP NOT NULL   -- no event ingested since is in the table
);
`

// DefaultDailyInterval is how often the store looks for days to build.
const DefaultDailyInterval = 5 * time.Minute

// dailyLoop builds days at start and then every interval until Close.
// Close cancels ctx, which stops a pass under way.
func (s *Store) dailyLoop(ctx context.Context, every time.Duration) {
	defer close(s.dailyDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.BuildDaily(ctx); err != nil {
			if ctx.Err() == nil {
				s.log.Error("build daily table", "err", err)
			}
		} else if n > 0 {
			s.log.Debug("built daily table", "days", n)
		}
		select {
		case <-s.q.Stopped():
			return
		case <-t.C:
		}
	}
}

// BuildDaily builds the daily table for every complete UTC day that is not
// built yet or has late events, and returns how many days it built.
func (s *Store) BuildDaily(ctx context.Context) (int, error) {
	s.dailyMu.Lock()
	defer s.dailyMu.Unlock()
	// builtAt is read before the pass looks at the events: every event
	// committed after that look was queued after this instant or was
	// pending at it, and so was ingested at or after builtAt.
	builtAt := s.oldestPending()
	today := builtAt.Truncate(24 * time.Hour)
	rows, err := s.db.QueryContext(ctx, `
SELECT DISTINCT date_trunc('day', ts) AS day FROM events WHERE ts < $1
  AND date_trunc('day', ts) NOT IN (SELECT day FROM events_daily_days)
UNION
SELECT DISTINCT d.day FROM events e JOIN events_daily_days d ON date_trunc('day', e.ts) = d.day
  WHERE e.ingested_at >= (SELECT min(built_at) FROM events_daily_days) AND e.ingested_at >= d.built_at
ORDER BY day`, today)
	if err != nil {
		return 0, fmt.Errorf("days to build: %w", err)
	}
	var days []time.Time
	for rows.Next() {
		var d time.Time
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return 0, err
		}
		days = append(days, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for i, d := range days {
		if err := s.buildDay(ctx, d, builtAt); err != nil {
			return i, fmt.Errorf("build day %s: %w", d.Format(time.DateOnly), err)
		}
	}
	// Every other built day had no late event when this pass looked, and
	// an event committed since was ingested at or after builtAt: their
	// built_at can move up to builtAt. This keeps the readers' late-event
	// check to the rows ingested since the last pass.
	if _, err := s.db.ExecContext(ctx, `UPDATE events_daily_days SET built_at = $1 WHERE built_at < $1`, builtAt); err != nil {
		return len(days), fmt.Errorf("advance built_at: %w", err)
	}
	return len(days), nil
}

func (s *Store) buildDay(ctx context.Context, day, builtAt time.Time) error {
	tx, err := s.beginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	next := day.Add(24 * time.Hour)
	if _, err := tx.ExecContext(ctx, `DELETE FROM events_daily WHERE ts = $1`, day); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO events_daily (org, env, ts, route, method, status, latency_ms, weight, max_weight)
SELECT org, env, $1, route, method, status, latency_ms, SUM(weight), MAX(weight)
FROM events WHERE ts >= $1 AND ts < $2
GROUP BY org, env, route, method, status, latency_ms`, day, next); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO events_daily_days (day, built_at) VALUES ($1, $2)`, day, builtAt); err != nil {
		return err
	}
	return tx.Commit()
}

// oldestPending is the earliest registration time of a batch queued but not
// yet answered, or now when there is none.
func (s *Store) oldestPending() time.Time {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	oldest := time.Now().UTC()
	for _, t := range s.pending {
		if t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}
