package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/apimeter/apimeter/rollup"
)

// The rollup tables (package rollup): events summed per UTC hour and per
// UTC day by the columns the Metrics API most often groups and filters on.
// The Metrics API reads the periods they cover and the events table for the
// rest (package stats decides which; see FindCover there).
//
// A pass folds every complete hour that is not folded yet, and folds again
// the hours that received late events (an event is late when its period
// was folded before the event was ingested: retries, replays, backfills);
// then it folds the days of those hours from the hour tables. A period's
// built_at is a time no later than the ingest time of any event the pass
// did not see: readers treat a period as not covered as soon as it has an
// event with ingested_at >= built_at, so a late event counts at once, from
// the events table, until the next pass folds it in.
var dailySchema = rollup.DuckDBSchema()

// DefaultDailyInterval is how often the store looks for periods to fold.
const DefaultDailyInterval = time.Minute

// maxFoldHours bounds the hours one fold transaction reads, so that
// folding a large backlog does not hold all of it in one aggregate.
const maxFoldHours = 24 * 7

// dailyLoop folds periods (and drops expired days, with a retention) at
// start and then every interval until Close.
// Close cancels ctx, which stops a pass under way.
func (s *Store) dailyLoop(ctx context.Context, every time.Duration) {
	defer close(s.dailyDone)
	t := time.NewTicker(every)
	defer t.Stop()
	var lastRetention time.Time
	for {
		if s.opts.Retention > 0 && s.opts.RetentionInterval > 0 && time.Since(lastRetention) >= s.opts.RetentionInterval {
			lastRetention = time.Now()
			if _, err := s.DropExpired(ctx, lastRetention); err != nil && ctx.Err() == nil {
				s.log.Error("retention", "err", err)
			}
		}
		if s.opts.DailyInterval >= 0 {
			if n, err := s.BuildRollups(ctx); err != nil {
				if ctx.Err() == nil {
					s.log.Error("fold rollups", "err", err)
				}
			} else if n > 0 {
				s.log.Debug("folded rollups", "hours", n)
			}
		}
		select {
		case <-s.q.Stopped():
			return
		case <-t.C:
		}
	}
}

