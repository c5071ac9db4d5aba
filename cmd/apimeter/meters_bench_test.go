package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/workload"
)

// BenchmarkUsageIngestVsCollector posts usage events (CloudEvents batches
// to /api/v1/events, each answered 204 once durable) and API calls (Moesif
// batches to the collector, each answered once durable) to one server with
// the embedded store, from 8 clients, in alternating rounds of
// APIMETER_BENCH_INGEST events each (default 100,000), and reports both
// rates and their ratio: the usage ingest against the collector's, in the
// same run.
func BenchmarkUsageIngestVsCollector(b *testing.B) {
	per := 100_000
	if v := os.Getenv("APIMETER_BENCH_INGEST"); v != "" {
		per, _ = strconv.Atoi(v)
	}
	const rounds, clients, batch = 3, 8, 500
	ctx := context.Background()
	data := filepath.Join(b.TempDir(), "data")
	in, err := instance.Start(ctx, instance.Config{Listen: "127.0.0.1:0", Data: data, BodyCap: 1024, MaxBodyBytes: 32 << 20,
		MaxBatchEvents: 10000, DedupeHorizon: 168 * time.Hour, DailyInterval: -1,
		IngestCaps: instance.IngestCaps{MaxMetadataBytes: 65536}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	app, err := apps.Create(data, "bench", "prod")
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := in.Keys.Create(auth.Spec{Org: "bench", Scope: auth.ScopeAdmin})
	if err != nil {
		b.Fatal(err)
	}
	// Every body is made before the clock starts; every event is new.
	gen := workload.New(42, 30*24*time.Hour)
	gen.IDs = true
	collector := make([][][]byte, rounds)
	usage := make([][][]byte, rounds)
	seq := 0
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for r := range rounds {
		for sent := 0; sent < per; sent += batch {
			body, _ := json.Marshal(gen.Batch(batch))
			collector[r] = append(collector[r], body)
			evs := make([]cloudEvent, batch)
			for i := range evs {
				seq++
				evs[i] = cloudEvent{SpecVersion: "1.0", ID: strconv.Itoa(seq), Source: "bench", Type: "tokens",
					Subject: "customer-" + strconv.Itoa(seq%500), Time: start.Add(time.Duration(seq) * time.Second).Format(time.RFC3339),
					Data: map[string]any{"tokens": seq % 1000, "model": "gpt-4", "user": "u" + strconv.Itoa(seq%50)}}
			}
			body, _ = json.Marshal(evs)
			usage[r] = append(usage[r], body)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	post := func(bodies [][]byte, url, ctype, hdr, cred string, want int) time.Duration {
		var next sync.Mutex
		i := 0
		var wg sync.WaitGroup
		t0 := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					next.Lock()
					if i == len(bodies) {
						next.Unlock()
						return
					}
					body := bodies[i]
					i++
					next.Unlock()
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
					req.Header.Set("Content-Type", ctype)
					req.Header.Set(hdr, cred)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != want {
						b.Errorf("%s: %d", url, resp.StatusCode)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	var tc, tu time.Duration
	// One run of alternating rounds, whatever b.N (a run takes seconds,
	// so the framework asks for one): the events are spent after it.
	b.ResetTimer()
	for r := range rounds {
		tc += post(collector[r], in.URL+"/v1/events/batch", "application/json", "X-Moesif-Application-Id", app.ID, http.StatusOK)
		tu += post(usage[r], in.URL+"/api/v1/events", "application/cloudevents-batch+json", "Authorization", "Bearer "+key, http.StatusNoContent)
	}
	n := float64(rounds * len(collector[0]) * batch)
	cr, ur := n/tc.Seconds(), n/tu.Seconds()
	b.ReportMetric(cr, "collector-events/s")
	b.ReportMetric(ur, "usage-events/s")
	b.ReportMetric(ur/cr, "usage/collector")
	fmt.Fprintf(os.Stderr, "usage ingest %.0f events/s, collector %.0f events/s, ratio %.2f (%d rounds of %d events each)\n", ur, cr, ur/cr, rounds, len(collector[0])*batch)
}
