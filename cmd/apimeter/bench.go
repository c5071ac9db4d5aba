package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	duckdbdrv "github.com/duckdb/duckdb-go/v2"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

type benchCmd struct {
	Ingest  benchIngestCmd  `cmd:"" help:"Post batches of generated events from concurrent clients and compare with DuckDB's raw appender."`
	Capture benchCaptureCmd `cmd:"" help:"Loopback load run: the same API bare and wrapped by the capture middleware, in alternating rounds."`
}

type benchIngestCmd struct {
	Events   int           `default:"300000" help:"Events to send (bounded load)."`
	Clients  int           `default:"4" help:"Concurrent clients."`
	Batch    int           `default:"500" help:"Events per batch."`
	DupRate  float64       `default:"0" help:"Share of events sent a second time (retries), 0 to 1."`
	NoDedupe bool          `help:"Turn the idempotency check off (to measure its cost)."`
	Timeout  time.Duration `default:"5m" help:"Give up after this long."`
	SkipRaw  bool          `help:"Skip the raw appender measurement."`
}

func (c *benchIngestCmd) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "apimeter-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Prepare every batch body up front so the clients only send.
	gen := workload.New(42, 30*24*time.Hour)
	gen.IDs = true
	var bodies [][]byte
	var all []apimeter.MoesifEvent
	for sent := 0; sent < c.Events; {
		n := min(c.Batch, c.Events-sent)
		b := gen.Batch(n)
		all = append(all, b...)
		sent += n
	}
	dups := int(float64(len(all)) * c.DupRate)
	stream := append(all[:len(all):len(all)], all[:dups]...)
	for i := 0; i < len(stream); i += c.Batch {
		body, err := json.Marshal(stream[i:min(i+c.Batch, len(stream))])
		if err != nil {
			return err
		}
		bodies = append(bodies, body)
	}

	f := serverFlags{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "server"), BodyCap: 1024,
		MaxBodyBytes: 32 << 20, MaxBatchEvents: 10000, DedupeHorizon: 168 * time.Hour, LogLevel: 8}
	in, err := startWith(ctx, f, duckdb.Options{NoDedupe: c.NoDedupe})
	if err != nil {
		return err
	}
	a, err := apps.Create(f.Data, "bench", "prod")
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.Clients}}
	work := make(chan []byte)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	stored := 0
	began := time.Now()
	for i := 0; i < c.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				res, err := postRaw(ctx, client, in.URL, a.ID, body)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				stored += res.Stored
				mu.Unlock()
			}
		}()
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(began)
	in.Close()
	if firstErr != nil {
		return firstErr
	}
	rate := float64(len(stream)) / elapsed.Seconds()
	fmt.Printf("collector: %d events (%d distinct, %d stored) in %d batches of %d from %d clients: %.0f events/s (%v)\n",
		len(stream), len(all), stored, len(bodies), c.Batch, c.Clients, rate, elapsed.Round(time.Millisecond))
	if c.SkipRaw {
		return nil
	}

	// The limit: the same rows through DuckDB's appender, committed every
	// batch, with no HTTP, JSON or checks.
	scrub := apimeter.NewScrubber(nil, nil, 1024)
	events := make([]apimeter.Event, len(all))
	for i := range all {
		ev, err := all[i].ToEvent("bench", "prod", i)
		if err != nil {
			return err
		}
		scrub.Scrub(&ev)
		events[i] = ev
	}
	rawDur, err := rawAppend(ctx, filepath.Join(dir, "raw.duckdb"), events, c.Batch)
	if err != nil {
		return err
	}
	rawRate := float64(len(events)) / rawDur.Seconds()
	fmt.Printf("raw appender: %d rows, commit every %d: %.0f rows/s (%v)\n", len(events), c.Batch, rawRate, rawDur.Round(time.Millisecond))
	fmt.Printf("collector / raw appender: %.2f\n", rate/rawRate)
	return nil
}

// rawAppend writes events through a bare DuckDB appender into a new file.
func rawAppend(ctx context.Context, path string, events []apimeter.Event, every int) (time.Duration, error) {
	connector, err := duckdbdrv.NewConnector(path, nil)
	if err != nil {
		return 0, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	if _, err := db.ExecContext(ctx, duckdb.Schema); err != nil {
		return 0, err
	}
	conn, err := connector.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	app, err := duckdbdrv.NewAppenderFromConn(conn, "", "events")
	if err != nil {
		return 0, err
	}
	defer app.Close()
	var row []driver.Value
	now := time.Now().UTC()
	began := time.Now()
	for i := range events {
		row = duckdb.RowValues(row[:0], &events[i], now)
		if err := app.AppendRow(row...); err != nil {
			return 0, err
		}
		if (i+1)%every == 0 {
			if err := app.Flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := app.Flush(); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}
