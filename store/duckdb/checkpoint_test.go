package duckdb

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestCheckpointAtRowGroup checks that the writer checkpoints when the
// events table fills a row group: the write-ahead log then holds only the
// rows past the boundary, although DuckDB's own threshold (1 GB) is far
// away.
func TestCheckpointAtRowGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("appends a row group of events")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.duckdb")
	st, err := Open(ctx, path, Options{NoDedupe: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	walBytes := func() int64 {
		fi, err := os.Stat(path + ".wal")
		if errors.Is(err, fs.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]apimeter.Event, 4000)
	appendRows := func(n int) {
		for n > 0 {
			k := min(n, len(batch))
			for i := range batch[:k] {
				batch[i] = apimeter.Event{ID: strconv.Itoa(i), Org: "o", Env: "e", RequestTime: ts, Method: "GET",
					URI: "https://api.example.com/a/" + strconv.Itoa(i), Path: "/a", Status: 200, Weight: 1}
			}
			if _, err := st.Append(ctx, batch[:k]); err != nil {
				t.Fatal(err)
			}
			n -= k
		}
	}
	appendRows(rowGroupRows - 4000)
	before := walBytes()
	if before == 0 {
		t.Fatal("the log is empty before the row group is full: nothing to compare with")
	}
	appendRows(8000) // crosses the boundary
	after := walBytes()
	if after*4 > before {
		t.Errorf("log is %d bytes after the row group filled, %d before: no checkpoint at the boundary", after, before)
	}
	if st.ckptRows != 2*rowGroupRows {
		t.Errorf("next checkpoint at %d rows, want %d", st.ckptRows, 2*rowGroupRows)
	}
}
