package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"os"
	"path/filepath"
	"testing"
	"time"

	duckdbdrv "github.com/duckdb/duckdb-go/v2"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/workload"
)

func benchEvents(b *testing.B, n int) []apimeter.Event {
	b.Helper()
	gen := workload.New(1, 24*time.Hour)
	gen.IDs = true
	scrub := apimeter.NewScrubber(nil, nil, 1024)
	out := make([]apimeter.Event, n)
	for i := range out {
		m := gen.Event()
		ev, err := m.ToEvent("bench", "prod", i)
		if err != nil {
			b.Fatal(err)
		}
		scrub.Scrub(&ev)
		out[i] = ev
	}
	return out
}

// BenchmarkRawAppender is the limit: rows through a bare DuckDB appender,
// committed every 500 rows.
func BenchmarkRawAppender(b *testing.B) {
	events := benchEvents(b, 4096)
	ctx := context.Background()
	connector, err := duckdbdrv.NewConnector(dbPath(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if _, err := db.ExecContext(ctx, Settings); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		b.Fatal(err)
	}
	conn, err := connector.Connect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	app, err := duckdbdrv.NewAppenderFromConn(conn, "", "events")
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	var row []driver.Value
	var buf []byte
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := events[i%len(events)]
		row, buf = RowValues(row[:0], buf, &e, now)
		if err := app.AppendRow(row...); err != nil {
			b.Fatal(err)
		}
		if (i+1)%flushEvery() == 0 {
			if err := app.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := app.Flush(); err != nil {
		b.Fatal(err)
	}
}

func dbPath(b *testing.B) string {
	if os.Getenv("MEM") != "" {
		return ""
	}
	return filepath.Join(b.TempDir(), "raw.duckdb")
}

func flushEvery() int {
	if v := os.Getenv("FLUSH"); v != "" {
		n := 0
		for _, c := range v {
			n = n*10 + int(c-'0')
		}
		return n
	}
	return 500
}
