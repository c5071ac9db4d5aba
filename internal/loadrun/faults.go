package loadrun

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the events file is read back after the run

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chserver"
)

// FaultConfig configures a fault run.
type FaultConfig struct {
	Bin         string        // the apimeter binary
	Duration    time.Duration // load phase; faults are spread over it
	Senders     int           // good senders, each with its own ids
	Batch       int           // events per good batch
	Kills       int           // SIGKILL and restart this many times
	Redis       bool          // run the identity on a redis-server child and stop it for RedisStop
	RedisStop   time.Duration // how long Redis is stopped (SIGSTOP)
	SlowClients int           // connections of the slow-client flood
	Poison      bool          // run the poison sender
	// ClickHouse runs the store on a clickhouse-server child instead of
	// the embedded DuckDB file (with Redis, which a shared store needs).
	ClickHouse bool
	// ClickHouseDown, with ClickHouse, kills clickhouse-server with
	// SIGKILL mid-load and starts it again on the same data this long
	// after; zero leaves it running.
	ClickHouseDown time.Duration
	ServeArgs      []string  // extra flags for serve
	Env            []string  // extra environment of the server process
	Out            io.Writer // progress lines
}

// FaultReport is what a fault run found.
type FaultReport struct {
	Store        string // "duckdb" or "clickhouse"
	Acknowledged int    // events the collector answered 200 for
	PresentOnce  int    // of those, stored exactly once
	Missing      int    // acknowledged and not stored
	Doubled      int    // stored more than once (on ClickHouse: inserted more than once, though FINAL reads collapse them)
	// ViewMissed (ClickHouse) counts acknowledged events the events table
	// holds but a materialized view on it never saw: 18.16 fills the views
	// after the table's part is written, so a server killed in between
	// leaves them without that INSERT's rows, and the retry is then (rightly)
	// a duplicate. The rollup tables are such views.
	ViewMissed     int
	GoodRefused    int // good batches refused with a 4xx (failed by someone else's data)
	GoodGaveUp     int // good batches still unacknowledged at the end
	GoodBatches    int
	GoodStatuses   map[int]int
	Poison         map[string]map[int]int
	SlowCut        int64
	SlowHeldMedian time.Duration
	SlowHeldMax    time.Duration
	// SlowHeldStartingMax is the longest a slow client was held whose
	// connection was made while the server was down or starting after a
	// kill (those are not in SlowHeldMedian and SlowHeldMax): the kernel
	// queues it until the server accepts, and the read timeout runs from
	// the accept.
	SlowHeldStartingMax time.Duration
	SlowStarting        int
	// SlowAnswered counts slow clients the server answered (an error
	// answer) before closing; the rest saw the connection closed or reset.
	SlowAnswered   int64
	PeakRSS        int64
	Kills          int
	RedisStopped   time.Duration
	ClickHouseDown time.Duration
	// Phases are the good senders' posts by the phase they started in:
	// a batch retried across a fault counts once per post.
	Phases []PhaseReport
	// DoubledIn counts the doubled events (on ClickHouse) by the phase
	// their second insert was made in.
	DoubledIn map[string]int
	Took      time.Duration
}

