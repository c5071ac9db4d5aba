package clickhouse

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestUsageRebuildMatchesDuckDB: the usage counters rebuilt from the
// ClickHouse events table equal those rebuilt from DuckDB for the same
// events, a redelivered batch included (stored twice in ClickHouse by two
// processes, counted once).
func TestUsageRebuildMatchesDuckDB(t *testing.T) {
	ctx := context.Background()
	var evs []apimeter.Event
	at := time.Date(2026, 3, 31, 23, 0, 0, 0, time.UTC) // crosses a billing period
	for i := range 300 {
		evs = append(evs, apimeter.Event{ID: fmt.Sprint("u", i), Org: "o", Env: "e", APIName: "api", Method: "GET", Path: "/x",
			RequestTime: at.Add(time.Duration(i*37) * time.Second), Status: []int{200, 404, 0, 503}[i%4], LatencyMs: 3,
			UserID: fmt.Sprint("user", i%7), CompanyID: fmt.Sprint("co", i%3), APIKeyID: fmt.Sprint("k", i%5),
			Weight: int64(1 + i%3), RequestSize: int64(i%4) - 1, ResponseSize: int64(i * 10)})
	}
	duck, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "events.duckdb"), duckdb.Options{DailyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer duck.Close()
	if _, err := duck.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	a, dsn := openTest(t, Options{})
	defer a.Close()
	b, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, st := range []*Store{a, b} {
		if _, err := st.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	ps := identity.Periods{AnchorDay: 1}
	want, err := identity.RebuildCounters(ctx, duck.DB(), ps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := identity.RebuildCountersFrom(ctx, a.DB(), UsageRebuildSQL, ps)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt counters on ClickHouse differ from DuckDB's:\n got %v\nwant %v", got, want)
	}
}
