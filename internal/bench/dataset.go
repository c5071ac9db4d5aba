package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/dataset"
	"github.com/apimeter/apimeter/internal/progress"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
)

type DatasetCmd struct {
	Events    int64  `default:"10000000" help:"Events to write."`
	Data      string `placeholder:"DIR" help:"Data directory of the embedded store; its events.duckdb must not exist yet."`
	Org       string `default:"demo" help:"Organization of the events."`
	Env       string `default:"prod" help:"Environment of the events."`
	Users     int    `default:"50000" help:"Distinct users (Zipf-distributed calls)."`
	Companies int    `default:"2000" help:"Companies the users belong to."`
	Days      int    `default:"90" help:"Days of traffic, ending at the current hour."`
	Seed      uint64 `default:"1" help:"Seed of the generator: the same seed gives the same events."`
	Batch     int    `default:"100000" help:"Events per INSERT (ClickHouse)."`
	Floor     bool   `help:"Then time DuckDB's fastest load of as many similar rows (one INSERT ... SELECT over range()) into a scratch database beside --data, and print the ratio."`
	instance.StoreConfig
}

// Run writes a generated quarter through the store's bulk path (on DuckDB,
// an INSERT ... SELECT that generates the events, then the rollups folded
// as the background pass would; on ClickHouse, INSERTs whose materialized
// views fill the rollups). It prints a progress line, the rates and the
// disk size.
func (c *DatasetCmd) Run(ctx context.Context) error {
	if c.Events <= 0 || c.Batch <= 0 || c.Users <= 0 || c.Companies <= 0 || c.Days <= 0 {
		return errors.New("--events, --batch, --users, --companies and --days must be positive")
	}
	cfg := dataset.Config{Events: c.Events, Org: c.Org, Env: c.Env, Users: c.Users, Companies: c.Companies,
		Span: time.Duration(c.Days) * 24 * time.Hour, Seed: c.Seed}
	g := dataset.New(cfg)
	cfg = g.Config()
	fmt.Printf("generating %d events of %s/%s from %s to %s: %d users, %d companies\n",
		c.Events, cfg.Org, cfg.Env, cfg.Start().Format(time.DateTime), cfg.End.Format(time.DateTime), cfg.Users, cfg.Companies)
	if !c.ClickHouse() {
		return c.duckDB(ctx, g)
	}
	st, err := clickhouse.Open(ctx, c.Store, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return &instance.StoreError{Store: c.StoreConfig.String(), Err: err}
	}
	defer st.Close()
	var cols clickhouse.Columns
	write := func(events []apimeter.Event) error {
		now := time.Now().UTC().Truncate(time.Second)
		for i := range events {
			cols.Add(&events[i], now)
		}
		err := clickhouse.SendColumns(ctx, st.Conn(), &cols)
		cols.Reset()
		return err
	}
	finish := func() error {
		var bytes, rows uint64
		if err := st.Conn().QueryRow(ctx, `SELECT sum(bytes_on_disk), sumIf(rows, table = 'events') FROM system.parts WHERE database = currentDatabase() AND active`).Scan(&bytes, &rows); err != nil {
			return err
		}
		fmt.Printf("disk: %.2f GiB in the database (events and rollups, parts not yet merged included)\n", float64(bytes)/(1<<30))
		return nil
	}
	// The generator fills one batch while the store writes the other.
	bufs := make(chan []apimeter.Event, 2)
	bufs <- make([]apimeter.Event, c.Batch)
	bufs <- make([]apimeter.Event, c.Batch)
	filled := make(chan []apimeter.Event, 1)
	go func() {
		defer close(filled)
		for buf := range bufs {
			n := g.Fill(buf)
			if n == 0 {
				return
			}
			select {
			case filled <- buf[:n]:
			case <-ctx.Done():
				return
			}
		}
	}()
	began := time.Now()
	bar := progress.Start(os.Stderr, "write", "events", c.Events)
	var done int64
	for batch := range filled {
		if err := write(batch); err != nil {
			bar.Finish()
			return fmt.Errorf("write after %d events: %w", done, err)
		}
		done += int64(len(batch))
		bar.Add(int64(len(batch)))
		bufs <- batch[:cap(batch)]
	}
	close(bufs)
	bar.Finish()
	if err := ctx.Err(); err != nil {
		return err
	}
	el := time.Since(began)
	fmt.Printf("wrote %d events in %s: %.0f events/s\n", done, el.Round(time.Millisecond), float64(done)/el.Seconds())
	return finish()
}

