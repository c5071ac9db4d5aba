package loadrun

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apimeter/apimeter/apps"
)

// MemoryConfig configures a memory run.
type MemoryConfig struct {
	Bin       string
	Events    int // events to store
	Senders   int
	Batch     int
	ServeArgs []string
	Out       io.Writer
}

// MemoryReport is the server's resident set during and after a memory run.
type MemoryReport struct {
	Events         int
	Took           time.Duration
	PeakRSS        int64 // VmHWM at the end of the load
	RSSAfterLoad   int64 // VmRSS right after the last batch
	RSSAfterSettle int64 // VmRSS after 10 s idle
	// Dedupe are the server's apimeter_store_dedupe_* metrics after the
	// load, by name without the prefix.
	Dedupe map[string]float64
}

// Memory stores Events events through a serve child process and reads its
// resident set.
func Memory(ctx context.Context, c MemoryConfig) (MemoryReport, error) {
	var rep MemoryReport
	ws, err := newWorkspace("apimeter-memory-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	app, err := apps.Create(ws.data, "mem", "prod")
	if err != nil {
		return rep, err
	}
	srv := &Server{Bin: c.Bin, Args: append([]string{"--data", ws.data, "--log-level", "warn"}, c.ServeArgs...), Addr: ws.addr, Log: ws.log}
	if err := srv.Start(ctx); err != nil {
		return rep, err
	}
	defer srv.Stop()
	start := time.Now()
	batches := (c.Events + c.Batch - 1) / c.Batch
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range c.Senders {
		s := newSender(i, "http://"+ws.addr, app.ID, c.Batch)
		wg.Go(func() {
			gen := newGen(i)
			for ctx.Err() == nil {
				seq := int(next.Add(1)) - 1
				if seq >= batches {
					return
				}
				body, ids := s.body(gen, seq)
				s.deliver(ctx, body, ids)
				if c.Out != nil && seq%(max(1, batches/10)) == 0 {
					cur, _ := srv.RSS()
					fmt.Fprintf(c.Out, "%6.1fs  %d of %d batches, RSS %d MiB\n", time.Since(start).Seconds(), seq, batches, cur>>20)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	rep.Events = batches * c.Batch
	rep.Took = time.Since(start)
	rep.RSSAfterLoad, rep.PeakRSS = srv.RSS()
	rep.Dedupe = scrape(ctx, "http://"+ws.addr+"/metrics", "apimeter_store_dedupe_")
	time.Sleep(10 * time.Second)
	rep.RSSAfterSettle, _ = srv.RSS()
	return rep, nil
}

// Print writes the report.
func (r MemoryReport) Print(w io.Writer) {
	fmt.Fprintf(w, "events stored: %d in %s (%.0f events/s)\n", r.Events, r.Took.Round(time.Second), float64(r.Events)/r.Took.Seconds())
	fmt.Fprintf(w, "server RSS: peak %d MiB, after the load %d MiB, after 10 s idle %d MiB\n", r.PeakRSS>>20, r.RSSAfterLoad>>20, r.RSSAfterSettle>>20)
	if len(r.Dedupe) > 0 {
		fmt.Fprintf(w, "dedupe set: %.0f ids in %.1f MiB, %.0f lookups in the events table\n",
			r.Dedupe["entries"], r.Dedupe["bytes"]/(1<<20), r.Dedupe["lookups_total"])
	}
}

// scrape reads the Prometheus metrics at url whose names start with
// prefix (unlabelled ones), keyed by the rest of the name; nil when they
// cannot be read.
func scrape(ctx context.Context, url, prefix string) map[string]float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[strings.TrimPrefix(name, prefix)] = f
		}
	}
	return out
}