// Faults runs the fault-and-load scenario and reads the events back.
func Faults(ctx context.Context, c FaultConfig) (FaultReport, error) {
	started := time.Now()
	logf := progress(c.Out, started)
	rep := FaultReport{Store: "duckdb"}
	ws, err := newWorkspace("apimeter-faults-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	dir, data, addr, logFile := ws.dir, ws.data, ws.addr, ws.log
	args := append([]string{"--data", data, "--stats-quota", "0"}, c.ServeArgs...)

	// The store: the embedded file in data, or a clickhouse-server child
	// with a witness of every row inserted (storeCounts).
	var ch *chserver.Server
	var dsn string
	createApp := func(ctx context.Context, org, env string) (apps.App, error) { return apps.Create(data, org, env) }
	if c.ClickHouse {
		rep.Store = "clickhouse"
		c.Redis = true
		if ch, err = chserver.Start(ctx, filepath.Join(dir, "clickhouse")); err != nil {
			return rep, err
		}
		defer ch.Stop()
		dsn = ch.DSN("apimeter")
		cat, closeCat, err := instance.OpenCatalog(ctx, instance.StoreConfig{Store: dsn}, data)
		if err != nil {
			return rep, err
		}
		defer closeCat()
		createApp = cat.CreateApp
		if err := createWitness(ctx, dsn); err != nil {
			return rep, err
		}
		args = append(args, "--store", dsn)
		logf("clickhouse-server on %s", ch.Addr)
	}
	good, err := createApp(ctx, "faults", "prod")
	if err != nil {
		return rep, err
	}
	bad, err := createApp(ctx, "faults", "prod")
	if err != nil {
		return rep, err
	}

	var redisCmd *exec.Cmd
	if c.Redis {
		raddr, err := FreeAddr()
		if err != nil {
			return rep, err
		}
		_, port, _ := strings.Cut(raddr, ":")
		redisCmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
		if err := redisCmd.Start(); err != nil {
			return rep, fmt.Errorf("redis-server: %w", err)
		}
		defer func() { redisCmd.Process.Signal(syscall.SIGCONT); redisCmd.Process.Kill(); redisCmd.Wait() }()
		time.Sleep(300 * time.Millisecond)
		args = append(args, "--redis", "redis://"+raddr+"/0")
		logf("redis-server on %s", raddr)
	}
	srv := &Server{Bin: c.Bin, Args: args, Addr: addr, Log: logFile, Env: c.Env}
	if err := srv.Start(ctx); err != nil {
		return rep, fmt.Errorf("%w (log: %s)", err, tail(logFile.Name()))
	}
	logf("server on %s (data %s)", addr, data)

	load, stopLoad := context.WithTimeout(ctx, c.Duration)
	defer stopLoad()
	drain, stopDrain := context.WithTimeout(ctx, c.Duration+90*time.Second)
	defer stopDrain()
	url := "http://" + addr
	ph := newPhases("steady")
	var wg sync.WaitGroup
	senders := make([]*sender, c.Senders)
	for i := range senders {
		senders[i] = newSender(i, url, good.ID, c.Batch)
		senders[i].phases = ph
		wg.Go(func() { senders[i].run(load, drain) })
	}
	var p *poisoner
	if c.Poison {
		p = &poisoner{url: url, appID: bad.ID}
		wg.Go(func() { p.run(load) })
	}
	flood := &slowFlood{addr: addr, appID: good.ID, conns: c.SlowClients}
	if c.SlowClients > 0 {
		wg.Go(func() { flood.run(load) })
	}

	// The faults, spread over the load phase: kills at even intervals,
	// then ClickHouse killed, then Redis stopped.
	steps := c.Kills + 1
	if c.Redis {
		steps++
	}
	if ch != nil && c.ClickHouseDown > 0 {
		steps++
	}
	every := c.Duration / time.Duration(steps+1)
	for k := 1; k <= c.Kills; k++ {
		if !sleep(load, every) {
			break
		}
		ph.next(fmt.Sprintf("collector SIGKILLed (%d of %d), restarting", k, c.Kills))
		flood.starting.Store(true)
		srv.Kill9()
		rep.Kills++
		logf("server SIGKILLed (%d of %d)", k, c.Kills)
		time.Sleep(time.Second)
		if err := srv.Start(ctx); err != nil {
			return rep, fmt.Errorf("restart after kill %d: %w (log: %s)", k, err, tail(logFile.Name()))
		}
		flood.starting.Store(false)
		ph.next(fmt.Sprintf("collector back (%d of %d)", k, c.Kills))
		logf("server restarted")
	}
	if ch != nil && c.ClickHouseDown > 0 && sleep(load, every) {
		ph.next(fmt.Sprintf("clickhouse SIGKILLed (%s down, then its restart)", c.ClickHouseDown))
		ch.Kill()
		logf("clickhouse-server SIGKILLed for %s", c.ClickHouseDown)
		time.Sleep(c.ClickHouseDown)
		if err := ch.Restart(ctx); err != nil {
			return rep, fmt.Errorf("restart clickhouse-server: %w", err)
		}
		rep.ClickHouseDown = c.ClickHouseDown
		ph.next("clickhouse back")
		logf("clickhouse-server restarted")
	}
	if c.Redis && sleep(load, every) {
		ph.next(fmt.Sprintf("redis stopped (SIGSTOP %s)", c.RedisStop))
		redisCmd.Process.Signal(syscall.SIGSTOP)
		logf("redis stopped (SIGSTOP) for %s", c.RedisStop)
		time.Sleep(c.RedisStop)
		redisCmd.Process.Signal(syscall.SIGCONT)
		rep.RedisStopped = c.RedisStop
		ph.next("redis continued")
		logf("redis continued")
	}
	<-load.Done()
	ph.next("after the load: retries of what is unacknowledged")
	logf("load phase over; senders retry what is unacknowledged")
	wg.Wait()
	if err := srv.Stop(); err != nil {
		return rep, err
	}
	rep.PeakRSS = srv.PeakRSS
	logf("server stopped; reading the events back")

	acked := map[string]bool{}
	rep.GoodStatuses = map[int]int{}
	for _, s := range senders {
		for _, id := range s.acked {
			acked[id] = true
		}
		rep.GoodRefused += s.refused
		rep.GoodGaveUp += s.gaveUp
		rep.GoodBatches += s.sent
		for code, n := range s.statuses {
			rep.GoodStatuses[code] += n
		}
	}
	rep.Acknowledged = len(acked)
	rep.Phases = ph.reports(0)
	if p != nil {
		rep.Poison = p.answers
	}
	rep.SlowCut, rep.SlowAnswered = flood.cut.Load(), flood.answered.Load()
	if len(flood.held) > 0 {
		slices.Sort(flood.held)
		rep.SlowHeldMedian = flood.held[len(flood.held)/2]
		rep.SlowHeldMax = flood.held[len(flood.held)-1]
	}
	if n := len(flood.heldStarting); n > 0 {
		rep.SlowStarting, rep.SlowHeldStartingMax = n, slices.Max(flood.heldStarting)
	}
	var counts, present map[string]int
	if ch != nil {
		var second map[string]time.Time
		counts, present, second, err = clickhouseCounts(ctx, dsn, "s")
		rep.DoubledIn = map[string]int{}
		for _, t := range second {
			rep.DoubledIn[rep.Phases[ph.phaseAt(t)].Name]++
		}
	} else {
		counts, err = storedCounts(ctx, filepath.Join(data, "events.duckdb"), "s")
		present = counts
	}
	if err != nil {
		return rep, err
	}
	for id := range acked {
		switch {
		case present[id] == 0:
			rep.Missing++
		case counts[id] == 1:
			rep.PresentOnce++
		case counts[id] == 0:
			rep.ViewMissed++
		}
	}
	for _, n := range counts {
		if n > 1 {
			rep.Doubled++
		}
	}
	rep.Took = time.Since(started)
	return rep, nil
}

// witnessTable is a plain MergeTree the fault run fills, through a
// materialized view, with the id of every row inserted into the events
// table: the events table is a ReplacingMergeTree, whose merges (and
// FINAL) collapse an event inserted twice, while the rollups' views
// count it twice. The witness keeps every insert.
const witnessTable = "fault_witness"

func createWitness(ctx context.Context, dsn string) error {
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = st.DB().ExecContext(ctx, "CREATE MATERIALIZED VIEW IF NOT EXISTS "+witnessTable+" ENGINE = MergeTree ORDER BY id AS SELECT id, org, now() AS inserted FROM events")
	if err != nil {
		return fmt.Errorf("create the witness view: %w", err)
	}
	return nil
}

// clickhouseCounts reads, for each event id of org faults that starts
// with prefix, how many times it was inserted (the witness) and whether
// a FINAL read of the events table holds it (what every read sees); and,
// for each id inserted more than once, when its second insert was made.
func clickhouseCounts(ctx context.Context, dsn, prefix string) (inserted, present map[string]int, second map[string]time.Time, err error) {
	st, err := clickhouse.Open(ctx, dsn, clickhouse.Options{NoDedupe: true})
	if err != nil {
		return nil, nil, nil, err
	}
	defer st.Close()
	if inserted, err = idCounts(ctx, st.DB(), "SELECT id, toInt64(count()) FROM "+witnessTable+" WHERE org = 'faults' AND startsWith(id, ?) GROUP BY id", prefix); err != nil {
		return nil, nil, nil, err
	}
	if present, err = idCounts(ctx, st.DB(), "SELECT id, toInt64(count()) FROM events FINAL WHERE org = 'faults' AND startsWith(id, ?) GROUP BY id", prefix); err != nil {
		return nil, nil, nil, err
	}
	rows, err := st.DB().QueryContext(ctx, "SELECT id, arrayElement(arraySort(groupArray(inserted)), 2) FROM "+witnessTable+
		" WHERE org = 'faults' AND startsWith(id, ?) GROUP BY id HAVING count() > 1", prefix)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read doubled events: %w", err)
	}
	defer rows.Close()
	second = map[string]time.Time{}
	for rows.Next() {
		var id string
		var t time.Time
		if err := rows.Scan(&id, &t); err != nil {
			return nil, nil, nil, err
		}
		second[id] = t
	}
	return inserted, present, second, rows.Err()
}

