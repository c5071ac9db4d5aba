package duckdb

import "context"

// rowGroupRows is the size of DuckDB's row groups (its default, which the
// store does not change).
const rowGroupRows = 122_880

// nextCheckpoint is the row count at which the writer checkpoints next: the
// end of the row group CheckpointRowGroups after the one rows is in.
func (s *Store) nextCheckpoint(rows int64) int64 {
	return (rows/rowGroupRows + int64(s.opts.CheckpointRowGroups)) * rowGroupRows
}

// maybeCheckpoint checkpoints once the events table has filled a row group
// (or CheckpointRowGroups of them) since the last checkpoint.
//
// A checkpoint compresses and writes every row group that changed since the
// last one; a row group that was written while part full is written again
// in full at the next. Checkpointing when the writer has just completed a
// row group keeps that rewrite to the rows of one commit group. Measured on
// the events table (CPU time per row, see docs/performance.md): checkpoints
// at row-group boundaries cost 4-6 µs per row, at DuckDB's size threshold
// (which fell about 27,000 rows past a boundary here) 14-16 µs.
//
// A plain CHECKPOINT gives way to running transactions (a long read
// query); the writer then tries again after its next commits, and after a
// few refusals waits for them (FORCE), so that the log cannot grow without
// bound under constant reads.
func (s *Store) maybeCheckpoint() {
	if s.rows < s.ckptRows {
		return
	}
	q := "CHECKPOINT"
	if s.ckptDeferred >= 8 {
		q = "FORCE CHECKPOINT"
	}
	if _, err := s.db.ExecContext(context.Background(), q); err != nil {
		s.ckptDeferred++
		s.log.Debug("checkpoint deferred", "rows", s.rows, "err", err)
		return
	}
	s.log.Debug("checkpoint", "rows", s.rows)
	s.ckptDeferred = 0
	s.ckptRows = s.nextCheckpoint(s.rows)
}
