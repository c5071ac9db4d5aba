package duckdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter"
)

// A commit has two halves: appending the rows to an appender (per value
// calls into DuckDB) and flushing it (one transaction: the write-ahead log,
// the table, now and then a checkpoint). The store does them in a
// pipeline: the writer goroutine fills one lane while the committer
// flushes the other, so the two halves of consecutive commits overlap.
// Commits stay serial and in order.

// lane is an appender on a connection of its own.
type lane struct {
	conn driver.Conn
	app  *duckdb.Appender
}

func openLane(ctx context.Context, c *duckdb.Connector) (*lane, error) {
	conn, err := c.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	app, err := duckdb.NewAppenderFromConn(conn, "", "events")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("appender: %w", err)
	}
	return &lane{conn: conn, app: app}, nil
}

// reset discards what the lane's appender holds and, as an appender is
// unusable after a failed flush, starts a new one.
func (ln *lane) reset(log *slog.Logger) {
	ln.app.Clear()
	ln.app.Close()
	app, err := duckdb.NewAppenderFromConn(ln.conn, "", "events")
	if err != nil {
		log.Error("reopen appender", "err", err)
		return
	}
	ln.app = app
}

func (s *Store) closeLanes() error {
	var errs []error
	for _, ln := range s.lanes {
		if ln != nil {
			errs = append(errs, ln.app.Close(), ln.conn.Close())
		}
	}
	return errors.Join(errs...)
}

// job is a filled lane on its way to the committer.
type job struct {
	lane  *lane
	group []*entry
	rows  int // appended, or to be appended when broken
	max   int // rows past which the job takes no more batches
	// broken says an append failed: the lane holds a partial group and
	// the committer re-appends each batch alone.
	broken bool
	began  time.Time
}

// entry is one batch (Append call) within a job.
type entry struct {
	req *appendReq
	res apimeter.AppendResult
	// rows are the indexes in req of the events to store (not
	// duplicates); keys their dedupe keys, marked seen and in flight.
	rows []int
	keys []xxh3.Uint128
	// lean are keys counted as duplicates while in flight: the events of
	// the job before, or of an earlier batch of this one, not committed
	// yet when this batch was added. If that commit fails, so must this
	// batch's answer (its own rows may still be stored).
	lean []xxh3.Uint128
	// err is this batch's own failure.
	err error
}

// report tells the writer how a job's commit ended: the keys stored and
// the keys of the batches that failed, to be forgotten.
type report struct {
	ok, failed []xxh3.Uint128
}

// Full says the job takes no more batches (groupcommit.Group).
func (j *job) Full() bool { return j.broken || j.rows >= j.max }
