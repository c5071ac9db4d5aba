package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/workload"
)

// TestExactMeteringEndToEnd sends the ways a sender retries to a real
// server process and checks that the three numbers a customer could be
// billed on agree with the number of distinct calls: stored rows (event
// stream), the usage counters (/v1/usage) and sum(message_count) from the
// Metrics API. It runs on each store: the embedded one, and ClickHouse with
// the counters on Redis.
func TestExactMeteringEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	t.Run("DuckDB", func(t *testing.T) { exactMetering(t, instance.StoreConfig{}) })
	t.Run("ClickHouse", func(t *testing.T) {
		dsn := chtest.Shared(t).DSN(chtest.Database(t))
		exactMetering(t, instance.StoreConfig{Store: dsn}, "--store", dsn, "--redis", redisURL(t))
	})
}

// exactMetering runs the metering check on the store sf names, with the
// servers started with flags.
func exactMetering(t *testing.T, sf instance.StoreConfig, flags ...string) {
	ctx := context.Background()
	data := t.TempDir()
	gen := workload.New(99, time.Hour)
	gen.Start = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	gen.IDs = true
	batch := func(n int) []moesif.Event { return gen.Batch(n) }

	a40 := batch(40)
	overlapB := append(append([]moesif.Event{}, a40[20:]...), batch(20)...)
	// A Moesif SDK retry: the same call without event_id, identified by the
	// X-Moesif-Transaction-Id header its SDK added.
	sdk := batch(10)
	sdkRetry := make([]moesif.Event, len(sdk))
	for i, ev := range sdk {
		ev.EventID = ""
		sdkRetry[i] = ev
	}
	weighted := batch(3)
	for i, w := range []string{"1", "10", "100"} {
		weighted[i].Weight = json.RawMessage(w)
	}
	crash := batch(30)

	type step struct {
		events []moesif.Event
		kill   bool // kill -9 and restart the server after this step
	}
	cases := []struct {
		org       string
		steps     []step
		rows      int
		calls     int64
		fromSteps string
	}{
		{org: "same-twice", steps: []step{{events: a40}, {events: a40}}, rows: 40, calls: 40},
		{org: "overlap", steps: []step{{events: a40}, {events: overlapB}}, rows: 60, calls: 60},
		{org: "sdk-retry", steps: []step{{events: sdk}, {events: sdkRetry}}, rows: 10, calls: 10},
		{org: "weights", steps: []step{{events: weighted}, {events: weighted}}, rows: 3, calls: 111},
		{org: "kill9", steps: []step{{events: crash, kill: true}, {events: crash}}, rows: 30, calls: 30},
	}
	ids, keys := map[string]string{}, map[string]string{}
	cat, done, err := instance.OpenCatalog(ctx, sf, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		app, err := cat.CreateApp(ctx, c.org, "prod")
		if err != nil {
			t.Fatal(err)
		}
		ids[c.org] = app.ID
		if _, keys[c.org], err = cat.Keys.Create(auth.Spec{Org: c.org, Scope: auth.ScopeRead}); err != nil {
			t.Fatal(err)
		}
	}
	done()
	srv := startChild(t, data, flags...)
	defer func() { srv.kill9(t) }()
	for _, c := range cases {
		for _, s := range c.steps {
			if _, err := demo.PostBatch(ctx, http.DefaultClient, srv.url, ids[c.org], s.events); err != nil {
				t.Fatalf("%s: post: %v", c.org, err)
			}
			if s.kill {
				srv.kill9(t)
				srv = startChild(t, data, flags...)
			}
		}
	}
	for _, c := range cases {
		t.Run(c.org, func(t *testing.T) {
			var evs struct {
				Events []json.RawMessage `json:"events"`
			}
			getJSON(t, keys[c.org], srv.url+"/v1/o/"+c.org+"/environments/prod/events?limit=1000", &evs)
			var usage struct {
				Total struct {
					Calls int64 `json:"calls"`
				} `json:"total"`
			}
			getJSON(t, keys[c.org], srv.url+"/v1/usage?"+url.Values{"org": {c.org}, "env": {"prod"}, "period": {"2026-11"}, "group": {"user_id"}}.Encode(), &usage)
			var st struct {
				Environments []struct {
					Metrics []struct {
						Values []string `json:"values"`
					} `json:"metrics"`
				} `json:"environments"`
			}
			getJSON(t, keys[c.org], srv.url+"/v1/o/"+c.org+"/environments/prod/stats?"+url.Values{
				"select": {"sum(message_count)"}, "timeRange": {"11/01/2026 00:00~12/01/2026 00:00"}}.Encode(), &st)
			var metric float64
			if len(st.Environments) == 1 && len(st.Environments[0].Metrics) == 1 && len(st.Environments[0].Metrics[0].Values) == 1 {
				metric, _ = strconv.ParseFloat(st.Environments[0].Metrics[0].Values[0], 64)
			}
			got := fmt.Sprintf("rows %d, usage calls %d, sum(message_count) %v", len(evs.Events), usage.Total.Calls, metric)
			want := fmt.Sprintf("rows %d, usage calls %d, sum(message_count) %v", c.rows, c.calls, float64(c.calls))
			if got != want {
				t.Errorf("got %s; want %s", got, want)
			}
		})
	}
}

// getJSON GETs u with key as a Bearer token and decodes the answer.
func getJSON(t *testing.T, key, u string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e map[string]any
		json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, e)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}
