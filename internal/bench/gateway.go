package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
)

// GatewayCmd is a bounded loopback load run of the gateway: the same
// upstream behind a bare httputil.ReverseProxy, behind the gateway, and
// behind the gateway with its collector down, measured in alternating
// rounds in one process with the same client settings.
type GatewayCmd struct {
	Rounds     int           `default:"4" help:"Rounds per proxy (bare, gateway and gateway with the collector down alternate)."`
	Duration   time.Duration `default:"2s" help:"Length of one round."`
	Clients    int           `default:"8" help:"Concurrent keep-alive clients (wrk connections)."`
	BodyBytes  int           `default:"1024" help:"Request and response body size."`
	Sink       string        `default:"http" enum:"http,collector" help:"Where the gateway's events go: http (a loopback endpoint that reads and discards) or collector (a full apimeter collector with DuckDB in this process)."`
	Load       string        `default:"wrk" enum:"go,wrk" help:"Load generator: wrk (a separate process, one thread) or go (clients in this process)."`
	Quota      bool          `help:"Give the gateway a per-user quota high enough never to block (its check runs on every call)."`
	SampleRate float64       `default:"1" help:"The gateway's sample_rate."`

	out io.Writer `kong:"-"` // nil: os.Stdout
}

func (c *GatewayCmd) stdout() io.Writer {
	if c.out == nil {
		return os.Stdout
	}
	return c.out
}

// gatewayRound is one round's figures.
type gatewayRound struct {
	rate float64       // answered requests per second
	p99  time.Duration // 99th percentile latency
	cpu  float64       // µs of this process's CPU per answered request
}

func (c *GatewayCmd) Run(ctx context.Context) error {
	if c.Load == "wrk" {
		c.Duration = max(time.Second, c.Duration.Round(time.Second))
		if _, err := exec.LookPath("wrk"); err != nil {
			return errors.New("--load wrk: the wrk command is not installed (apt-get install wrk), or use --load go")
		}
	}
	payload := bytes.Repeat([]byte("x"), c.BodyBytes)
	upstream, err := ServeAt("127.0.0.1:0", benchAPI(payload))
	if err != nil {
		return err
	}
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	// (a) the limit: a bare ReverseProxy with the gateway's transport.
	bareProxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: gateway.NewTransport(gateway.Timeouts{}),
	}
	bare, err := ServeAt("127.0.0.1:0", bareProxy)
	if err != nil {
		return err
	}
	defer bare.Close()

	// (b) the gateway, its events sent to a collector.
	collectorURL, appID, stopCollector, err := (&CaptureCmd{Sink: c.Sink}).startSinkTarget(ctx)
	if err != nil {
		return err
	}
	defer stopCollector()
	cfg := gateway.Config{SampleRate: c.SampleRate, Upstreams: []gateway.Upstream{{Name: "accounts", URL: upstream.URL, Routes: []string{"/accounts/{id}/message"}}}}
	if c.Quota {
		cfg.Quotas = []gateway.Quota{{Name: "bench", By: "user", Per: "minute", Limit: 1 << 40}}
	}
	up, err := c.startGateway("gateway", cfg, collectorURL, appID)
	if err != nil {
		return err
	}
	defer up.close()
	// (c) the same with its collector down: nothing listens there.
	dead, err := ServeAt("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		return err
	}
	dead.Close()
	down, err := c.startGateway("down", cfg, dead.URL, "bench")
	if err != nil {
		return err
	}
	defer down.close()

	variants := []struct {
		name, url string
		rounds    []gatewayRound
	}{{name: "bare", url: bare.URL}, {name: "gateway", url: up.srv.URL}, {name: "down", url: down.srv.URL}}
	for round := 0; round < c.Rounds; round++ {
		for i := range variants {
			v := &variants[i]
			var r gatewayRound
			var err error
			cpu0 := processCPU()
			if c.Load == "wrk" {
				r, err = c.loadWrk(ctx, v.url, payload)
			} else {
				r, err = c.loadGo(ctx, v.url, payload)
			}
			if err != nil {
				return fmt.Errorf("%s round %d: %w", v.name, round+1, err)
			}
			r.cpu = float64((processCPU() - cpu0).Microseconds()) / max(1, r.rate*c.Duration.Seconds())
			v.rounds = append(v.rounds, r)
			fmt.Fprintf(c.stdout(), "round %d %-8s %8.0f req/s  p99 %8.3f ms  %6.1f µs CPU/request\n", round+1, v.name, r.rate, float64(r.p99.Microseconds())/1000, r.cpu)
		}
	}
	med := func(rs []gatewayRound) (float64, time.Duration, float64) {
		var rates, p99s, cpus []float64
		for _, r := range rs {
			rates = append(rates, r.rate)
			p99s = append(p99s, float64(r.p99))
			cpus = append(cpus, r.cpu)
		}
		return median(rates), time.Duration(median(p99s)), median(cpus)
	}
	bRate, bP99, bCPU := med(variants[0].rounds)
	fmt.Fprintf(c.stdout(), "median bare    %8.0f req/s  p99 %.3f ms  %.1f µs CPU/request (proxy, upstream and sender; not the load generator with --load wrk)\n", bRate, float64(bP99.Microseconds())/1000, bCPU)
	for _, v := range variants[1:] {
		rate, p99, cpu := med(v.rounds)
		fmt.Fprintf(c.stdout(), "median %-7s CPU/request %.1f µs, bare/%s %.3f\n", v.name, cpu, v.name, bCPU/cpu)
		var ratios []float64
		for i, r := range v.rounds {
			ratios = append(ratios, r.rate/variants[0].rounds[i].rate)
		}
		fmt.Fprintf(c.stdout(), "median %-7s %8.0f req/s  p99 %.3f ms: %s/bare %.3f (per-round median %.3f, target >= 0.90), p99 %+.3f ms (target <= +1 ms)\n",
			v.name, rate, float64(p99.Microseconds())/1000, v.name, rate/bRate, median(ratios), float64((p99-bP99).Microseconds())/1000)
	}
	// Closing sends what the gateway still holds; the one whose collector
	// is down gives up after a second.
	for _, g := range []*benchGateway{up, down} {
		g.close()
		st := g.g.Stats()
		fmt.Fprintf(c.stdout(), "%s: enqueued %d, sent %d, dropped (queue full) %d, failed %d, queued %d\n",
			g.name, st.Capture.Enqueued, st.Capture.Sent, st.Capture.Dropped, st.Capture.Failed, st.Capture.Queued)
	}
	return nil
}

