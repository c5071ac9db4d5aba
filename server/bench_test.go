package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

const benchBatch = 500

// benchBodies returns n batch bodies of benchBatch generated events; with
// dupEvery > 0 every dupEvery-th body repeats an earlier one (retries).
func benchBodies(b *testing.B, n, dupEvery int) [][]byte {
	b.Helper()
	gen := workload.New(11, 30*24*time.Hour)
	gen.IDs = true
	out := make([][]byte, n)
	for i := range out {
		if dupEvery > 0 && i > 0 && i%dupEvery == 0 {
			out[i] = out[i-1]
			continue
		}
		body, err := json.Marshal(gen.Batch(benchBatch))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = body
	}
	return out
}

// BenchmarkIngest measures the collector's ingest path (HTTP handler,
// decoding, scrubbing, dedupe, group commit into DuckDB) against its limit,
// DuckDB's appender writing the same rows with a commit per batch, in the
// same run. One op is one event; compare the events/s metrics:
//
//	go test ./server -run XXX -bench Ingest -benchtime 400x
func BenchmarkIngest(b *testing.B) {
	b.Run("raw-appender", func(b *testing.B) {
		bodies := benchBodies(b, max(1, b.N/benchBatch), 0)
		raw, err := duckdb.OpenRaw(context.Background(), filepath.Join(b.TempDir(), "raw.duckdb"))
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		scrubber := scrub.New(nil, nil, -1)
		batches := make([][]apimeter.Event, len(bodies))
		for i, body := range bodies {
			ms, err := moesif.DecodeBatch(body, moesif.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			for j := range ms {
				ev, err := ms[j].ToEvent("bench", "prod", j)
				if err != nil {
					b.Fatal(err)
				}
				scrubber.Scrub(&ev)
				batches[i] = append(batches[i], ev)
			}
		}
		b.ResetTimer()
		for _, evs := range batches {
			if err := raw.Append(evs); err != nil {
				b.Fatal(err)
			}
			if err := raw.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(len(batches)*benchBatch)/b.Elapsed().Seconds(), "events/s")
	})
	for _, c := range []struct {
		name     string
		dupEvery int
		noDedupe bool
	}{
		{"collector", 0, false},
		{"collector-10pct-dups", 10, false},
		{"collector-10pct-dups-nocheck", 10, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			bodies := benchBodies(b, max(1, b.N/benchBatch), c.dupEvery)
			dir := b.TempDir()
			st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{NoDedupe: c.noDedupe})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			a, _ := apps.Create(dir, "bench", "prod")
			reg, _ := apps.Open(dir)
			h := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1)})
			// Four concurrent senders, as several SDK instances would be.
			work := make(chan []byte)
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for body := range work {
						req := httptest.NewRequest(http.MethodPost, "/v1/events/batch", bytes.NewReader(body))
						req.Header.Set(server.AppIDHeader, a.ID)
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != 200 {
							b.Errorf("collector answered %d: %s", rec.Code, rec.Body.Bytes())
						}
					}
				}()
			}
			for _, body := range bodies {
				work <- body
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(len(bodies)*benchBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
