package loadrun

import (
	"context"
	"fmt"
	"io"
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
	time.Sleep(10 * time.Second)
	rep.RSSAfterSettle, _ = srv.RSS()
	return rep, nil
}

// Print writes the report.
func (r MemoryReport) Print(w io.Writer) {
	fmt.Fprintf(w, "events stored: %d in %s (%.0f events/s)\n", r.Events, r.Took.Round(time.Second), float64(r.Events)/r.Took.Seconds())
	fmt.Fprintf(w, "server RSS: peak %d MiB, after the load %d MiB, after 10 s idle %d MiB\n", r.PeakRSS>>20, r.RSSAfterLoad>>20, r.RSSAfterSettle>>20)
}
