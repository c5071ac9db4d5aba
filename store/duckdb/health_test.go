package duckdb

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

// TestReadyFollowsCommits: a store whose commits fail is not ready, and is
// ready again once a commit succeeds.
func TestReadyFollowsCommits(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("fresh store: Ready = %v, want nil", err)
	}
	var took []time.Duration
	st.OnCommit(func(d time.Duration, rows int, err error) { took = append(took, d) })
	fail := true
	st.beforeFlush = func() error {
		if fail {
			return errors.New("disk full (injected)")
		}
		return nil
	}
	ev := func(id string) []apimeter.Event {
		return []apimeter.Event{{ID: id, Org: "o", Env: "e", RequestTime: time.Unix(1e9, 0), Method: "GET", Status: 200, Weight: 1}}
	}
	if _, err := st.Append(ctx, ev("a")); err == nil {
		t.Fatal("Append with a failing commit succeeded")
	}
	err = st.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("after a failed commit: Ready = %v, want the commit's error", err)
	}
	if h := st.Health(); h.CommitFailures != 1 || h.LastError == nil {
		t.Fatalf("Health = %+v, want 1 failure and the last error", h)
	}
	fail = false
	if _, err := st.Append(ctx, ev("a")); err != nil {
		t.Fatal(err)
	}
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("after a good commit: Ready = %v, want nil", err)
	}
	if h := st.Health(); h.Commits != 2 || h.DedupeEntries != 1 {
		t.Fatalf("Health = %+v, want 2 commits and 1 dedupe entry", h)
	}
	if len(took) != 2 {
		t.Fatalf("OnCommit called %d times, want 2", len(took))
	}
}

func TestMemoryLimit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		limit string
		want  string // DuckDB's rendering, "" for an error
	}{
		{"", "488.2 MiB"}, // 512MB
		{"64MB", "61.0 MiB"},
		{"1GiB", "1.0 GiB"},
		{"64", ""},
		{"64MB'; DROP TABLE events; --", ""},
		{"lots", ""},
	} {
		t.Run(tc.limit, func(t *testing.T) {
			st, err := Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), Options{MemoryLimit: tc.limit})
			if tc.want == "" {
				if err == nil {
					st.Close()
					t.Fatalf("Open with memory limit %q succeeded, want an error", tc.limit)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var got string
			if err := st.DB().QueryRowContext(ctx, "SELECT current_setting('memory_limit')").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("memory_limit = %q, want %q", got, tc.want)
			}
		})
	}
}
