package loadrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/moesif"
)

// GatewayFaultConfig configures a gateway fault run: API clients calling
// through an `apimeter gateway` child process (quotas on a redis-server
// child, events to an `apimeter serve` child) while Redis is stopped with
// SIGSTOP, then killed and restarted, and the collector killed and
// restarted.
type GatewayFaultConfig struct {
	Bin           string        // the apimeter binary
	GatewayBin    string        // the binary the gateway runs from; empty: Bin (to compare builds)
	Env           []string      // extra environment of the child processes
	Clients       int           // concurrent API clients
	Pace          time.Duration // pause between two calls of a client
	MaxCalls      int           // calls of all clients together, at most
	Phase         time.Duration // length of the quiet phases around the faults
	RedisStop     time.Duration // Redis stopped with SIGSTOP this long
	RedisDown     time.Duration // Redis killed, restarted after this long
	CollectorDown time.Duration // the collector killed, restarted after this long
	Out           io.Writer     // progress lines
}

// GatewayFaultReport is what a gateway fault run found.
type GatewayFaultReport struct {
	// Phases are the calls through the gateway; Direct the same clients'
	// calls straight to the upstream, at the same time (the baseline).
	Phases, Direct []PhaseReport
	// Acknowledged are the calls answered 200 with a transaction id;
	// PresentOnce, Lost and Doubled compare them with the events stored.
	Acknowledged, PresentOnce, Lost, Doubled int
	// From the gateway's /metrics at the end.
	Dropped, Failed, QuotaErrors, QuotaSkipped float64
	// GatewayLogLines counts the gateway's log lines of warning or worse.
	GatewayLogLines int
	Took            time.Duration
}

// gatewayConfig is the gateway's YAML: one upstream and a quota by API
// key high enough never to block, so that every call checks Redis.
const gatewayConfig = `listen: %s
upstreams:
  - name: items
    url: %s
quotas:
  - name: per-key
    by: api_key
    per: minute
    limit: 100000000
`