// BuildRollups folds every complete UTC hour (and day) that is not folded
// yet or has late events into the rollup tables, and returns how many
// hours with events it folded.
func (s *Store) BuildRollups(ctx context.Context) (int, error) {
	s.dailyMu.Lock()
	defer s.dailyMu.Unlock()
	// The pass's own queries run to their end even when Close cancels ctx
	// (a cancelled query's connection goes back to the pool on a goroutine
	// of database/sql's, possibly after Close); ctx is checked between
	// steps and stops the fold transactions (beginTx).
	qctx := context.WithoutCancel(ctx)
	// builtAt is read before the pass looks at the events: every event
	// committed after that look was queued after this instant or was
	// pending at it, and so was ingested at or after builtAt.
	builtAt := s.oldestPending()
	curHour := builtAt.Truncate(time.Hour)
	periods := map[rollup.Grain]map[int64]bool{rollup.Hour: {}, rollup.Day: {}}
	rows, err := s.db.QueryContext(qctx, `SELECT grain, start FROM `+rollup.PeriodsTable)
	if err != nil {
		return 0, fmt.Errorf("folded periods: %w", err)
	}
	for rows.Next() {
		var g string
		var t time.Time
		if err := rows.Scan(&g, &t); err != nil {
			rows.Close()
			return 0, err
		}
		periods[rollup.Grain(g)][t.Unix()] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// Hours to fold: those with events that are not folded, and folded
	// ones with late events. Hours without events are folded too (empty),
	// so that readers find whole runs of folded periods.
	var first time.Time
	var firstNull *time.Time
	if err := s.db.QueryRowContext(qctx, `SELECT min(ts) FROM events WHERE ts < $1`, curHour).Scan(&firstNull); err != nil {
		return 0, fmt.Errorf("first event: %w", err)
	}
	if firstNull == nil {
		return 0, nil
	}
	first = firstNull.UTC().Truncate(time.Hour)
	todo := map[int64]bool{}
	var firstTodo time.Time
	for h := first; h.Before(curHour); h = h.Add(time.Hour) {
		if !periods[rollup.Hour][h.Unix()] {
			todo[h.Unix()] = true
			if firstTodo.IsZero() {
				firstTodo = h
			}
		}
	}
	// The hours with events among them (the others are recorded as folded
	// without reading anything), and the folded hours with late events.
	withEvents := map[int64]bool{}
	if !firstTodo.IsZero() {
		fresh := map[int64]bool{}
		if err := s.hours(qctx, fresh, `SELECT DISTINCT date_trunc('hour', ts) FROM events WHERE ts >= $1 AND ts < $2`, firstTodo, curHour); err != nil {
			return 0, fmt.Errorf("hours with events: %w", err)
		}
		for h := range fresh {
			if todo[h] {
				withEvents[h] = true
			}
		}
	}
	if err := s.hours(qctx, withEvents, `
SELECT DISTINCT p.start FROM events e JOIN `+rollup.PeriodsTable+` p ON p.grain = 'hour' AND date_trunc('hour', e.ts) = p.start
WHERE e.ingested_at >= (SELECT min(built_at) FROM `+rollup.PeriodsTable+`) AND e.ingested_at >= p.built_at`); err != nil {
		return 0, fmt.Errorf("late events: %w", err)
	}
	for h := range withEvents {
		todo[h] = true
	}
	// Runs of hours with events, at most maxFoldHours long, each folded
	// in one transaction (hours between them folded again, harmlessly);
	// the other hours to do are recorded empty.
	var runs, empty [][2]time.Time
	extend := func(rs [][2]time.Time, h time.Time, limit time.Duration) [][2]time.Time {
		if n := len(rs); n > 0 && h.Sub(rs[n-1][0]) < limit {
			rs[n-1][1] = h.Add(time.Hour)
			return rs
		}
		return append(rs, [2]time.Time{h, h.Add(time.Hour)})
	}
	days := map[int64]bool{}
	for h := first; h.Before(curHour); h = h.Add(time.Hour) {
		switch {
		case withEvents[h.Unix()]:
			runs = extend(runs, h, maxFoldHours*time.Hour)
			days[h.Truncate(24*time.Hour).Unix()] = true
		case todo[h.Unix()] && (len(runs) == 0 || !h.Before(runs[len(runs)-1][1])):
			if n := len(empty); n > 0 && empty[n-1][1].Equal(h) {
				empty[n-1][1] = h.Add(time.Hour)
			} else {
				empty = append(empty, [2]time.Time{h, h.Add(time.Hour)})
			}
		}
	}
	for _, r := range runs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := s.fold(ctx, rollup.Hour, r[0], r[1], builtAt, true); err != nil {
			return 0, fmt.Errorf("fold hours from %s: %w", r[0].Format(time.RFC3339), err)
		}
	}
	for _, r := range empty {
		if err := s.fold(ctx, rollup.Hour, r[0], r[1], builtAt, false); err != nil {
			return 0, fmt.Errorf("record empty hours from %s: %w", r[0].Format(time.RFC3339), err)
		}
	}
	// Days: those of the hours folded now, and the complete days not
	// folded yet, from the hour tables, in runs of up to a year.
	curDay := curHour.Truncate(24 * time.Hour)
	var dayRuns [][2]time.Time
	for d := first.Truncate(24 * time.Hour); d.Before(curDay); d = d.Add(24 * time.Hour) {
		if !days[d.Unix()] && periods[rollup.Day][d.Unix()] {
			continue
		}
		if n := len(dayRuns); n > 0 && dayRuns[n-1][1].Equal(d) && d.Sub(dayRuns[n-1][0]) < 366*24*time.Hour {
			dayRuns[n-1][1] = d.Add(24 * time.Hour)
		} else {
			dayRuns = append(dayRuns, [2]time.Time{d, d.Add(24 * time.Hour)})
		}
	}
	for _, r := range dayRuns {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := s.fold(ctx, rollup.Day, r[0], r[1], builtAt, true); err != nil {
			return 0, fmt.Errorf("fold days from %s: %w", r[0].Format(time.DateOnly), err)
		}
	}
	if err := s.rankMissing(ctx); err != nil {
		return len(withEvents), err
	}
	// Every other folded period had no late event when this pass looked,
	// and an event committed since was ingested at or after builtAt: their
	// built_at can move up to builtAt. This keeps the readers' late-event
	// check to the rows ingested since the last pass.
	if _, err := s.db.ExecContext(qctx, `UPDATE `+rollup.PeriodsTable+` SET built_at = $1 WHERE built_at < $1`, builtAt); err != nil {
		return len(withEvents), fmt.Errorf("advance built_at: %w", err)
	}
	return len(withEvents), nil
}

// hours adds the hours that query returns to set.
func (s *Store) hours(ctx context.Context, set map[int64]bool, query string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return err
		}
		set[t.Unix()] = true
	}
	return rows.Err()
}

