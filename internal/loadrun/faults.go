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
	ServeArgs   []string      // extra flags for serve
	Env         []string      // extra environment of the server process
	Out         io.Writer     // progress lines
}

// FaultReport is what a fault run found.
type FaultReport struct {
	Acknowledged   int // events the collector answered 200 for
	PresentOnce    int // of those, stored exactly once
	Missing        int // acknowledged and not stored
	Doubled        int // stored more than once
	GoodRefused    int // good batches refused with a 4xx (failed by someone else's data)
	GoodGaveUp     int // good batches still unacknowledged at the end
	GoodBatches    int
	GoodStatuses   map[int]int
	Poison         map[string]map[int]int
	SlowCut        int64
	SlowHeldMedian time.Duration
	SlowHeldMax    time.Duration
	PeakRSS        int64
	Kills          int
	RedisStopped   time.Duration
	Took           time.Duration
}

// Faults runs the fault-and-load scenario and reads the events back.
func Faults(ctx context.Context, c FaultConfig) (FaultReport, error) {
	started := time.Now()
	logf := func(format string, a ...any) {
		if c.Out != nil {
			fmt.Fprintf(c.Out, "%6.1fs  %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
		}
	}
	var rep FaultReport
	ws, err := newWorkspace("apimeter-faults-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	dir, data, addr, logFile := ws.dir, ws.data, ws.addr, ws.log
	good, err := apps.Create(data, "faults", "prod")
	if err != nil {
		return rep, err
	}
	bad, err := apps.Create(data, "faults", "prod")
	if err != nil {
		return rep, err
	}
	args := append([]string{"--data", data, "--stats-quota", "0"}, c.ServeArgs...)

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
	var wg sync.WaitGroup
	senders := make([]*sender, c.Senders)
	for i := range senders {
		senders[i] = newSender(i, url, good.ID, c.Batch)
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
	// then Redis stopped.
	steps := c.Kills + 1
	if c.Redis {
		steps++
	}
	every := c.Duration / time.Duration(steps+1)
	for k := 1; k <= c.Kills; k++ {
		if !sleep(load, every) {
			break
		}
		srv.Kill9()
		rep.Kills++
		logf("server SIGKILLed (%d of %d)", k, c.Kills)
		time.Sleep(time.Second)
		if err := srv.Start(ctx); err != nil {
			return rep, fmt.Errorf("restart after kill %d: %w (log: %s)", k, err, tail(logFile.Name()))
		}
		logf("server restarted")
	}
	if c.Redis && sleep(load, every) {
		redisCmd.Process.Signal(syscall.SIGSTOP)
		logf("redis stopped (SIGSTOP) for %s", c.RedisStop)
		time.Sleep(c.RedisStop)
		redisCmd.Process.Signal(syscall.SIGCONT)
		rep.RedisStopped = c.RedisStop
		logf("redis continued")
	}
	<-load.Done()
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
	if p != nil {
		rep.Poison = p.answers
	}
	rep.SlowCut = flood.cut.Load()
	if len(flood.held) > 0 {
		slices.Sort(flood.held)
		rep.SlowHeldMedian = flood.held[len(flood.held)/2]
		rep.SlowHeldMax = flood.held[len(flood.held)-1]
	}
	counts, err := storedCounts(ctx, filepath.Join(data, "events.duckdb"), "s")
	if err != nil {
		return rep, err
	}
	for id := range acked {
		switch n := counts[id]; {
		case n == 0:
			rep.Missing++
		case n == 1:
			rep.PresentOnce++
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

// storedCounts reads how many times each event id that starts with prefix
// is stored ("s" for the good senders' ids; "" for every id).
func storedCounts(ctx context.Context, path, prefix string) (map[string]int, error) {
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT id, count(*) FROM events WHERE starts_with(id, ?) GROUP BY id`, prefix)
	if err != nil {
		return nil, fmt.Errorf("read events back: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
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
	fmt.Fprintf(w, "run: %s, %d SIGKILLs, redis stopped %s\n", r.Took.Round(time.Second), r.Kills, r.RedisStopped)
	fmt.Fprintf(w, "acknowledged events: %d\n", r.Acknowledged)
	fmt.Fprintf(w, "present once: %d, missing: %d, doubled: %d\n", r.PresentOnce, r.Missing, r.Doubled)
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
	fmt.Fprintf(w, "slow clients cut: %d, held median %s, max %s\n", r.SlowCut, r.SlowHeldMedian.Round(100*time.Millisecond), r.SlowHeldMax.Round(100*time.Millisecond))
	fmt.Fprintf(w, "server peak RSS: %d MiB\n", r.PeakRSS>>20)
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
