package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/instance"
)

// CaptureCmd is a bounded loopback load run of the capture middleware:
// the same API served bare and wrapped, measured in alternating rounds in
// one process so that both see the same machine.
type CaptureCmd struct {
	Rounds      int           `default:"4" help:"Rounds per server (bare and wrapped alternate)."`
	Duration    time.Duration `default:"2s" help:"Length of one round."`
	Clients     int           `default:"8" help:"Concurrent keep-alive clients."`
	BodyBytes   int           `default:"1024" help:"Request and response body size."`
	SampleRate  float64       `default:"1" help:"Options.SampleRate of the wrapped server."`
	NoGzip      bool          `help:"Send batches without gzip (HTTPSinkConfig.NoCompression)."`
	CPUProfile  string        `help:"Write a CPU profile of the whole run to this file."`
	ProfileDir  string        `help:"Write CPU profiles of the bare and the wrapped rounds separately to this directory (cpu-bare-N.prof, cpu-wrapped-N.prof per round; go tool pprof merges several files, e.g. -diff_base with the bare ones)."`
	Sink        string        `default:"http" enum:"http,collector,none" help:"Where the wrapped server sends events: http (HTTP sink to a loopback endpoint that reads and discards), collector (a full apimeter collector with DuckDB in this process) or none (events are built and scrubbed, then dropped: the middleware alone)."`
	NoBody      bool          `help:"Turn body capture off (Options.LogBody false)."`
	BatchSize   int           `help:"Options.BatchSize of the wrapped server (0: the default)."`
	QueueSize   int           `help:"Options.QueueSize of the wrapped server (0: the default); calls captured while it is full are dropped and counted."`
	Serve       bool          `help:"Serve the bare and the wrapped API on loopback until interrupted, printing their URLs, for an outside load generator (wrk, hey, oha); no rounds are run."`
	BareAddr    string        `default:"127.0.0.1:0" help:"Address of the bare server (with --serve, to fix its port)."`
	WrappedAddr string        `default:"127.0.0.1:0" help:"Address of the wrapped server (with --serve, to fix its port)."`
	Load        string        `default:"go" enum:"go,wrk" help:"Load generator for the rounds: go (keep-alive clients in this process) or wrk (the wrk command, a separate process; --clients connections, one thread, --duration in whole seconds)."`
	NoTxID      bool          `name:"no-transaction-id" help:"Options.DisableTransactionID: no X-Moesif-Transaction-Id response header, which the clients otherwise read on every call (a variant; the default keeps the header, as Moesif SDKs do)."`

	out       io.Writer          `kong:"-"` // nil: os.Stdout
	collector *instance.Instance `kong:"-"` // with --sink collector
}

func (c *CaptureCmd) stdout() io.Writer {
	if c.out == nil {
		return os.Stdout
	}
	return c.out
}

// Token is the counting guide's JWT (sub 513, HS256 with "my_super_secret").
const Token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0"

