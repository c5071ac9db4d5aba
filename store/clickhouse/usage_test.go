package clickhouse

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// TestUsageTwoCollectorsAndRestart: the same usage events sent to two
// collectors on one database are counted once by a meter (FINAL), and a
// collector opened again knows the ids it stored.
func TestUsageTwoCollectorsAndRestart(t *testing.T) {
	ctx := context.Background()
	dsn := chtest.Shared(t).DSN(chtest.Database(t))
	open := func() (*Store, *Usage) {
		st, err := Open(ctx, dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		u, err := st.OpenUsage(ctx, UsageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st, u
	}
	evs := make([]meter.Event, 200)
	for i := range evs {
		evs[i] = meter.Event{Org: "o", Env: "prod", Source: "s", ID: fmt.Sprintf("e%d", i), Type: "t", Subject: "c",
			Time: time.Date(2026, 11, 10, 0, 0, i, 0, time.UTC), Data: []byte(`{"n":2}`), Keys: []string{"n"}, Str: []string{"2"}, Num: []float64{2}}
	}
	st1, u1 := open()
	st2, u2 := open()
	for _, u := range []*Usage{u1, u2} {
		if res, err := u.AppendUsage(ctx, evs); err != nil || res.Stored != len(evs) {
			t.Fatalf("%+v %v", res, err)
		}
	}
	m := &meter.Meter{Org: "o", Env: "prod", Slug: "n", EventType: "t", Aggregation: meter.Sum, ValueProperty: "$.n"}
	p, err := meter.ParseParams(url.Values{}, m, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	res, err := meter.Query(ctx, u1.DB(), meter.ClickHouse{}, m, p)
	if err != nil || len(res.Data) != 1 || res.Data[0].Value != 400 {
		t.Fatalf("sum over events sent to two collectors: %+v %v, want 400 (each once)", res.Data, err)
	}
	u1.Close()
	st1.Close()
	u2.Close()
	st2.Close()
	st3, u3 := open()
	defer st3.Close()
	defer u3.Close()
	if r, err := u3.AppendUsage(ctx, evs[:50]); err != nil || r.Duplicates != 50 {
		t.Fatalf("resent after restart: %+v %v, want 50 duplicates", r, err)
	}
}
