package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// ClickHouse 18.16 has no TTL: events age out a month at a time, by dropping
// the month's partition (toYYYYMM of the request time) once all of it is
// older than the retention. Dropping a partition is a metadata operation;
// it does not rewrite data.

// retentionLoop drops expired partitions at start and then every
// RetentionInterval until Close.
func (s *Store) retentionLoop(ctx context.Context) {
	defer close(s.bgDone)
	if s.opts.Retention <= 0 {
		return
	}
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	for {
		if _, err := s.DropExpired(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Error("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DropExpired drops the events partitions whose whole month ends before
// now minus the retention, and returns their ids (YYYYMM).
func (s *Store) DropExpired(ctx context.Context, now time.Time) ([]string, error) {
	if s.opts.Retention <= 0 {
		return nil, nil
	}
	cutoff := now.Add(-s.opts.Retention).UTC()
	// The newest month that ends at or before cutoff.
	first := time.Date(cutoff.Year(), cutoff.Month(), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, -1, 0)
	limit, _ := strconv.Atoi(last.Format("200601"))
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, err
		}
		if n, err := strconv.Atoi(p); err == nil && n <= limit {
			parts = append(parts, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range parts {
		for _, t := range append([]string{"events"}, rollupTables()...) {
			if err := s.conn.Exec(ctx, "ALTER TABLE "+t+" DROP PARTITION "+p); err != nil {
				return nil, fmt.Errorf("drop partition %s of %s: %w", p, t, err)
			}
		}
		s.log.Info("retention: dropped events partition", "month", p)
	}
	return parts, nil
}
