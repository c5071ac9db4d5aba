package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// smallDedupe is a dedupe set bound that holds a few thousand ids, so
// that tests go past it with tens of thousands.
const smallDedupe = 64 << 10

func dedupeEvents(env, prefix string, from, to int) []apimeter.Event {
	out := make([]apimeter.Event, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, apimeter.Event{ID: fmt.Sprintf("%s%d", prefix, i), Org: "o", Env: env,
			RequestTime: time.Unix(1.7e9, 0), Method: "GET", Status: 200, Weight: 1})
	}
	return out
}

// sendAll appends events in batches of 500 and returns what was stored
// and counted as duplicates.
func sendAll(t *testing.T, st *Store, events []apimeter.Event) (stored, dups int) {
	t.Helper()
	for i := 0; i < len(events); i += 500 {
		res, err := st.Append(context.Background(), events[i:min(i+500, len(events))])
		if err != nil {
			t.Fatalf("append events %d..: %v", i, err)
		}
		stored += len(res.Stored)
		dups += res.Duplicates
	}
	return stored, dups
}

func countRows(t *testing.T, st *Store) (rows, distinct int) {
	t.Helper()
	if err := st.DB().QueryRow(`SELECT count(*), count(DISTINCT (org, env, id)) FROM events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

func openDedupe(t *testing.T, path string, bound int64) *Store {
	t.Helper()
	st, err := Open(context.Background(), path, Options{DailyInterval: -1, DedupeMemory: bound})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDedupeBeyondMemory stores many more ids than the dedupe set has room
// for, then sends them again: every one is a duplicate (found in the
// events table), every new id is stored, and the set stays within its
// bound.
func TestDedupeBeyondMemory(t *testing.T) {
	st := openDedupe(t, filepath.Join(t.TempDir(), "events.duckdb"), smallDedupe)
	defer st.Close()
	const n = 20000
	first := dedupeEvents("a", "ev", 0, n)
	if stored, dups := sendAll(t, st, first); stored != n || dups != 0 {
		t.Fatalf("first send: %d stored, %d duplicates; want %d and 0", stored, dups, n)
	}
	h := st.Health()
	if h.DedupeBytes > smallDedupe || h.DedupeEntries >= n/2 {
		t.Fatalf("dedupe set after %d ids: %d entries in %d bytes; want at most %d bytes", n, h.DedupeEntries, h.DedupeBytes, smallDedupe)
	}
	if stored, dups := sendAll(t, st, first); stored != 0 || dups != n {
		t.Fatalf("resending all: %d stored, %d duplicates; want 0 and %d", stored, dups, n)
	}
	if st.Health().DedupeLookups == 0 {
		t.Fatal("no lookup in the events table, yet the set cannot hold the ids")
	}
	// The same ids in another env are other events; a batch mixing old
	// ids, new ids and an id twice counts each right.
	if stored, dups := sendAll(t, st, dedupeEvents("b", "ev", 0, 3000)); stored != 3000 || dups != 0 {
		t.Fatalf("the ids in env b: %d stored, %d duplicates; want 3000 and 0", stored, dups)
	}
	mixed := append(dedupeEvents("a", "ev", 100, 300), dedupeEvents("a", "new", 0, 200)...)
	mixed = append(mixed, dedupeEvents("a", "new", 0, 1)...)
	res, err := st.Append(context.Background(), mixed)
	if err != nil || len(res.Stored) != 200 || res.Duplicates != 201 {
		t.Fatalf("mixed batch: %d stored, %d duplicates, err %v; want 200 and 201", len(res.Stored), res.Duplicates, err)
	}
	if h := st.Health(); h.DedupeBytes > smallDedupe {
		t.Fatalf("dedupe set holds %d bytes, bound %d", h.DedupeBytes, smallDedupe)
	}
	rows, distinct := countRows(t, st)
	if rows != n+3000+200 || distinct != rows {
		t.Fatalf("%d rows, %d distinct; want %d, all distinct", rows, distinct, n+3000+200)
	}
}

// TestDedupeEvictedWithinBatch sends, in one batch, enough new ids to
// fill the dedupe set and then ids it held when the batch came: making
// room for the new ones must not let the old ones through as new.
func TestDedupeEvictedWithinBatch(t *testing.T) {
	st := openDedupe(t, filepath.Join(t.TempDir(), "events.duckdb"), smallDedupe)
	defer st.Close()
	held := dedupeEvents("a", "held", 0, 2500)
	if stored, _ := sendAll(t, st, held); stored != len(held) {
		t.Fatalf("%d of %d stored", stored, len(held))
	}
	batch := append(dedupeEvents("a", "fill", 0, 3000), held...)
	res, err := st.Append(context.Background(), batch)
	if err != nil || len(res.Stored) != 3000 || res.Duplicates != len(held) {
		t.Fatalf("%d stored, %d duplicates, err %v; want 3000 and %d", len(res.Stored), res.Duplicates, err, len(held))
	}
	if rows, distinct := countRows(t, st); rows != 5500 || distinct != rows {
		t.Fatalf("%d rows, %d distinct; want 5500, all distinct", rows, distinct)
	}
}

// TestDedupeReload restarts the store over ids ingested 8 days ago (past
// the horizon), 3 days ago and now, with a set too small for them and
// with one large enough: the ids within the horizon are duplicates, the
// others are stored again.
func TestDedupeReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	st := openDedupe(t, path, smallDedupe)
	sendAll(t, st, dedupeEvents("a", "old", 0, 2000))
	sendAll(t, st, dedupeEvents("a", "mid", 0, 8000))
	sendAll(t, st, dedupeEvents("a", "now", 0, 8000))
	for _, q := range []string{
		`UPDATE events SET ingested_at = ingested_at - INTERVAL 8 DAY WHERE id LIKE 'old%'`,
		`UPDATE events SET ingested_at = ingested_at - INTERVAL 3 DAY WHERE id LIKE 'mid%'`,
	} {
		if _, err := st.DB().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		bound     int64
		oldStored int // the ids of 8 days ago, stored again the first time
		lookups   bool
	}{
		{"small set", smallDedupe, 2000, true},
		{"set holding the horizon", DefaultDedupeMemory, 0, false}, // stored by the run before
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openDedupe(t, path, tc.bound)
			defer st.Close()
			if h := st.Health(); h.DedupeBytes > tc.bound {
				t.Fatalf("after loading, the set holds %d bytes, bound %d", h.DedupeBytes, tc.bound)
			}
			for _, part := range []struct {
				prefix      string
				n, wantDups int
			}{
				{"now", 8000, 8000},
				{"mid", 8000, 8000},
				{"old", 2000, 2000 - tc.oldStored},
			} {
				stored, dups := sendAll(t, st, dedupeEvents("a", part.prefix, 0, part.n))
				if dups != part.wantDups || stored != part.n-part.wantDups {
					t.Fatalf("resending the %q ids: %d stored, %d duplicates; want %d duplicates", part.prefix, stored, dups, part.wantDups)
				}
			}
			if got := st.Health().DedupeLookups > 0; got != tc.lookups {
				t.Fatalf("lookups in the events table: %v, want %v", got, tc.lookups)
			}
			if stored, _ := sendAll(t, st, dedupeEvents("a", "fresh-"+tc.name, 0, 1000)); stored != 1000 {
				t.Fatalf("%d of 1000 new ids stored", stored)
			}
		})
	}
}
