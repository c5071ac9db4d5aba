package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestCloseReleasesEveryConnection: Close returns only when every
// goroutine of the store has ended and every connection is closed, also
// when it cancels a daily pass in the middle of a day's transaction, so
// that the file can be opened again at once. (A transaction rolled back by
// database/sql after its context ended gave its connection back on a
// goroutine of its own, after Close; the next Open of the file then waited
// in DuckDB's instance cache, and CI hung.)
func TestCloseReleasesEveryConnection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.duckdb")
	old := time.Now().UTC().Add(-72 * time.Hour)
	for round := range 8 {
		st, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatalf("round %d: open: %v", round, err)
		}
		// A late event for a past day: the next Open's daily pass
		// rebuilds that day in a transaction, which Close may cut short.
		ev := apimeter.Event{ID: fmt.Sprintf("late-%d", round), Org: "o", Env: "e", RequestTime: old, ResponseTime: old,
			Status: 200, Weight: 1, RequestSize: -1, ResponseSize: -1}
		if _, err := st.Append(ctx, []apimeter.Event{ev}); err != nil {
			t.Fatalf("round %d: append: %v", round, err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		if n := st.db.Stats().OpenConnections; n != 0 {
			t.Fatalf("round %d: %d connections open after Close, want 0", round, n)
		}
	}
}