// storedCounts reads how many times each event id that starts with prefix
// is stored ("s" for the good senders' ids; "" for every id).
func storedCounts(ctx context.Context, path, prefix string) (map[string]int, error) {
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return idCounts(ctx, db, `SELECT id, count(*) FROM events WHERE starts_with(id, ?) GROUP BY id`, prefix)
}

// idCounts runs q, whose rows are an id and a count, and returns the counts
// by id.
func idCounts(ctx context.Context, db *sql.DB, q string, args ...any) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read events back: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = int(n)
	}
	return out, rows.Err()
}

// progress returns a printf that writes to out (nil: nowhere) each line
// after the seconds since started.
func progress(out io.Writer, started time.Time) func(format string, a ...any) {
	return func(format string, a ...any) {
		if out != nil {
			fmt.Fprintf(out, "%6.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// tail returns the last lines of a log file, for errors.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

// Print writes the report as the lines docs/reliability.md records.
func (r FaultReport) Print(w io.Writer) {
	fmt.Fprintf(w, "run: %s on %s, %d SIGKILLs, redis stopped %s, clickhouse killed for %s\n", r.Took.Round(time.Second), r.Store, r.Kills, r.RedisStopped, r.ClickHouseDown)
	fmt.Fprintf(w, "acknowledged events: %d\n", r.Acknowledged)
	fmt.Fprintf(w, "present once: %d, missing: %d, doubled: %d\n", r.PresentOnce, r.Missing, r.Doubled)
	if r.Store == "clickhouse" {
		fmt.Fprintf(w, "in the events table but never seen by a view on it (killed between the table's part and the views'): %d\n", r.ViewMissed)
	}
	fmt.Fprintf(w, "good batches: %d sent, %d refused with a 4xx, %d never acknowledged\n", r.GoodBatches, r.GoodRefused, r.GoodGaveUp)
	fmt.Fprintf(w, "good answers by status (0 = no answer: killed or refused connection): %s\n", statusLine(r.GoodStatuses))
	var kinds []string
	for k := range r.Poison {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "poison %-30s %s\n", k+":", statusLine(r.Poison[k]))
	}
	fmt.Fprintf(w, "slow clients cut: %d (%d with an answer); connected while the server was up: held median %s, max %s; connected while it was down or starting (%d): held max %s\n",
		r.SlowCut, r.SlowAnswered, r.SlowHeldMedian.Round(100*time.Millisecond), r.SlowHeldMax.Round(100*time.Millisecond), r.SlowStarting, r.SlowHeldStartingMax.Round(100*time.Millisecond))
	fmt.Fprintf(w, "server peak RSS: %d MiB\n", r.PeakRSS>>20)
	if len(r.DoubledIn) > 0 {
		fmt.Fprintf(w, "doubled events by the phase of their second insert: %v\n", r.DoubledIn)
	}
	fmt.Fprintf(w, "good senders' posts by the phase they started in:\n")
	printPhases(w, "posts", r.Phases, nil, true)
}

func statusLine(m map[int]int) string {
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", m[c], c))
	}
	return strings.Join(parts, " ")
}
