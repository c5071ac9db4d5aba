package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/rollup"
)

// TestCompanyKeyIsDuckDBs: the key readers compute in Go is the one the
// fold computes in SQL, for ids of every shape; a DuckDB whose
// md5_number_upper changed would leave every company's copied calls
// unread.
func TestCompanyKeyIsDuckDBs(t *testing.T) {
	ctx := context.Background()
	st := openTemp(t)
	for _, id := range []string{"c", "company-7", "company-70", "acme, Inc. ✓", "cus_Nf3kQ9x", "a very long company identifier that goes on and on"} {
		var got int64
		if err := st.DB().QueryRowContext(ctx, `SELECT `+rollup.DuckDBCompanyKey("$1"), id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := rollup.CompanyKey(id); got != want {
			t.Errorf("%q: DuckDB %d, CompanyKey %d", id, got, want)
		}
		// Readers pass the key as a parameter; half the MD5s have the
		// high bit set ("company-7"'s does).
		var n int
		if err := st.DB().QueryRowContext(ctx, `SELECT count(*) FROM (SELECT `+rollup.DuckDBCompanyKey("$1")+` AS k) WHERE k = $2`, id, rollup.CompanyKey(id)).Scan(&n); err != nil || n != 1 {
			t.Errorf("%q: the key as a parameter matched %d rows (%v)", id, n, err)
		}
	}
}

// TestCallsCopiedOnUpgrade: a store whose days were folded before the
// copy of the companies' calls existed gets them copied by the next pass
// after it is opened by this version, and the other rollups are the same.
func TestCallsCopiedOnUpgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.duckdb")
	st, err := Open(ctx, path, Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	var evs []apimeter.Event
	for i := range 48 {
		ts := day.Add(time.Duration(i) * time.Hour)
		evs = append(evs, apimeter.Event{ID: fmt.Sprintf("e%d", i), Org: "o", Env: "e", RequestTime: ts, ResponseTime: ts.Add(time.Millisecond),
			Method: "GET", Path: "/x", Route: "/x", Status: 200, LatencyMs: float64(i), UserID: "u", CompanyID: fmt.Sprintf("c%d", i%3), Weight: 1})
	}
	if res, err := st.Append(ctx, evs); err != nil || len(res.Stored) != len(evs) {
		t.Fatalf("append: %+v %v", res, err)
	}
	if _, err := st.BuildRollups(ctx); err != nil {
		t.Fatal(err)
	}
	count := func(s *Store, q string) int {
		t.Helper()
		var n int
		if err := s.DB().QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(st, `SELECT count(*) FROM `+rollup.CallsTable); n != len(evs) {
		t.Fatalf("%d calls copied, want %d", n, len(evs))
	}
	days := count(st, `SELECT count(*) FROM `+rollup.PeriodsTable+` WHERE grain = 'day'`)
	sumDays := `SELECT CAST(sum(weight) AS BIGINT) FROM ` + rollup.Families[1].Table(rollup.Day)
	calls := count(st, sumDays)
	// The store as an older version left it: no copy.
	if _, err := st.DB().ExecContext(ctx, `DROP TABLE `+rollup.CallsTable); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = Open(ctx, path, Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if n := count(st, `SELECT count(*) FROM `+rollup.PeriodsTable+` WHERE grain = 'day'`); n != 0 {
		t.Fatalf("%d days still folded after the upgrade: their calls would never be copied", n)
	}
	if _, err := st.BuildRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(st, `SELECT count(*) FROM `+rollup.CallsTable); n != len(evs) {
		t.Errorf("after the upgrade's fold: %d calls copied, want %d", n, len(evs))
	}
	if n := count(st, `SELECT count(*) FROM `+rollup.PeriodsTable+` WHERE grain = 'day'`); n != days {
		t.Errorf("%d days folded, want %d as before", n, days)
	}
	if n := count(st, sumDays); n != calls {
		t.Errorf("the day rollups sum %d calls, want %d as before", n, calls)
	}
}

// TestEventsNewestWithTies: the newest events of a filter, when many
// share the request time where the limit cuts (Events finds that time
// first, then reads the rows at or after it), are those a plain sort by
// time and then id gives, for every limit.
func TestEventsNewestWithTies(t *testing.T) {
	ctx := context.Background()
	st := openTemp(t)
	base := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	var evs []apimeter.Event
	for i := range 150 {
		ts := base.Add(time.Duration(i/40) * time.Minute) // runs of 40 at one time
		evs = append(evs, apimeter.Event{ID: fmt.Sprintf("e%03d", (i*37)%150), Org: "o", Env: "e", RequestTime: ts, ResponseTime: ts,
			Method: "GET", Path: "/x", Route: "/x", Status: 200, UserID: fmt.Sprintf("u%d", i%2), Weight: 1})
	}
	if res, err := st.Append(ctx, evs); err != nil || len(res.Stored) != len(evs) {
		t.Fatalf("append: %+v %v", res, err)
	}
	want := slices.Clone(evs)
	slices.SortFunc(want, func(a, b apimeter.Event) int {
		if c := b.RequestTime.Compare(a.RequestTime); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	for _, user := range []string{"", "u1"} {
		var of []string
		for _, e := range want {
			if user == "" || e.UserID == user {
				of = append(of, e.ID)
			}
		}
		for _, limit := range []int{1, 39, 40, 41, 50, 75, 149, 150, 200} {
			got, err := st.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e", UserID: user, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if w := of[:min(limit, len(of))]; !slices.Equal(ids, w) {
				t.Errorf("user %q, limit %d: %v, want %v", user, limit, ids, w)
			}
		}
	}
	if got, err := st.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e", UserID: "nobody", Limit: 10}); err != nil || len(got) != 0 {
		t.Errorf("no events: %v %v", got, err)
	}
	// More events at the newest time than Events reads unsorted (a
	// backfill stamped with one time): the sorted read answers.
	var same []apimeter.Event
	at := base.Add(time.Hour)
	for i := range 300 {
		same = append(same, apimeter.Event{ID: fmt.Sprintf("s%03d", (i*7)%300), Org: "o", Env: "e", RequestTime: at, ResponseTime: at,
			Method: "GET", Path: "/x", Route: "/x", Status: 200, UserID: "u9", Weight: 1})
	}
	if res, err := st.Append(ctx, same); err != nil || len(res.Stored) != len(same) {
		t.Fatalf("append: %+v %v", res, err)
	}
	for _, limit := range []int{1, 50} {
		got, err := st.Events(ctx, apimeter.EventFilter{Org: "o", Env: "e", UserID: "u9", Limit: limit})
		if err != nil || len(got) != limit {
			t.Fatalf("limit %d: %d events, %v", limit, len(got), err)
		}
		for i, e := range got {
			if want := fmt.Sprintf("s%03d", 299-i); e.ID != want {
				t.Errorf("limit %d: event %d is %s, want %s", limit, i, e.ID, want)
				break
			}
		}
	}
}

// openTemp opens a store in a temporary directory, with no background
// pass, closed when t ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	st, err := Open(context.Background(), filepath.Join(t.TempDir(), "events.duckdb"), Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
