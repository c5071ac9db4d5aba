package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/apimeter/apimeter"
)

// TestInsertWhoseAnswerWasLostIsNotInsertedAgain: an INSERT that
// ClickHouse took but whose answer never came back (the server killed
// after writing the part, the connection cut) fails the batch, and the
// sender retries it. The retry must find the events in the table and
// count them as duplicates, not insert them a second time: FINAL reads
// would hide the copy, but the rollups' views count every insert. A batch
// whose INSERT really failed is stored by its retry. A witness view counts
// every row inserted into the events table.
func TestInsertWhoseAnswerWasLostIsNotInsertedAgain(t *testing.T) {
	ctx := context.Background()
	st, _ := openTest(t, Options{})
	defer st.Close()
	if _, err := st.DB().ExecContext(ctx, `CREATE MATERIALIZED VIEW witness ENGINE = MergeTree ORDER BY id AS SELECT id FROM events`); err != nil {
		t.Fatal(err)
	}
	var mode atomic.Int32 // 0: normal; 1: insert, then lose the answer; 2: fail without inserting
	lost := errors.New("read: connection reset by peer (the answer was lost)")
	st.insert = func(ctx context.Context, conn driver.Conn, c *Columns) error {
		switch mode.Swap(0) {
		case 1:
			if err := SendColumns(ctx, conn, c); err != nil {
				return err
			}
			return lost
		case 2:
			return errors.New("dial: connection refused")
		}
		return SendColumns(ctx, conn, c)
	}
	batch := func(prefix string) []apimeter.Event {
		at := time.Now().UTC().Add(-time.Minute)
		var evs []apimeter.Event
		for i := range 20 {
			evs = append(evs, apimeter.Event{ID: fmt.Sprint(prefix, i), Org: "o", Env: "e", APIName: "api", Method: "GET", Path: "/x",
				RequestTime: at, Status: 200, Weight: 1, RequestSize: -1, ResponseSize: -1})
		}
		return evs
	}
	inserted := func(prefix string) int {
		var n uint64
		if err := st.DB().QueryRowContext(ctx, `SELECT count() FROM witness WHERE startsWith(id, ?)`, prefix).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return int(n)
	}

	for _, c := range []struct {
		name, prefix string
		mode         int32
		wantStored   int
		wantDups     int
	}{
		{"answer lost", "lost", 1, 0, 20},
		{"insert failed", "failed", 2, 20, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			evs := batch(c.prefix)
			mode.Store(c.mode)
			if _, err := st.Append(ctx, evs); err == nil {
				t.Fatal("first Append: no error, want the INSERT's")
			}
			res, err := st.Append(ctx, evs)
			if err != nil || len(res.Stored) != c.wantStored || res.Duplicates != c.wantDups {
				t.Fatalf("retry: %d stored, %d duplicates, %v; want %d stored, %d duplicates", len(res.Stored), res.Duplicates, err, c.wantStored, c.wantDups)
			}
			if n := inserted(c.prefix); n != len(evs) {
				t.Errorf("%d rows inserted for %d events; want each once", n, len(evs))
			}
			// A third delivery is a duplicate either way.
			if res, err := st.Append(ctx, evs); err != nil || len(res.Stored) != 0 || res.Duplicates != len(evs) {
				t.Errorf("third delivery: %d stored, %d duplicates, %v; want all duplicates", len(res.Stored), res.Duplicates, err)
			}
		})
	}
}