// fold replaces the rows of [from, to) of every family's g table: hours
// from the events, days from the hour tables (folded before them), and
// for days the copy of the companies' calls (rollup.CallsTable).
// With read false the range has no events: it is only recorded.
func (s *Store) fold(ctx context.Context, g rollup.Grain, from, to, builtAt time.Time, read bool) error {
	tx, err := s.beginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, f := range rollup.FoldOrder() {
		if !read {
			break
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+f.Table(g)+` WHERE ts >= $1 AND ts < $2`, from, to); err != nil {
			return err
		}
		q := rollup.DuckDBFoldHours(f)
		if g == rollup.Day {
			q = rollup.DuckDBFoldDays(f)
		}
		if _, err := tx.ExecContext(ctx, q, from, to); err != nil {
			return fmt.Errorf("%s: %w", f.Table(g), err)
		}
	}
	if err := rank(ctx, tx, g, from, to); err != nil {
		return err
	}
	if g == rollup.Day && read {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+rollup.CallsTable+` WHERE ts >= $1 AND ts < $2`, from, to); err != nil {
			return fmt.Errorf("%s: %w", rollup.CallsTable, err)
		}
		if _, err := tx.ExecContext(ctx, rollup.DuckDBCopyCalls(), from, to); err != nil {
			return fmt.Errorf("%s: %w", rollup.CallsTable, err)
		}
	}
	step := stepOf(g)
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO `+rollup.PeriodsTable+` (grain, start, built_at)
SELECT $1, generate_series, $4 FROM generate_series($2::TIMESTAMP, $3::TIMESTAMP - INTERVAL `+step+`, INTERVAL `+step+`)`, string(g), from, to, builtAt); err != nil {
		return fmt.Errorf("record periods: %w", err)
	}
	return tx.Commit()
}

func stepOf(g rollup.Grain) string {
	if g == rollup.Day {
		return "1 day"
	}
	return "1 hour"
}

// rank replaces the ranked values (rollup.TopTable) of the periods of g in
// [from, to) from the families' rows of those periods, written before.
func rank(ctx context.Context, tx *sql.Tx, g rollup.Grain, from, to time.Time) error {
	for _, f := range rollup.Families {
		if f.Rank == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+rollup.TopTable+` WHERE grain = $1 AND dim = $2 AND ts >= $3 AND ts < $4`, string(g), f.Rank, from, to); err != nil {
			return fmt.Errorf("%s: %w", rollup.TopTable, err)
		}
		if _, err := tx.ExecContext(ctx, rollup.DuckDBRank(f, g), from, to, stepOf(g)); err != nil {
			return fmt.Errorf("rank %s: %w", f.Rank, err)
		}
	}
	return nil
}

// rankMissing ranks the folded periods that have no ranks: those folded
// by a version of the store that did not rank (rollup.TopTable is newer
// than the rollups). Until they are ranked, the Metrics API answers top-N
// queries over them by summing every value's rows, as before.
func (s *Store) rankMissing(ctx context.Context) error {
	// As BuildRollups: the pass's statements run to their end even when
	// Close cancels ctx, which is checked between transactions.
	qctx := context.WithoutCancel(ctx)
	rows, err := s.db.QueryContext(qctx, `SELECT p.grain, p.start FROM `+rollup.PeriodsTable+` p
WHERE NOT EXISTS (SELECT 1 FROM `+rollup.TopTable+` t WHERE t.rk = 0 AND t.grain = p.grain AND t.ts = p.start)
ORDER BY p.grain, p.start`)
	if err != nil {
		return fmt.Errorf("unranked periods: %w", err)
	}
	type run struct {
		g        rollup.Grain
		from, to time.Time
	}
	var runs []run
	for rows.Next() {
		var g string
		var t time.Time
		if err := rows.Scan(&g, &t); err != nil {
			rows.Close()
			return err
		}
		gr := rollup.Grain(g)
		step := time.Hour
		limit := maxFoldHours * time.Hour
		if gr == rollup.Day {
			step, limit = 24*time.Hour, 31*24*time.Hour
		}
		if n := len(runs); n > 0 && runs[n-1].g == gr && runs[n-1].to.Equal(t) && t.Sub(runs[n-1].from) < limit {
			runs[n-1].to = t.Add(step)
		} else {
			runs = append(runs, run{gr, t, t.Add(step)})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range runs {
		if err := ctx.Err(); err != nil {
			return err
		}
		tx, err := s.beginTx(ctx)
		if err != nil {
			return err
		}
		if err := rank(qctx, tx, r.g, r.from, r.to); err != nil {
			tx.Rollback()
			return fmt.Errorf("rank %s from %s: %w", r.g, r.from.Format(time.RFC3339), err)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
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

// migrate creates the tables. A store whose days were folded before
// rollup.CallsTable existed has them copied by folding them again: their
// day periods are forgotten, and the next pass folds every day from the
// hour tables (readers take those days from the hour tables meanwhile).
//
// One transaction: a store that stopped between creating the table and
// forgetting the days would read those days' empty copy.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	var had int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = $1`, rollup.CallsTable).Scan(&had); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schema+dailySchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if had == 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+rollup.PeriodsTable+` WHERE grain = 'day'`); err != nil {
			return fmt.Errorf("fold days again for %s: %w", rollup.CallsTable, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}
