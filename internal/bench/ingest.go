package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/progress"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

type IngestCmd struct {
	Events     int           `default:"300000" help:"Events to send (bounded load)."`
	Clients    int           `default:"8" help:"Concurrent clients."`
	Batch      int           `default:"500" help:"Events per batch."`
	DupRate    float64       `default:"0" help:"Share of events sent a second time (retries), 0 to 1."`
	NoDedupe   bool          `help:"Turn the idempotency check off (to measure its cost)."`
	Timeout    time.Duration `default:"5m" help:"Give up after this long."`
	SkipRaw    bool          `help:"Skip the raw appender measurement."`
	LogLevel   slog.Level    `default:"error" help:"Log level of the server under test (debug shows each commit)."`
	CPUProfile string        `help:"Write a CPU profile of the collector run to this file."`
	Redis      string        `placeholder:"URL" help:"Redis URL for the alias table and usage counters of the server under test (required with a ClickHouse --store); the run leaves its counters there, under a prefix of its own."`
	instance.StoreConfig
}

func (c *IngestCmd) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "apimeter-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Prepare every batch body up front so the clients only send. Only the
	// bodies are kept (no pointers for the collector's GC to scan).
	gen := workload.New(42, 30*24*time.Hour)
	gen.IDs = true
	var bodies [][]byte
	var dupBodies [][]byte
	distinct := 0
	dups := int(float64(c.Events) * c.DupRate)
	for sent := 0; sent < c.Events; {
		n := min(c.Batch, c.Events-sent)
		body, err := json.Marshal(gen.Batch(n))
		if err != nil {
			return err
		}
		bodies = append(bodies, body)
		if sent < dups {
			dupBodies = append(dupBodies, body)
		}
		sent += n
		distinct += n
	}
	// Resent batches go after the originals, spread evenly.
	stream := make([][]byte, 0, len(bodies)+len(dupBodies))
	stream = append(stream, bodies...)
	for i, b := range dupBodies {
		at := min(len(stream), (i+1)*len(bodies)/max(1, len(dupBodies)))
		stream = append(stream[:at], append([][]byte{b}, stream[at:]...)...)
	}
	total := distinct + min(dups, len(dupBodies)*c.Batch)

	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "server"), BodyCap: 1024,
		MaxBodyBytes: 32 << 20, MaxBatchEvents: 10000, DedupeHorizon: 168 * time.Hour, LogLevel: c.LogLevel,
		StoreConfig: c.StoreConfig, IdentityConfig: instance.IdentityConfig{Redis: c.Redis, RedisPrefix: fmt.Sprintf("apimeter-bench-%d:", time.Now().Unix())}}
	if c.ClickHouse() {
		// A database of its own per run, dropped at the end: the same ids
		// again would all be duplicates, and this run's fingerprint key
		// is not the one of a database used before.
		db, err := benchDatabase(&f.StoreConfig)
		if err != nil {
			return err
		}
		defer dropDatabase(f.Store, db)
	}
	// The id before the server: a running server learns of an id created
	// elsewhere on its next look at the catalog, up to a second later.
	cat, done, err := instance.OpenCatalog(ctx, f.StoreConfig, f.Data)
	if err != nil {
		return err
	}
	a, err := cat.CreateApp(ctx, "bench", "prod")
	done()
	if err != nil {
		return err
	}
	in, err := instance.StartWith(ctx, f, instance.Options{NoDedupe: c.NoDedupe})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.Clients, WriteBufferSize: 256 << 10}}
	work := make(chan []byte)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	stored := 0
	if c.CPUProfile != "" {
		pf, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
	}
	began := time.Now()
	bar := progress.Start(os.Stderr, "collector", "batches", int64(len(stream)))
	for i := 0; i < c.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				res, err := demo.PostRaw(ctx, client, in.URL, a.ID, body)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				stored += res.Stored
				mu.Unlock()
				bar.Add(1)
			}
		}()
	}
	for _, b := range stream {
		work <- b
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(began)
	bar.Finish()
	if c.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	in.Close()
	if firstErr != nil {
		return firstErr
	}
	rate := float64(total) / elapsed.Seconds()
	fmt.Printf("collector: %d events (%d distinct, %d stored) in %d batches of %d from %d clients: %.0f events/s (%v)\n",
		total, distinct, stored, len(stream), c.Batch, c.Clients, rate, elapsed.Round(time.Millisecond))
	if c.SkipRaw {
		return nil
	}

	if c.ClickHouse() {
		// The limit: the same rows in bare INSERTs as large as the store's
		// groups get, into the same table, with no HTTP, JSON or dedupe
		// set.
		rawDur, rows, err := rawInsert(ctx, f.Store, "bench-raw", bodies)
		if err != nil {
			return err
		}
		rawRate := float64(rows) / rawDur.Seconds()
		fmt.Printf("raw insert: %d rows, INSERTs of up to %d: %.0f rows/s (%v)\n", rows, rawInsertRows, rawRate, rawDur.Round(time.Millisecond))
		fmt.Printf("collector / raw insert: %.2f\n", rate/rawRate)
		return nil
	}
	// The limit: the same rows through DuckDB's appender, committed every
	// batch, with no HTTP, JSON or checks.
	rawDur, rows, err := rawAppend(ctx, filepath.Join(dir, "raw.duckdb"), bodies)
	if err != nil {
		return err
	}
	rawRate := float64(rows) / rawDur.Seconds()
	fmt.Printf("raw appender: %d rows, commit every %d: %.0f rows/s (%v)\n", rows, c.Batch, rawRate, rawDur.Round(time.Millisecond))
	fmt.Printf("collector / raw appender: %.2f\n", rate/rawRate)
	return nil
}

