package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/store/clickhouse"
)

// createBenchApp creates the bench's application id where the server
// reads them: the apps file, or the ClickHouse store's apps table.
func createBenchApp(ctx context.Context, f serverFlags) (apps.App, error) {
	if f.Store == "" {
		return apps.Create(f.Data, "bench", "prod")
	}
	st, err := openAppsStore(ctx, f.Store)
	if err != nil {
		return apps.App{}, err
	}
	defer st.Close()
	return st.CreateApp(ctx, "bench", "prod")
}

// emptyClickHouse removes the events of earlier runs from the bench
// database, so that the dedupe set starts empty as with a new DuckDB file.
func emptyClickHouse(ctx context.Context, url string) error {
	st, err := openAppsStore(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Conn().Exec(ctx, "TRUNCATE TABLE events")
}

// rawClickHouse is the limit the collector is compared with on ClickHouse:
// the same rows, already in columns, sent with bare PrepareBatch inserts
// into the emptied events table after the collector run: one INSERT per batch as the senders batched
// them (sequential), then in INSERTs of 65,536 rows (the collector's
// largest group). Only the inserts are timed.
func rawClickHouse(ctx context.Context, url string, bodies [][]byte, batch int, collectorRate float64) error {
	st, err := openAppsStore(ctx, url)
	if err != nil {
		return err
	}
	defer st.Close()
	conn := st.Conn()
	scrub := apimeter.NewScrubber(nil, nil, 1024)
	var all []apimeter.Event
	var perBatch []*clickhouse.Columns
	now := time.Now().UTC().Truncate(time.Second)
	for _, body := range bodies {
		var ms []apimeter.MoesifEvent
		if err := json.Unmarshal(body, &ms); err != nil {
			return err
		}
		cols := &clickhouse.Columns{}
		for i := range ms {
			e, err := ms[i].ToEvent("raw", "prod", i)
			if err != nil {
				return err
			}
			scrub.Scrub(&e)
			cols.Add(&e, now)
			all = append(all, e)
		}
		perBatch = append(perBatch, cols)
	}
	var big []*clickhouse.Columns
	for i := 0; i < len(all); i += 65536 {
		cols := &clickhouse.Columns{}
		for j := i; j < min(i+65536, len(all)); j++ {
			cols.Add(&all[j], now)
		}
		big = append(big, cols)
	}
	run := func(name string, groups []*clickhouse.Columns) (float64, error) {
		if err := conn.Exec(ctx, "TRUNCATE TABLE events"); err != nil {
			return 0, err
		}
		began := time.Now()
		for _, g := range groups {
			if err := clickhouse.SendColumns(ctx, conn, g); err != nil {
				return 0, fmt.Errorf("raw insert: %w", err)
			}
		}
		took := time.Since(began)
		rate := float64(len(all)) / took.Seconds()
		fmt.Printf("raw PrepareBatch, %s: %d rows in %d INSERTs: %.0f rows/s (%v)\n", name, len(all), len(groups), rate, took.Round(time.Millisecond))
		return rate, nil
	}
	small, err := run(fmt.Sprintf("one INSERT per batch of %d", batch), perBatch)
	if err != nil {
		return err
	}
	large, err := run("INSERTs of 65,536 rows", big)
	if err != nil {
		return err
	}
	fmt.Printf("collector / raw per batch: %.2f; collector / raw 65,536-row INSERTs: %.2f\n", collectorRate/small, collectorRate/large)
	return conn.Exec(ctx, "TRUNCATE TABLE events")
}