type benchGateway struct {
	name   string
	g      *gateway.Gateway
	srv    *Server
	closed bool
}

// close stops b once (the deferred call after the report does nothing).
func (b *benchGateway) close() {
	if b.closed {
		return
	}
	b.closed = true
	b.srv.Close()
	wait := 30 * time.Second
	if b.name == "down" {
		wait = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b.g.Close(ctx)
}

func (c *GatewayCmd) startGateway(name string, cfg gateway.Config, collector, appID string) (*benchGateway, error) {
	g, err := gateway.New(cfg, gateway.Options{Sink: func(u gateway.Upstream) (capture.Sink, error) {
		return capture.NewHTTPSink(capture.HTTPSinkConfig{URL: collector, ApplicationID: appID})
	}})
	if err != nil {
		return nil, err
	}
	srv, err := ServeAt("127.0.0.1:0", g)
	if err != nil {
		g.Close(context.Background())
		return nil, err
	}
	return &benchGateway{name: name, g: g, srv: srv}, nil
}

// loadGo runs one round with keep-alive clients in this process and
// returns the rate of 200 answers and their 99th percentile latency.
func (c *GatewayCmd) loadGo(ctx context.Context, base string, payload []byte) (gatewayRound, error) {
	lat, err := goLoad(ctx, base, c.Clients, c.Duration, payload)
	if len(lat) == 0 {
		return gatewayRound{}, errors.Join(errors.New("no request answered"), err)
	}
	slices.Sort(lat)
	return gatewayRound{rate: float64(len(lat)) / c.Duration.Seconds(), p99: lat[len(lat)*99/100]}, err
}

// loadWrk runs one round with wrk (one thread, --clients connections) and
// returns the rate of answered requests and wrk's 99th percentile.
func (c *GatewayCmd) loadWrk(ctx context.Context, base string, payload []byte) (gatewayRound, error) {
	r, err := runWrk(ctx, base, c.Clients, c.Duration, payload)
	return gatewayRound{rate: float64(r.total) / c.Duration.Seconds(), p99: r.p99}, err
}