// GatewayFaults runs the gateway fault scenario and reads the events back.
func GatewayFaults(ctx context.Context, c GatewayFaultConfig) (GatewayFaultReport, error) {
	started := time.Now()
	logf := progress(c.Out, started)
	var rep GatewayFaultReport
	ws, err := newWorkspace("apimeter-gwfaults-")
	if err != nil {
		return rep, err
	}
	defer ws.done()
	app, err := apps.Create(ws.data, "faults", "prod")
	if err != nil {
		return rep, err
	}

	// Redis, restartable on the same port.
	raddr, err := FreeAddr()
	if err != nil {
		return rep, err
	}
	_, rport, _ := strings.Cut(raddr, ":")
	var redisCmd *exec.Cmd
	startRedis := func() error {
		redisCmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", rport, "--save", "", "--appendonly", "no", "--dir", ws.dir)
		if err := redisCmd.Start(); err != nil {
			return fmt.Errorf("redis-server: %w", err)
		}
		for range 100 {
			if conn, err := net.Dial("tcp", raddr); err == nil {
				conn.Close()
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return errors.New("redis-server did not listen within 2 s")
	}
	killRedis := func() {
		redisCmd.Process.Signal(syscall.SIGCONT)
		redisCmd.Process.Kill()
		redisCmd.Wait()
	}
	if err := startRedis(); err != nil {
		return rep, err
	}
	defer func() { killRedis() }()

	col := &Server{Bin: c.Bin, Args: []string{"--data", ws.data}, Addr: ws.addr, Log: ws.log, Env: c.Env}
	if err := col.Start(ctx); err != nil {
		return rep, fmt.Errorf("%w (log: %s)", err, tail(ws.log.Name()))
	}
	colStopped := false
	defer func() {
		if !colStopped {
			col.Kill9()
		}
	}()
	logf("collector on %s, redis-server on %s", ws.addr, raddr)

	// The upstream: a plain API in this process.
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	us := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"item":"ok"}`)
	})}
	go us.Serve(uln)
	defer us.Close()

	gaddr, err := FreeAddr()
	if err != nil {
		return rep, err
	}
	maddr, err := FreeAddr()
	if err != nil {
		return rep, err
	}
	cfgPath := filepath.Join(ws.dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, gatewayConfig, gaddr, "http://"+uln.Addr().String()), 0o600); err != nil {
		return rep, err
	}
	glog, err := os.Create(filepath.Join(ws.dir, "gateway.log"))
	if err != nil {
		return rep, err
	}
	defer glog.Close()
	gwBin := c.GatewayBin
	if gwBin == "" {
		gwBin = c.Bin
	}
	gw := exec.Command(gwBin, "gateway", "--config", cfgPath, "--collector", "http://"+ws.addr, "--app-id", app.ID,
		"--redis", "redis://"+raddr+"/0", "--metrics-listen", maddr, "--log-level", "info")
	gw.Stdout, gw.Stderr = glog, glog
	gw.Env = append(os.Environ(), c.Env...)
	if err := gw.Start(); err != nil {
		return rep, fmt.Errorf("start gateway: %w", err)
	}
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Wait() }()
	defer func() {
		gw.Process.Kill()
		<-gwDone
	}()
	metrics := "http://" + maddr + "/metrics"
	for i := 0; ; i++ {
		if m := scrape(ctx, metrics, "apimeter_gateway_"); m != nil {
			break
		}
		if i == 300 {
			return rep, fmt.Errorf("gateway did not start (log: %s)", tail(glog.Name()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	logf("gateway on %s", gaddr)

	// The clients: each call timed and classed by the phase it started in.
	// Beside each, a client of the same pace calls the upstream directly:
	// its latency is the machine's (scheduling, the upstream), so that what
	// the gateway adds shows apart from it.
	var (
		calls atomic.Int64
		mu    sync.Mutex
		acked []string
	)
	ph := newPhases("steady")
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.Clients}}
	direct := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.Clients}}
	upstream := "http://" + uln.Addr().String()
	for i := range c.Clients {
		wg.Go(func() {
			key := fmt.Sprintf("client-key-%d", i)
			for n := 0; load.Err() == nil; n++ {
				if calls.Add(1) > int64(c.MaxCalls) {
					return
				}
				p := ph.now()
				req, _ := http.NewRequestWithContext(load, "GET", fmt.Sprintf("http://%s/items/%d/%d", gaddr, i, n), nil)
				req.Header.Set("X-Api-Key", key)
				t0 := time.Now()
				resp, err := client.Do(req)
				ok, id, code := false, "", 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					id = resp.Header.Get(moesif.TransactionIDHeader)
					code = resp.StatusCode
					ok = code == 200 && id != ""
				} else if load.Err() != nil {
					return
				}
				ph.add(0, p, code, ok, time.Since(t0))
				if ok {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
				sleep(load, c.Pace)
			}
		})
		wg.Go(func() {
			for n := 0; load.Err() == nil && calls.Load() <= int64(c.MaxCalls); n++ {
				p := ph.now()
				req, _ := http.NewRequestWithContext(load, "GET", fmt.Sprintf("%s/items/%d/%d", upstream, i, n), nil)
				t0 := time.Now()
				resp, err := direct.Do(req)
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				} else if load.Err() != nil {
					return
				}
				ph.add(1, p, code, code == 200, time.Since(t0))
				sleep(load, c.Pace)
			}
		})
	}

	next := func(name string) {
		ph.next(name)
		logf("phase: %s", name)
	}
	logf("phase: steady")
	sleep(ctx, c.Phase)
	next(fmt.Sprintf("redis stopped (SIGSTOP %s)", c.RedisStop))
	redisCmd.Process.Signal(syscall.SIGSTOP)
	sleep(ctx, c.RedisStop)
	redisCmd.Process.Signal(syscall.SIGCONT)
	next("redis continued")
	sleep(ctx, c.Phase)
	next(fmt.Sprintf("redis killed (%s down)", c.RedisDown))
	killRedis()
	sleep(ctx, c.RedisDown)
	if err := startRedis(); err != nil {
		return rep, err
	}
	next("redis restarted")
	sleep(ctx, c.Phase)
	next(fmt.Sprintf("collector killed (%s down)", c.CollectorDown))
	col.Kill9()
	sleep(ctx, c.CollectorDown)
	if err := col.Start(ctx); err != nil {
		return rep, fmt.Errorf("restart collector: %w (log: %s)", err, tail(ws.log.Name()))
	}
	next("collector restarted")
	sleep(ctx, c.Phase)
	stopLoad()
	wg.Wait()
	logf("load over: %d calls acknowledged; waiting for the gateway's queue to empty", len(acked))

	for i := 0; i < 600; i++ {
		m := scrape(ctx, metrics, "apimeter_gateway_")
		if m != nil && m["events_queued"] == 0 && m["events_sent_total"]+m["events_dropped_total"]+m["events_failed_total"] >= float64(len(acked)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := scrape(ctx, metrics, "apimeter_gateway_")
	rep.Dropped, rep.Failed = m["events_dropped_total"], m["events_failed_total"]
	rep.QuotaErrors, rep.QuotaSkipped = m["quota_errors_total"], m["quota_skipped_total"]
	gw.Process.Signal(syscall.SIGTERM)
	select {
	case <-gwDone:
	case <-time.After(30 * time.Second):
	}
	gwDone <- nil // for the deferred kill
	colStopped = true
	if err := col.Stop(); err != nil {
		return rep, err
	}
	logf("gateway and collector stopped; reading the events back")

	rep.Phases, rep.Direct = ph.reports(0), ph.reports(1)
	counts, err := storedCounts(ctx, filepath.Join(ws.data, "events.duckdb"), "")
	if err != nil {
		return rep, err
	}
	rep.Acknowledged = len(acked)
	for _, id := range acked {
		switch counts[id] {
		case 0:
			rep.Lost++
		case 1:
			rep.PresentOnce++
		default:
			rep.Doubled++
		}
	}
	b, _ := os.ReadFile(glog.Name())
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			rep.GatewayLogLines++
		}
	}
	rep.Took = time.Since(started)
	return rep, nil
}

// Print writes the report as the table docs/reliability.md records.
func (r GatewayFaultReport) Print(w io.Writer) {
	fmt.Fprintf(w, "run: %s; acknowledged calls: %d, stored once: %d, lost: %d, doubled: %d\n", r.Took.Round(time.Second), r.Acknowledged, r.PresentOnce, r.Lost, r.Doubled)
	fmt.Fprintf(w, "gateway: events dropped %.0f, failed %.0f; quota checks failed %.0f, skipped (circuit open) %.0f; warning log lines %d\n",
		r.Dropped, r.Failed, r.QuotaErrors, r.QuotaSkipped, r.GatewayLogLines)
	fmt.Fprintf(w, "latency through the gateway, and beside it of the same clients calling the upstream directly (the machine's baseline):\n")
	printPhases(w, "calls", r.Phases, r.Direct, false)

}
