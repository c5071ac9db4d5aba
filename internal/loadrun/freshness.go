package loadrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/workload"
)

// FreshnessConfig configures a freshness run.
type FreshnessConfig struct {
	Bin       string
	Rate      int // background events per second
	Batch     int // events per background batch
	Trials    int
	ServeArgs []string
	Out       io.Writer
}

// FreshnessReport is what a freshness run measured: per trial, the time to
// the collector's acknowledgement of one posted call and the time until
// the Metrics API counts it.
type FreshnessReport struct {
	Ack, Visible []time.Duration
	// Background is the background ingest achieved, events per second,
	// and BackgroundAck the p99 and max acknowledgement of its batches.
	Background    float64
	BackgroundP99 time.Duration
	BackgroundMax time.Duration
	PeakRSS       int64
	// ServerCPU is the CPU time the serve child used during the run, and
	// Took the run's wall time: on a loaded machine their ratio says how
	// much of a core the server got.
	ServerCPU, Took time.Duration
	// Commits are the child's group commits (its
	// apimeter_store_commit_seconds histogram): how many, and how many
	// took longer than 100 ms, 250 ms and 1 s.
	Commits, Commits100ms, Commits250ms, Commits1s float64
}

// Freshness runs a serve child process (rollups on, as by default) under
// Rate events per second of background batches, and posts Trials single
// calls, each of a user of its own: it times the acknowledgement, then
// polls the Metrics API for that user's calls until it answers 1.
func Freshness(ctx context.Context, c FreshnessConfig) (FreshnessReport, error) {
	var rep FreshnessReport
	ws, err := newWorkspace("apimeter-freshness-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	app, err := apps.Create(ws.data, "fresh", "prod")
	if err != nil {
		return rep, err
	}
	_, key, err := auth.Create(ws.data, auth.Spec{Org: "fresh", Scope: auth.ScopeRead})
	if err != nil {
		return rep, err
	}
	srv := &Server{Bin: c.Bin, Args: append([]string{"--data", ws.data, "--log-level", "warn", "--stats-quota", "0"}, c.ServeArgs...), Addr: ws.addr, Log: ws.log}
	if err := srv.Start(ctx); err != nil {
		return rep, err
	}
	defer srv.Stop()
	base := "http://" + ws.addr
	cpu0, began := procCPU(srv.cmd.Process.Pid), time.Now()

	// Background load: batches paced to Rate.
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var sent atomic.Int64
	var bgMu sync.Mutex
	var bgAcks []time.Duration
	var wg sync.WaitGroup
	loadStart := time.Now()
	// One sender per 625 events/s, so that a slow acknowledgement does not
	// hold the rate back.
	senders := max(2, c.Rate/625)
	for i := range senders {
		s := newSender(100+i, base, app.ID, c.Batch)
		wg.Go(func() {
			gen := workload.New(uint64(2000+i), time.Minute)
			every := time.Duration(float64(time.Second) * float64(c.Batch) * float64(senders) / float64(c.Rate))
			next := time.Now()
			for seq := 0; load.Err() == nil; seq++ {
				gen.Start = time.Now().Add(-time.Minute)
				body, _ := s.body(gen, seq)
				t0 := time.Now()
				if code := s.post(load, body); code == http.StatusOK {
					sent.Add(int64(c.Batch))
					bgMu.Lock()
					bgAcks = append(bgAcks, time.Since(t0))
					bgMu.Unlock()
				}
				next = next.Add(every)
				if d := time.Until(next); d > 0 {
					select {
					case <-load.Done():
					case <-time.After(d):
					}
				}
			}
		})
	}
	// Let the load settle before the trials.
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	client := &http.Client{Timeout: 10 * time.Second}
	gen := workload.New(7, time.Second)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	timeRange := day.Add(-24*time.Hour).Format("01/02/2006 15:04") + "~" + day.Add(48*time.Hour).Format("01/02/2006 15:04")
	for i := range c.Trials {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		ev := gen.Event()
		user := "fresh-" + strconv.Itoa(i)
		ev.EventID, ev.UserID = "fresh-"+strconv.Itoa(i), user
		now := time.Now().UTC().Format(time.RFC3339Nano)
		ev.Request.Time = now
		if ev.Response != nil {
			ev.Response.Time = now
		}
		body, _ := json.Marshal(ev)
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Moesif-Application-Id", app.ID)
		resp, err := client.Do(req)
		if err != nil {
			return rep, fmt.Errorf("trial %d: post: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return rep, fmt.Errorf("trial %d: post answered %s", i, resp.Status)
		}
		ack := time.Since(t0)
		q := url.Values{"select": {"sum(message_count)"}, "filter": {"(user_id eq '" + user + "')"}, "timeRange": {timeRange}}
		u := base + "/v1/o/fresh/environments/prod/stats/?" + q.Encode()
		for {
			n, err := statsValue(ctx, client, u, key)
			if err != nil {
				return rep, fmt.Errorf("trial %d: %w", i, err)
			}
			if n == 1 {
				break
			}
			if time.Since(t0) > 30*time.Second {
				return rep, fmt.Errorf("trial %d: not in the Metrics API after 30 s", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		rep.Ack, rep.Visible = append(rep.Ack, ack), append(rep.Visible, time.Since(t0))
		if c.Out != nil && (i+1)%50 == 0 {
			fmt.Fprintf(c.Out, "%d of %d trials\n", i+1, c.Trials)
		}
		time.Sleep(20 * time.Millisecond) // trials spread over the load
	}
	stopLoad()
	wg.Wait()
	rep.Background = float64(sent.Load()) / time.Since(loadStart).Seconds()
	slices.Sort(bgAcks)
	if len(bgAcks) > 0 {
		rep.BackgroundP99, rep.BackgroundMax = quantile(bgAcks, 0.99), bgAcks[len(bgAcks)-1]
	}
	_, rep.PeakRSS = srv.RSS()
	rep.ServerCPU, rep.Took = procCPU(srv.cmd.Process.Pid)-cpu0, time.Since(began)
	h := scrape(ctx, base+"/metrics", "apimeter_store_commit_seconds_")
	rep.Commits = h[`count{result="ok"}`]
	rep.Commits100ms = rep.Commits - h[`bucket{result="ok",le="0.1"}`]
	rep.Commits250ms = rep.Commits - h[`bucket{result="ok",le="0.25"}`]
	rep.Commits1s = rep.Commits - h[`bucket{result="ok",le="1"}`]
	return rep, nil
}

// statsValue reads the single value of a Metrics API answer without
// dimensions (0 when there is none).
func statsValue(ctx context.Context, client *http.Client, u, key string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics api: %s: %s", resp.Status, b)
	}
	var r struct {
		Environments []struct {
			Metrics []struct{ Values []string }
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, err
	}
	for _, e := range r.Environments {
		for _, m := range e.Metrics {
			for _, v := range m.Values {
				return strconv.ParseFloat(v, 64)
			}
		}
	}
	return 0, nil
}

// quantile of sorted ds: the smallest value with at least q of them at or
// below it.
func quantile(ds []time.Duration, q float64) time.Duration {
	i := int(float64(len(ds))*q+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// Print writes the report.
func (r FreshnessReport) Print(w io.Writer) {
	a, v := slices.Sorted(slices.Values(r.Ack)), slices.Sorted(slices.Values(r.Visible))
	if len(a) == 0 {
		fmt.Fprintln(w, "no trials")
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(w, "background ingest: %.0f events/s; its batches acknowledged p99 %.1f ms, max %.1f ms\n", r.Background, ms(r.BackgroundP99), ms(r.BackgroundMax))
	fmt.Fprintf(w, "%d single calls: acknowledged p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", len(a), ms(quantile(a, 0.5)), ms(quantile(a, 0.99)), ms(a[len(a)-1]))
	fmt.Fprintf(w, "in the Metrics API answer:    p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", ms(quantile(v, 0.5)), ms(quantile(v, 0.99)), ms(v[len(v)-1]))
	fmt.Fprintf(w, "server peak RSS: %d MiB\n", r.PeakRSS>>20)
	fmt.Fprintf(w, "server CPU: %.1f s over %.1f s (%.0f %% of one core)\n", r.ServerCPU.Seconds(), r.Took.Seconds(), 100*r.ServerCPU.Seconds()/r.Took.Seconds())
	fmt.Fprintf(w, "group commits: %.0f, of which %.0f over 100 ms, %.0f over 250 ms, %.0f over 1 s\n", r.Commits, r.Commits100ms, r.Commits250ms, r.Commits1s)
}
