package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/workload"
)

// cloudEvent is a usage event as a sender writes it.
type cloudEvent struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Subject     string         `json:"subject"`
	Time        string         `json:"time"`
	Data        map[string]any `json:"data"`
}

// postCloudEvents sends a batch to /api/v1/events with a Bearer credential
// and returns the status.
func postCloudEvents(ctx context.Context, base, cred string, evs []cloudEvent) (int, error) {
	body, err := json.Marshal(evs)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/events", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return resp.StatusCode, fmt.Errorf("POST /api/v1/events: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, nil
}

// sendJSON sends v to u with key as a Bearer token and decodes the answer
// into out (when not nil), failing t unless the status is want.
func sendJSON(t *testing.T, method, key, u string, v any, want int, out any) {
	t.Helper()
	var body io.Reader
	if v != nil {
		b, _ := json.Marshal(v)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, u, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
	}
}

type meterAnswer struct {
	Data []struct {
		Value       float64           `json:"value"`
		WindowStart time.Time         `json:"windowStart"`
		Subject     *string           `json:"subject"`
		GroupBy     map[string]string `json:"groupBy"`
	} `json:"data"`
}

// TestUsageEventsSurviveKill9 sends usage event batches from several
// clients, kills the server with SIGKILL right after an acknowledgement
// (three times), resends the batches that were in flight, and checks that a
// COUNT meter counts every acknowledged event once and that each is one
// row.
func TestUsageEventsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	data := t.TempDir()
	a, err := apps.Create(data, "crash", "prod")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := keys.Create(auth.Spec{Org: "crash", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	seq := 0
	batch := func(n int) []cloudEvent {
		out := make([]cloudEvent, n)
		for i := range out {
			seq++
			out[i] = cloudEvent{SpecVersion: "1.0", ID: fmt.Sprintf("u%d", seq), Source: "crash-test", Type: "rows",
				Subject: fmt.Sprintf("c%d", seq%7), Time: start.Add(time.Duration(seq) * time.Second).Format(time.RFC3339),
				Data: map[string]any{"rows": seq % 10}}
		}
		return out
	}
	acked := map[string]bool{}
	var mu sync.Mutex
	var inflight [][]cloudEvent
	for round := 0; round < 3; round++ {
		c := startChild(t, data)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		ackedThisRound := make(chan struct{}, 64)
		for w := 0; w < 3; w++ {
			batches := make([][]cloudEvent, 20)
			for i := range batches {
				batches[i] = batch(50)
			}
			// Half the senders use the application id, half the key.
			cred := admin
			if w%2 == 1 {
				cred = a.ID
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, b := range batches {
					if _, err := postCloudEvents(ctx, c.url, cred, b); err != nil {
						mu.Lock()
						inflight = append(inflight, b)
						mu.Unlock()
						return
					}
					mu.Lock()
					for _, ev := range b {
						acked[ev.ID] = true
					}
					mu.Unlock()
					select {
					case ackedThisRound <- struct{}{}:
					default:
					}
				}
			}()
		}
		for i := 0; i < 5; i++ {
			<-ackedThisRound
		}
		c.kill9(t)
		cancel()
		wg.Wait()
	}
	c := startChild(t, data)
	for _, b := range inflight {
		if _, err := postCloudEvents(context.Background(), c.url, admin, b); err != nil {
			t.Fatalf("resend after restart: %v", err)
		}
		for _, ev := range b {
			acked[ev.ID] = true
		}
	}
	if len(acked) < 5*3*50 {
		t.Fatalf("only %d events acknowledged; the test did not exercise the crash path", len(acked))
	}
	sendJSON(t, http.MethodPost, admin, c.url+"/api/v1/meters", map[string]any{
		"slug": "rows_count", "eventType": "rows", "aggregation": "COUNT"}, http.StatusCreated, nil)
	var ans meterAnswer
	sendJSON(t, http.MethodGet, admin, c.url+"/api/v1/meters/rows_count/query?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z", nil, http.StatusOK, &ans)
	if len(ans.Data) != 1 || ans.Data[0].Value != float64(len(acked)) {
		t.Fatalf("meter counts %+v, want %d acknowledged events once each", ans.Data, len(acked))
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()

	db := openDB(t, filepath.Join(data, instance.DBFile))
	rows, err := db.Query(`SELECT id, count(*) FROM usage_events GROUP BY id`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		rows.Scan(&id, &n)
		counts[id] = n
	}
	rows.Close()
	missing, twice := 0, 0
	for id := range acked {
		if counts[id] == 0 {
			missing++
		}
	}
	for _, n := range counts {
		if n > 1 {
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		t.Fatalf("of %d acknowledged usage events, %d missing and %d stored more than once after kill -9", len(acked), missing, twice)
	}
	t.Logf("%d acknowledged usage events, each counted once, across 3 kill -9 restarts and %d resent batches", len(acked), len(inflight))
}

// TestMetersOverCallsEqualMetricsAPI sends API calls through the collector
// (some sampled, with weights) and checks that meters over them (type
// api-call) give the Metrics API's figures for the same days and APIs:
// calls, response bytes and average response time, on each store.
func TestMetersOverCallsEqualMetricsAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	t.Run("DuckDB", func(t *testing.T) { metersOverCalls(t, instance.StoreConfig{}) })
	t.Run("ClickHouse", func(t *testing.T) {
		dsn := chtest.Shared(t).DSN(chtest.Database(t))
		metersOverCalls(t, instance.StoreConfig{Store: dsn}, "--store", dsn, "--redis", redisURL(t))
	})
}

func metersOverCalls(t *testing.T, sf instance.StoreConfig, flags ...string) {
	ctx := context.Background()
	data := t.TempDir()
	cat, done, err := instance.OpenCatalog(ctx, sf, data)
	if err != nil {
		t.Fatal(err)
	}
	app, err := cat.CreateApp(ctx, "calls", "prod")
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := cat.Keys.Create(auth.Spec{Org: "calls", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	done()
	srv := startChild(t, data, flags...)
	defer srv.kill9(t)

	gen := workload.New(31, 72*time.Hour)
	gen.Start = time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	gen.IDs = true
	for i := 0; i < 6; i++ {
		b := gen.Batch(200)
		for j := range b {
			if j%17 == 0 {
				b[j].Weight = json.RawMessage(strconv.Itoa(1 + j%5))
			}
		}
		if _, err := demo.PostBatch(ctx, http.DefaultClient, srv.url, app.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []map[string]any{
		{"slug": "calls", "eventType": "api-call", "aggregation": "COUNT", "groupBy": map[string]string{"api": "$.api"}},
		{"slug": "bytes_out", "eventType": "api-call", "aggregation": "SUM", "valueProperty": "$.responseBytes", "groupBy": map[string]string{"api": "$.api"}},
		{"slug": "latency", "eventType": "api-call", "aggregation": "AVG", "valueProperty": "$.latencyMs", "groupBy": map[string]string{"api": "$.api"}},
		{"slug": "errors", "eventType": "api-call", "aggregation": "COUNT", "groupBy": map[string]string{"api": "$.api"}, "filter": map[string]any{"errors": true}},
	} {
		sendJSON(t, http.MethodPost, admin, srv.url+"/api/v1/meters", m, http.StatusCreated, nil)
	}
	// The Metrics API: per API per day.
	var st struct {
		Environments []struct {
			Dimensions []struct {
				Name    string `json:"name"`
				Metrics []struct {
					Name   string `json:"name"`
					Values []struct {
						Timestamp int64  `json:"timestamp"`
						Value     string `json:"value"`
					} `json:"values"`
				} `json:"metrics"`
			} `json:"dimensions"`
		} `json:"environments"`
	}
	getJSON(t, admin, srv.url+"/v1/o/calls/environments/prod/stats/apiproxy?"+url.Values{
		"select":    {"sum(message_count),sum(response_size),avg(total_response_time),sum(is_error)"},
		"timeRange": {"11/09/2026 00:00~11/14/2026 00:00"}, "timeUnit": {"day"}}.Encode(), &st)
	metrics := map[string]string{"calls": "sum(message_count)", "bytes_out": "sum(response_size)", "latency": "avg(total_response_time)", "errors": "sum(is_error)"}
	if len(st.Environments) != 1 || len(st.Environments[0].Dimensions) < 3 {
		t.Fatalf("Metrics API answered %+v", st)
	}
	compared := 0
	for slug, metric := range metrics {
		var ans meterAnswer
		getJSON(t, admin, srv.url+"/api/v1/meters/"+slug+"/query?from=2026-11-09T00:00:00Z&to=2026-11-14T00:00:00Z&windowSize=DAY&groupBy=api", &ans)
		got := map[string]float64{}
		for _, r := range ans.Data {
			got[fmt.Sprintf("%s %d", r.GroupBy["api"], r.WindowStart.UnixMilli())] = r.Value
		}
		want := map[string]float64{}
		for _, d := range st.Environments[0].Dimensions {
			for _, m := range d.Metrics {
				if m.Name != metric {
					continue
				}
				for _, v := range m.Values {
					f, _ := strconv.ParseFloat(v.Value, 64)
					if f != 0 {
						want[fmt.Sprintf("%s %d", d.Name, v.Timestamp)] = f
					}
				}
			}
		}
		if len(want) == 0 {
			t.Fatalf("%s: the Metrics API has no %s; nothing compared", slug, metric)
		}
		for k, w := range want {
			// The Metrics API rounds to two decimals.
			if g := got[k]; math.Abs(g-w) > 0.006 {
				t.Errorf("meter %s, %s: %v; Metrics API %s: %v", slug, k, g, metric, w)
			}
			compared++
		}
		for k, g := range got {
			if _, ok := want[k]; !ok && g != 0 {
				t.Errorf("meter %s, %s: %v; the Metrics API has nothing", slug, k, g)
			}
		}
	}
	t.Logf("%d figures compared, each equal", compared)
}

// TestMetersFile: the meters of --meters are there at start, and a file
// with a bad meter stops the start with a message naming it.
func TestMetersFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "meters.json")
	good := `{"meters":[{"org":"acme","env":"prod","slug":"tokens_total","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}},
{"org":"acme","env":"prod","slug":"calls_by_route","eventType":"api-call","aggregation":"COUNT","groupBy":{"route":"$.route"}}]}`
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20,
		MaxBatchEvents: 100, DedupeHorizon: time.Hour, DailyInterval: -1, MeterConfig: instance.MeterConfig{Meters: file}}
	in, err := instance.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := in.Keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		in.Close()
		t.Fatal(err)
	}
	var ms []struct {
		Slug string `json:"slug"`
		ID   string `json:"id"`
	}
	getJSON(t, key, in.URL+"/api/v1/meters", &ms)
	in.Close()
	if len(ms) != 2 || ms[0].Slug != "calls_by_route" || ms[1].Slug != "tokens_total" || ms[1].ID != "cfg-acme-prod-tokens_total" {
		t.Fatalf("meters from the file: %+v", ms)
	}
	bad := strings.Replace(good, `"$.tokens"`, `"$.items[0]"`, 1)
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err = instance.Start(context.Background(), cfg)
	if err == nil {
		in.Close()
		t.Fatal("a meters file with a bad JSONPath was accepted")
	}
	if !strings.Contains(err.Error(), "tokens_total") || !strings.Contains(err.Error(), "valueProperty") {
		t.Fatalf("error %q does not name the meter and field", err)
	}
}