// benchDatabase points f at a new database named after the one it names
// and the time, and returns its name.
func benchDatabase(f *instance.StoreConfig) (string, error) {
	u, err := url.Parse(f.Store)
	if err != nil {
		return "", fmt.Errorf("--store %s: %w", f, err)
	}
	q := u.Query()
	db := strings.TrimPrefix(u.Path, "/")
	if q.Has("database") {
		db = q.Get("database")
	}
	db = fmt.Sprintf("%s_bench_%d", db, time.Now().Unix())
	if q.Has("database") {
		q.Set("database", db)
		u.RawQuery = q.Encode()
	} else {
		u.Path = "/" + db
	}
	f.Store = u.String()
	return db, nil
}

// dropDatabase drops database db of the ClickHouse server at dsn.
func dropDatabase(dsn, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "drop database %s: %v\n", db, err)
		return
	}
	defer st.Close()
	if err := st.Conn().Exec(ctx, "DROP DATABASE IF EXISTS `"+strings.ReplaceAll(db, "`", "")+"`"); err != nil {
		fmt.Fprintf(os.Stderr, "drop database %s: %v\n", db, err)
	}
}

// benchEvents decodes a batch body into scrubbed events of org, as the
// collector would store them.
func benchEvents(body []byte, org string, scrubber *scrub.Scrubber) ([]apimeter.Event, error) {
	var ms []moesif.Event
	if err := json.Unmarshal(body, &ms); err != nil {
		return nil, err
	}
	events := make([]apimeter.Event, len(ms))
	for i := range ms {
		var err error
		if events[i], err = ms[i].ToEvent(org, "prod", i); err != nil {
			return nil, err
		}
		scrubber.Scrub(&events[i])
	}
	moesif.NumberRepeats(ms, events)
	return events, nil
}

// rawInsertRows is the most rows rawInsert puts in one INSERT: the most
// the store's writer groups into one (clickhouse.Options.MaxGroupRows).
const rawInsertRows = 65536

// rawInsert sends the events of the batch bodies, as org, to the events
// table of the ClickHouse store at dsn, in INSERTs of up to rawInsertRows.
// Only the INSERTs are timed.
func rawInsert(ctx context.Context, dsn, org string, bodies [][]byte) (time.Duration, int, error) {
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return 0, 0, &instance.StoreError{Store: clickhouse.Redact(dsn), Err: err}
	}
	defer st.Close()
	scrubber := scrub.New(nil, nil, 1024)
	var cols clickhouse.Columns
	var took time.Duration
	rows := 0
	send := func() error {
		began := time.Now()
		if err := clickhouse.SendColumns(ctx, st.Conn(), &cols); err != nil {
			return err
		}
		took += time.Since(began)
		rows += cols.Len()
		cols.Reset()
		return nil
	}
	for _, body := range bodies {
		events, err := benchEvents(body, org, scrubber)
		if err != nil {
			return 0, 0, err
		}
		now := time.Now().UTC().Truncate(time.Second)
		for i := range events {
			cols.Add(&events[i], now)
		}
		if cols.Len() >= rawInsertRows-len(events) {
			if err := send(); err != nil {
				return 0, 0, err
			}
		}
	}
	if cols.Len() > 0 {
		if err := send(); err != nil {
			return 0, 0, err
		}
	}
	return took, rows, nil
}

// rawAppend writes the events of each batch body through a bare DuckDB
// appender into a new file, one commit per batch. Only the appends and
// commits are timed; decoding the bodies is not.
func rawAppend(ctx context.Context, path string, bodies [][]byte) (time.Duration, int, error) {
	raw, err := duckdb.OpenRaw(ctx, path)
	if err != nil {
		return 0, 0, err
	}
	defer raw.Close()
	scrubber := scrub.New(nil, nil, 1024)
	var took time.Duration
	rows := 0
	for _, body := range bodies {
		events, err := benchEvents(body, "bench", scrubber)
		if err != nil {
			return 0, 0, err
		}
		began := time.Now()
		if err := raw.Append(events); err != nil {
			return 0, 0, err
		}
		if err := raw.Commit(); err != nil {
			return 0, 0, err
		}
		took += time.Since(began)
		rows += len(events)
	}
	return took, rows, nil
}