func (c *CaptureCmd) Run(ctx context.Context) error {
	if c.Load == "wrk" {
		c.Duration = max(time.Second, c.Duration.Round(time.Second)) // wrk counts whole seconds
	}
	collectorURL, appID, stopCollector, err := c.startSinkTarget(ctx)
	if err != nil {
		return err
	}
	defer stopCollector()
	var sink capture.Sink = discardSink{}
	if c.Sink != "none" {
		if sink, err = capture.NewHTTPSink(capture.HTTPSinkConfig{URL: collectorURL, ApplicationID: appID, NoCompression: c.NoGzip}); err != nil {
			return err
		}
	}
	meter, err := capture.New(capture.Options{
		Sink:                 sink,
		LogBody:              !c.NoBody,
		BatchSize:            c.BatchSize,
		QueueSize:            c.QueueSize,
		SampleRate:           c.SampleRate,
		DisableTransactionID: c.NoTxID,
		IdentifyCompany:      func(r *http.Request, _ capture.Response) string { return r.PathValue("id") },
	})
	if err != nil {
		return err
	}

	if c.CPUProfile != "" && c.ProfileDir != "" {
		return errors.New("--cpu-profile and --profile-dir exclude each other")
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	payload := bytes.Repeat([]byte("x"), c.BodyBytes)
	api := benchAPI(payload)
	bare, err := ServeAt(c.BareAddr, api)
	if err != nil {
		return err
	}
	defer bare.Close()
	wrapped, err := ServeAt(c.WrappedAddr, meter.Middleware(api))
	if err != nil {
		return err
	}
	defer wrapped.Close()

	if c.Serve {
		fmt.Fprintf(c.stdout(), "bare:    %s/accounts/1001/message\nwrapped: %s/accounts/1001/message\n", bare.URL, wrapped.URL)
		fmt.Fprintf(c.stdout(), "POST %d-byte bodies with Content-Type: application/json and Authorization: Bearer %s\n", c.BodyBytes, Token)
		<-ctx.Done()
		return c.closeAndReport(context.Background(), meter, wrapped) // ctx has ended: still send what is queued
	}
	// The CPU figures are per answered request: this process's (the
	// server, the sender and, with --load go, the clients), and with
	// --load wrk also wrk's, so that "all" is everything the run used.
	var bareRates, wrappedRates, ratios, bareCPU, wrappedCPU, bareAll, wrappedAll []float64
	for round := 0; round < c.Rounds; round++ {
		for _, s := range []struct {
			name  string
			url   string
			rates *[]float64
			cpu   *[]float64
			all   *[]float64
		}{{"bare", bare.URL, &bareRates, &bareCPU, &bareAll}, {"wrapped", wrapped.URL, &wrappedRates, &wrappedCPU, &wrappedAll}} {
			stopProfile, err := c.startRoundProfile(s.name, round)
			if err != nil {
				return err
			}
			cpu0 := processCPU()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			var n int64
			var loadCPU time.Duration // of a load generator in another process
			if c.Load == "wrk" {
				n, loadCPU, err = c.loadWrk(ctx, s.url, payload)
			} else {
				n, err = c.load(ctx, s.url, payload)
			}
			runtime.ReadMemStats(&ms1)
			if err := stopProfile(); err != nil {
				return err
			}
			if err != nil {
				return fmt.Errorf("%s round %d: %w", s.name, round+1, err)
			}
			ours := processCPU() - cpu0
			perReq := float64(ours.Microseconds()) / float64(max(n, 1))
			all := float64((ours + loadCPU).Microseconds()) / float64(max(n, 1))
			rate := float64(n) / c.Duration.Seconds()
			*s.rates = append(*s.rates, rate)
			*s.cpu = append(*s.cpu, perReq)
			*s.all = append(*s.all, all)
			wrkNote := ""
			if c.Load == "wrk" {
				wrkNote = fmt.Sprintf(" (+ wrk %.1f)", all-perReq)
			}
			fmt.Fprintf(c.stdout(), "round %d %-7s %8.0f req/s  %6.1f µs CPU/request%s  %6.0f B allocated/request  %4d GCs\n", round+1, s.name, rate, perReq, wrkNote,
				float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(max(n, 1)), ms1.NumGC-ms0.NumGC)
		}
		ratios = append(ratios, wrappedRates[round]/bareRates[round])
	}
	b, w := median(bareRates), median(wrappedRates)
	fmt.Fprintf(c.stdout(), "median: bare %.0f req/s, wrapped %.0f req/s, wrapped/bare %.3f; median of per-round ratios %.3f (target >= 0.95)\n", b, w, w/b, median(ratios))
	bc, wc := median(bareCPU), median(wrappedCPU)
	if c.Load == "wrk" {
		fmt.Fprintf(c.stdout(), "CPU per request (this process: server + sender): bare %.1f µs, wrapped %.1f µs, bare/wrapped %.3f\n", bc, wc, bc/wc)
		bc, wc = median(bareAll), median(wrappedAll)
		fmt.Fprintf(c.stdout(), "CPU per request (this process and wrk): bare %.1f µs, wrapped %.1f µs, bare/wrapped %.3f\n", bc, wc, bc/wc)
	} else {
		fmt.Fprintf(c.stdout(), "CPU per request (this process: load generator + server + sender): bare %.1f µs, wrapped %.1f µs, bare/wrapped %.3f\n", bc, wc, bc/wc)
	}
	// With the cores saturated, requests/s go as 1/CPU per request, so
	// keeping 95 % leaves this much CPU per call for capturing.
	fmt.Fprintf(c.stdout(), "on saturated cores 0.95 of bare requests/s leaves %.1f µs of CPU per call for capturing; this run's wrapped server took %.1f µs more\n", bc*(1/0.95-1), wc-bc)
	return c.closeAndReport(ctx, meter, wrapped)
}

// closeAndReport stops the wrapped server, sends what the middleware still
// holds and prints its counters. The server's calls finish first, so no
// call is captured while the middleware closes (Close would drop it).
func (c *CaptureCmd) closeAndReport(ctx context.Context, meter *capture.Capture, wrapped *Server) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := errors.Join(wrapped.srv.Shutdown(ctx), meter.Close(ctx))
	st := meter.Stats()
	fmt.Fprintf(c.stdout(), "capture: enqueued %d, sent %d, dropped (queue full) %d, failed %d\n", st.Enqueued, st.Sent, st.Dropped, st.Failed)
	if c.collector != nil && err == nil {
		// Every batch the sink sent was acknowledged, so it is committed.
		var n int64
		if err := c.collector.Store.DB().QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
			return fmt.Errorf("counting the collector's events: %w", err)
		}
		fmt.Fprintf(c.stdout(), "collector: stored %d events\n", n)
	}
	return err
}

