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
	lane    *lane
	group   []*appendReq
	results []apimeter.AppendResult
	keys    []xxh3.Uint128 // of the events appended
	// leans says some events were counted as duplicates of a job not yet
	// committed when this one was filled.
	leans bool
	rows  int   // appended
	err   error // appending failed
	began time.Time
}

// report tells the writer how a job's commit ended.
type report struct {
	keys []xxh3.Uint128
	ok   bool
}
