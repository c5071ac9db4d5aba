package instance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/workload"
)

// TestStatsWired posts generated events through the collector of a real
// server and reads them back through the Metrics API it serves.
func TestStatsWired(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: 1024, MaxBodyBytes: 1 << 24, MaxBatchEvents: 1000,
		DedupeHorizon: time.Hour, StatsConfig: StatsConfig{StatsQuota: 2}}
	in, err := Start(ctx, f)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	gen := workload.New(1, 24*time.Hour)
	gen.Start = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	gen.IDs = true
	body, _ := json.Marshal(gen.Batch(200))
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/v1/events/batch", bytes.NewReader(body))
	req.Header.Set(server.AppIDHeader, app.ID)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("post batch: %s", resp.Status)
	}
	statsURL := in.URL + "/v1/o/acme/environments/prod/stats?select=sum(message_count)&timeRange=03/01/2026%2000:00~03/02/2026%2000:00"
	var answer struct {
		Environments []struct {
			Metrics []struct {
				Values []string `json:"values"`
			} `json:"metrics"`
		} `json:"environments"`
	}
	_, key, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, statsURL, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp = get(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(b, &answer); err != nil || resp.StatusCode != 200 || len(answer.Environments) != 1 {
		t.Fatalf("GET stats: %s %s (%v)", resp.Status, b, err)
	}
	var stored int64
	in.Store.DB().QueryRow("SELECT sum(weight) FROM events WHERE org = 'acme'").Scan(&stored)
	if got, want := answer.Environments[0].Metrics[0].Values[0], fmt.Sprintf("%d.0", stored); got != want || stored == 0 {
		t.Errorf("sum(message_count) = %s, want %s (the stored weights)", got, want)
	}
	// Calls without a key are refused before the quota: they do not use it
	// up for the org.
	for range 3 {
		resp := get("")
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("call without a key: %s, want 401", resp.Status)
		}
	}
	// The quota of 2 per minute: the second call passes, the third is 429.
	for i, want := range []int{200, 429} {
		resp := get(key)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") == "") {
			t.Errorf("call %d: %s Retry-After %q, want %d", i+2, resp.Status, resp.Header.Get("Retry-After"), want)
		}
	}
}
