package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/apimeter/apimeter"
)

// RawAppender writes rows of the events table through a bare DuckDB
// appender: no dedupe, no group commit, no writer goroutine. It is the
// limit the store's ingest path is measured against (benchmarks and
// `apimeter bench ingest`), with the same settings and schema as Store.
type RawAppender struct {
	db   *sql.DB
	conn driver.Conn
	app  *duckdb.Appender
	row  []driver.Value
	buf  []byte
	now  time.Time
}

// OpenRaw creates the events table in a new database at path.
func OpenRaw(ctx context.Context, path string) (*RawAppender, error) {
	connector, err := duckdb.NewConnector(path, nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	if _, err := db.ExecContext(ctx, Settings+";"+Schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("raw appender schema: %w", err)
	}
	conn, err := connector.Connect(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	app, err := duckdb.NewAppenderFromConn(conn, "", "events")
	if err != nil {
		conn.Close()
		db.Close()
		return nil, err
	}
	return &RawAppender{db: db, conn: conn, app: app, now: time.Now().UTC()}, nil
}

// Append adds the rows of events; they are stored at the next Commit.
func (r *RawAppender) Append(events []apimeter.Event) error {
	for i := range events {
		r.row, r.buf = RowValues(r.row[:0], r.buf, &events[i], r.now)
		if err := r.app.AppendRow(r.row...); err != nil {
			return err
		}
	}
	return nil
}

// Commit flushes the appended rows in one transaction.
func (r *RawAppender) Commit() error { return r.app.Flush() }

// Close commits what is left and closes the database.
func (r *RawAppender) Close() error {
	err := r.app.Close()
	r.conn.Close()
	r.db.Close()
	return err
}
