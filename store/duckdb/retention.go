package duckdb

import (
	"context"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/rollup"
)

// Retention drops whole UTC days of events once all of the day is older
// than Options.Retention, as the ClickHouse store drops whole months: the
// same flag, the same meaning, a finer unit. The rollup rows and folded
// periods of those days go in the same transaction, so the Metrics API,
// which reads rollups where they cover a range and events elsewhere, keeps
// answering what a scan of the remaining events answers. A DELETE only
// marks rows; the CHECKPOINT after it writes the table without them and
// frees the blocks they filled, which later writes reuse: the file stops
// growing but does not shrink (DuckDB cannot shorten its file; a smaller
// copy is made offline with COPY FROM DATABASE).
//
// The dedupe set needs nothing: it holds ids by ingest time, for the
// dedupe horizon only; an id of a dropped event that is sent again within
// the horizon is still a duplicate, and one sent later is stored and
// dropped again at the next pass, its day being past the retention.

// DefaultRetentionInterval is how often expired days are looked for.
const DefaultRetentionInterval = time.Hour

// Dropped says what a retention pass removed.
type Dropped struct {
	// Before is the first instant kept: every event with a request time
	// before it was deleted.
	Before time.Time
	Events int64
}

// DropExpired deletes the events of the UTC days that end at or before
// now minus the retention, with their rollup rows and folded periods, then
// checkpoints so that their space is reused.
func (s *Store) DropExpired(ctx context.Context, now time.Time) (Dropped, error) {
	if s.opts.Retention <= 0 {
		return Dropped{}, nil
	}
	before := now.Add(-s.opts.Retention).UTC().Truncate(24 * time.Hour)
	d := Dropped{Before: before}
	// One pass at a time with the rollup fold, which reads the events
	// and writes the same tables.
	s.dailyMu.Lock()
	defer s.dailyMu.Unlock()
	// As BuildRollups: the statements run to their end even when Close
	// cancels ctx, and the deferred Rollback ends a transaction cut short.
	ctx = context.WithoutCancel(ctx)
	tx, err := s.beginTx(ctx)
	if err != nil {
		return d, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE ts < $1`, before)
	if err != nil {
		return d, fmt.Errorf("retention: delete events: %w", err)
	}
	d.Events, _ = res.RowsAffected()
	for _, f := range rollup.Families {
		for _, g := range rollup.Grains {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+f.Table(g)+` WHERE ts < $1`, before); err != nil {
				return d, fmt.Errorf("retention: delete from %s: %w", f.Table(g), err)
			}
		}
	}
	for _, t := range []string{rollup.TopTable, rollup.CallsTable} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE ts < $1`, before); err != nil {
			return d, fmt.Errorf("retention: delete from %s: %w", t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+rollup.PeriodsTable+` WHERE start < $1`, before); err != nil {
		return d, fmt.Errorf("retention: delete folded periods: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return d, fmt.Errorf("retention: commit: %w", err)
	}
	if d.Events > 0 {
		if _, err := s.db.ExecContext(ctx, `CHECKPOINT`); err != nil {
			// The rows are gone either way; the next automatic checkpoint
			// frees their blocks.
			s.log.Warn("retention: checkpoint", "err", err)
		}
		s.log.Info("retention: dropped events", "before", before.Format(time.DateOnly), "events", d.Events)
	}
	return d, nil
}
