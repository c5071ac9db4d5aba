package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/server"
)

// TestHealthReadyMetrics: /healthz and /readyz answer on a healthy server,
// and /metrics counts stored events, refused batches by reason and status,
// and Metrics API calls.
func TestHealthReadyMetrics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		DedupeHorizon: time.Hour, StatsConfig: instance.StatsConfig{StatsQuota: -1}}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	post := func(body string) int {
		req, _ := http.NewRequest(http.MethodPost, in.URL+"/v1/events/batch", strings.NewReader(body))
		req.Header.Set(server.AppIDHeader, app.ID)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	good := `[{"event_id":"e1","request":{"time":"2026-11-24T10:00:00Z","uri":"https://x.example/a","verb":"GET"},"response":{"time":"2026-11-24T10:00:00.010Z","status":200}}]`
	if c := post(good); c != 200 {
		t.Fatalf("good batch: %d", c)
	}
	if c := post(good); c != 200 {
		t.Fatalf("good batch again: %d", c)
	}
	if c := post(`[{"request":`); c != 400 {
		t.Fatalf("malformed batch: %d, want 400", c)
	}
	_, key, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, in.URL+path, nil)
		if strings.HasPrefix(path, "/v1/") {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, body := get("/healthz"); c != 200 {
		t.Fatalf("/healthz: %d %s", c, body)
	}
	c, body := get("/readyz")
	var ready struct {
		Status string
		Checks map[string]string
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || c != 200 || ready.Checks["store"] != "ok" {
		t.Fatalf("/readyz: %d %s, want 200 with the store ok", c, body)
	}
	get("/v1/o/acme/environments/prod/stats?select=sum(message_count)&timeRange=11/24/2026%2000:00~11/25/2026%2000:00")
	c, body = get("/metrics")
	if c != 200 {
		t.Fatalf("/metrics: %d", c)
	}
	for _, want := range []string{
		`apimeter_events_total{result="stored"} 1`,
		`apimeter_events_total{result="duplicate"} 1`,
		`apimeter_collector_requests_total{code="200",endpoint="events_batch"} 2`,
		`apimeter_collector_requests_total{code="400",endpoint="events_batch"} 1`,
		`apimeter_collector_rejected_total{reason="malformed_json"} 1`,
		`apimeter_store_rows_committed_total 1`,
		`apimeter_store_dedupe_entries 1`,
		`apimeter_store_dedupe_bytes 1.048576e+06`,
		`apimeter_store_dedupe_lookups_total 0`,
		`apimeter_store_last_commit_failed 0`,
		`apimeter_store_commit_seconds_count{result="ok"}`,
		`apimeter_metrics_api_requests_total{code="200"} 1`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", grepLines(body, "apimeter_"))
	}
}

// TestMetricsListen: with --metrics-listen, /metrics moves to its own
// listener and is no longer on the main one.
func TestMetricsListen(t *testing.T) {
	ctx := context.Background()
	addr := freeAddr(t)
	f := instance.Config{Listen: "127.0.0.1:0", Data: t.TempDir(), BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		DedupeHorizon: time.Hour, Observability: instance.Observability{MetricsListen: addr}}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer in.Close()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte("apimeter_store_queued_batches")) {
		t.Fatalf("/metrics on %s: %d, want 200 with the store's gauges", addr, resp.StatusCode)
	}
	resp, err = http.Get(in.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on the main listener: %d, want 404", resp.StatusCode)
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