// startRoundProfile starts a CPU profile of one round when --profile-dir is
// set; the returned func stops it.
func (c *CaptureCmd) startRoundProfile(server string, round int) (stop func() error, err error) {
	if c.ProfileDir == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(c.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(c.ProfileDir, fmt.Sprintf("cpu-%s-%d.prof", server, round+1)))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	if server == "bare" && round == 0 {
		if err := writeProfile("allocs", filepath.Join(c.ProfileDir, "allocs-start.prof")); err != nil {
			return nil, err
		}
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return err
		}
		// The allocation profile is cumulative: a round's own is this
		// snapshot with the previous one as -base.
		return writeProfile("allocs", filepath.Join(c.ProfileDir, fmt.Sprintf("allocs-%s-%d.prof", server, round+1)))
	}, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startSinkTarget starts what the wrapped server's events go to.
func (c *CaptureCmd) startSinkTarget(ctx context.Context) (url, appID string, stop func(), err error) {
	if c.Sink != "collector" {
		s, err := ServeAt("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		}))
		if err != nil {
			return "", "", nil, err
		}
		return s.URL, "bench", s.Close, nil
	}
	dir, err := os.MkdirTemp("", "apimeter-bench-capture-")
	if err != nil {
		return "", "", nil, err
	}
	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "server"), BodyCap: 1024,
		MaxBodyBytes: 32 << 20, MaxBatchEvents: 10000, DedupeHorizon: 168 * time.Hour, LogLevel: 8}
	in, err := instance.Start(ctx, f)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	a, err := apps.Create(f.Data, "bench", "prod")
	if err != nil {
		in.Close()
		os.RemoveAll(dir)
		return "", "", nil, err
	}
	c.collector = in
	return in.URL, a.ID, func() { in.Close(); os.RemoveAll(dir); c.collector = nil }, nil
}

// discardSink drops the events it is given. It keeps nothing, so it is a
// BorrowingSink, like HTTPSink: --sink none then measures the same event
// building as the default run, without copies no real sink would get.
type discardSink struct{}

func (discardSink) BorrowsEvents() {}

func (discardSink) Send(context.Context, []apimeter.Event) error { return nil }
func (discardSink) Close(context.Context) error                  { return nil }