// dirSize is the bytes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// duckDB writes the quarter into a new embedded store with DuckDB's own
// INSERT ... SELECT (dataset.DuckDB), a chunk of minutes per transaction,
// then folds the rollups as the background pass would and checkpoints.
func (c *DatasetCmd) duckDB(ctx context.Context, g *dataset.Generator) error {
	if c.Data == "" {
		return errors.New("--data is required for the embedded store")
	}
	if err := os.MkdirAll(c.Data, 0o750); err != nil {
		return err
	}
	path := filepath.Join(c.Data, instance.DBFile)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists: give an empty --data directory", path)
	}
	st, err := duckdb.Open(ctx, path, duckdb.Options{DailyInterval: -1, NoDedupe: true})
	if err != nil {
		return err
	}
	defer st.Close()
	db := st.DB()
	gen := g.DuckDB()
	cpu0 := cpuTime()
	began := time.Now()
	for _, q := range gen.Setup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("dataset tables: %w", err)
		}
	}
	bar := progress.Start(os.Stderr, "write", "events", c.Events)
	var done int64
	for _, ch := range gen.Chunks {
		if _, err := db.ExecContext(ctx, gen.Insert, c.Org, c.Env, ch.From, ch.To); err != nil {
			bar.Finish()
			return fmt.Errorf("write after %d events: %w", done, err)
		}
		done += ch.Events
		bar.Add(ch.Events)
	}
	bar.Finish()
	for _, q := range gen.Cleanup {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	wrote, cpu1 := time.Since(began), cpuTime()
	fmt.Printf("wrote %d events in %s: %.0f events/s (%.1f CPU s)\n", done, wrote.Round(time.Millisecond), float64(done)/wrote.Seconds(), (cpu1 - cpu0).Seconds())
	t := time.Now()
	hours, err := st.BuildRollups(ctx)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	cpu2 := cpuTime()
	fmt.Printf("folded %d hours into the rollups in %s (%.1f CPU s)\n", hours, time.Since(t).Round(time.Millisecond), (cpu2 - cpu1).Seconds())
	total := time.Since(began)
	fmt.Printf("total %s (%.1f CPU s); disk: %.2f GiB in %s\n", total.Round(time.Second), (cpu2 - cpu0).Seconds(), float64(dirSize(c.Data))/(1<<30), c.Data)
	if !c.Floor {
		return nil
	}
	floor, floorCPU, err := c.floor(ctx, g)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	fmt.Printf("floor (one INSERT ... SELECT of %d similar rows from range()): %s (%.1f CPU s); write / floor %.2f (CPU %.2f), write and fold / floor %.2f (CPU %.2f)\n",
		c.Events, floor.Round(time.Millisecond), floorCPU.Seconds(), wrote.Seconds()/floor.Seconds(), (cpu1-cpu0).Seconds()/floorCPU.Seconds(),
		total.Seconds()/floor.Seconds(), (cpu2-cpu0).Seconds()/floorCPU.Seconds())
	return nil
}

// floor times DuckDB's fastest load of rows like the dataset's into the
// events table of a scratch database, removed afterwards.
func (c *DatasetCmd) floor(ctx context.Context, g *dataset.Generator) (time.Duration, time.Duration, error) {
	path := filepath.Join(c.Data, "floor.duckdb")
	defer os.Remove(path + ".wal")
	defer os.Remove(path)
	st, err := duckdb.Open(ctx, path, duckdb.Options{DailyInterval: -1, NoDedupe: true})
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	cpu0, began := cpuTime(), time.Now()
	if _, err := st.DB().ExecContext(ctx, g.DuckDBFloor(), c.Org, c.Env); err != nil {
		return 0, 0, err
	}
	if _, err := st.DB().ExecContext(ctx, "CHECKPOINT"); err != nil {
		return 0, 0, err
	}
	return time.Since(began), cpuTime() - cpu0, nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