// benchAPI is the counting guide's endpoint: it reads the request body and answers
// with a JSON body of the same size.
func benchAPI(payload []byte) http.Handler {
	resp := append(append([]byte(`{"my_message":"`), payload[:max(0, len(payload)-18)]...), `"}`...)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	})
	return mux
}

// Server is a handler served on a loopback address of its own, for the
// upstreams and collectors of the load runs.
type Server struct {
	URL string
	srv *http.Server
}

// ServeAt serves h on addr (port 0: a free one).
func ServeAt(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *Server) Close() { s.srv.Close() }

// load sends requests from c.Clients keep-alive clients for c.Duration and
// returns how many were answered with 200.
func (c *CaptureCmd) load(ctx context.Context, base string, payload []byte) (int64, error) {
	lat, err := goLoad(ctx, base, c.Clients, c.Duration, payload)
	return int64(len(lat)), err
}

// goLoad sends the counting guide's call from clients keep-alive clients in this
// process for d and returns the latency of each call answered with 200.
func goLoad(ctx context.Context, base string, clients int, d time.Duration, payload []byte) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	lat := make([][]time.Duration, clients)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Go(func() {
			url := fmt.Sprintf("%s/accounts/%d/message", base, 1000+i)
			for ctx.Err() == nil {
				began := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
				req.Header.Set("Authorization", "Bearer "+Token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						firstErr = errors.Join(firstErr, err)
						mu.Unlock()
					}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && ctx.Err() == nil {
					lat[i] = append(lat[i], time.Since(began))
				}
			}
		})
	}
	wg.Wait()
	return slices.Concat(lat...), firstErr
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// loadWrk runs one round with wrk against base and returns how many
// requests were answered with a 2xx or 3xx status, and the CPU time wrk
// used.
func (c *CaptureCmd) loadWrk(ctx context.Context, base string, payload []byte) (int64, time.Duration, error) {
	r, err := runWrk(ctx, base, c.Clients, c.Duration, payload)
	return r.total, r.cpu, err
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	total int64         // requests answered with a 2xx or 3xx status
	p99   time.Duration // wrk's 99th percentile latency
	cpu   time.Duration // CPU time wrk used
}

// runWrk posts the counting guide's call with wrk (one thread, clients connections,
// d in whole seconds) to base. Any other status or a socket error fails
// the run.
func runWrk(ctx context.Context, base string, clients int, d time.Duration, payload []byte) (wrkResult, error) {
	dir, err := os.MkdirTemp("", "apimeter-wrk-")
	if err != nil {
		return wrkResult{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	lua := fmt.Sprintf(`wrk.method = "POST"
wrk.body = %q
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  io.write(string.format("apimeter-wrk %%d %%d %%d %%d\n", summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, latency:percentile(99)))
end
`, payload, Token)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return wrkResult{}, err
	}
	// wrk's default 2 s timeout counts a slow answer on a busy machine as
	// a socket error; a round is about throughput, not a latency bound.
	cmd := exec.CommandContext(ctx, "wrk", "-t1", fmt.Sprintf("-c%d", clients), fmt.Sprintf("-d%ds", int(d.Seconds())), "--timeout", "30s",
		"-s", script, base+"/accounts/1001/message")
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return wrkResult{}, errors.New("--load wrk: the wrk command is not installed (apt-get install wrk)")
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return wrkResult{}, fmt.Errorf("wrk: %w: %s%s", err, ee.Stderr, out)
		}
		return wrkResult{}, fmt.Errorf("wrk: %w", err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	for line := range strings.Lines(string(out)) {
		var total, bad, failed, p99us int64
		if _, err := fmt.Sscanf(line, "apimeter-wrk %d %d %d %d", &total, &bad, &failed, &p99us); err == nil {
			if bad+failed > 0 {
				return wrkResult{}, fmt.Errorf("wrk: %d non-2xx answers and %d socket errors of %d requests", bad, failed, total)
			}
			return wrkResult{total: total, p99: time.Duration(p99us) * time.Microsecond, cpu: cpu}, nil
		}
	}
	return wrkResult{}, fmt.Errorf("wrk printed no summary:\n%s", out)
}
