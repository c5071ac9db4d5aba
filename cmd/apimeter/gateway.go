package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/kafka"
)

// gatewayCmd runs the gateway on its own, sending events to a collector
// or, with --kafka-brokers or --kafka-event-hubs, to a Kafka topic.
type gatewayCmd struct {
	Config        string     `short:"c" type:"existingfile" env:"APIMETER_GATEWAY_CONFIG" placeholder:"FILE" help:"YAML configuration: upstreams, routes, quotas, timeouts (docs/gateway.md)."`
	Listen        string     `env:"APIMETER_GATEWAY_LISTEN" help:"Address to listen on; overrides the config's listen (default 127.0.0.1:8080)."`
	Collector     string     `env:"APIMETER_COLLECTOR" placeholder:"URL" help:"apimeter collector the events are sent to (default http://127.0.0.1:7070); not with --kafka-brokers."`
	AppID         string     `env:"APIMETER_APP_ID" placeholder:"ID" help:"Application id the events are sent with (apimeter apps create), for upstreams without app_id."`
	Upstream      string     `placeholder:"URL" help:"Without --config: the one API to front."`
	APIName       string     `help:"Without --config: the API name of --upstream (Apigee's apiproxy; default: its host)."`
	Route         []string   `placeholder:"TEMPLATE" help:"Without --config: a route template of --upstream, e.g. '/accounts/{id}/message' (repeatable)."`
	Redis         string     `env:"APIMETER_REDIS" placeholder:"URL" help:"Redis URL for quota counters shared by several gateways; empty keeps them in this process."`
	RedisPrefix   string     `default:"apimeter:" env:"APIMETER_REDIS_PREFIX" help:"Prefix of every Redis key."`
	LogLevel      slog.Level `default:"info" env:"APIMETER_LOG_LEVEL" help:"debug, info, warn or error."`
	MetricsListen string     `env:"APIMETER_METRICS_LISTEN" placeholder:"ADDR" help:"Serve /metrics (the gateway's counters: events sent, dropped, failed, calls blocked, upstream errors) on this address, e.g. 127.0.0.1:9465; empty: none."`

	Kafka kafkaOutFlags `embed:"" prefix:"kafka-" envprefix:"APIMETER_KAFKA_" group:"Kafka / Event Hubs output (instead of --collector; off without --kafka-brokers or --kafka-event-hubs)"`
}

// defaultCollector is where the gateway sends events when neither
// --collector nor Kafka is given.
const defaultCollector = "http://127.0.0.1:7070"

// kafkaOutFlags configure the gateway's Kafka / Event Hubs output: the
// consumer's connection flags, and what is written where.
type kafkaOutFlags struct {
	kafkaConnFlags
	Topic           string        `env:"TOPIC" help:"Topic (event hub) the calls are written to."`
	Format          string        `default:"json" enum:"apim,json" env:"FORMAT" help:"json: one record per call in the collector's schema, all the gateway knows (read it with apimeter consume --format json); apim: seed 002's request:/response: messages on partitions 0 and 1, as APIM's log-to-eventhub policy writes them."`
	DeliveryTimeout time.Duration `default:"30s" env:"DELIVERY_TIMEOUT" help:"How long a batch may wait for the brokers (retries included) before its calls count as failed; meanwhile new calls queue, then are dropped and counted."`
}

// sinks returns the SinkFunc writing every upstream's events to the topic,
// through one Producer (one set of connections) and a Sink per upstream,
// and the func that closes the Producer once the gateway is closed.
func (f kafkaOutFlags) sinks(cfg gateway.Config, log *slog.Logger) (gateway.SinkFunc, func(), error) {
	conn, err := f.conn()
	if err != nil {
		return nil, nil, err
	}
	format, err := kafka.ParseFormat(f.Format)
	if err != nil {
		return nil, nil, err
	}
	prod, err := kafka.NewProducer(kafka.ProducerConfig{Conn: conn, Topic: f.Topic, Format: format,
		Encoder: httpmsg.Encoder{BodyLimit: cfg.MaxBodyBytes}, DeliveryTimeout: f.DeliveryTimeout, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	// A missing topic, or one the apim format cannot use, is told at once
	// rather than found later as failed batches; the gateway still starts,
	// since the API must not wait on its analytics.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := prod.CheckTopic(ctx); err != nil {
			log.Warn("kafka output", "err", err)
		}
	}()
	closeProd := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		prod.Close(ctx)
	}
	return func(gateway.Upstream) (capture.Sink, error) { return prod.Sink(), nil }, closeProd, nil
}

func (c *gatewayCmd) config() (gateway.Config, error) {
	if c.Config != "" {
		if c.Upstream != "" {
			return gateway.Config{}, fmt.Errorf("--upstream and --config exclude each other: put the upstream in the file")
		}
		return gateway.LoadConfig(c.Config)
	}
	if c.Upstream == "" {
		return gateway.Config{}, fmt.Errorf("give --config FILE, or --upstream URL for one API")
	}
	name := c.APIName
	if name == "" {
		if u, err := url.Parse(c.Upstream); err == nil {
			name = u.Hostname()
		}
	}
	cfg := gateway.Config{Upstreams: []gateway.Upstream{{Name: name, URL: c.Upstream, Routes: c.Route}}}
	return cfg, cfg.Check()
}

func (c *gatewayCmd) Run(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.Listen != "" {
		cfg.Listen = c.Listen
	}
	opts := gateway.Options{Logger: log}
	dest := []any{"collector", cmp.Or(c.Collector, defaultCollector)}
	if c.Kafka.enabled() {
		sinks, closeProd, err := c.Kafka.sinks(cfg, log)
		if err != nil {
			return fmt.Errorf("kafka output: %w", err)
		}
		defer closeProd() // after runGateway has closed the gateway
		opts.Sink = sinks
		dest = []any{"kafka_topic", c.Kafka.Topic, "kafka_format", c.Kafka.Format}
	} else {
		opts.Sink = gateway.CollectorSinks(dest[1].(string), c.AppID, nil)
	}
	closeRedis, err := quotaCounter(ctx, &opts, c.Redis, c.RedisPrefix)
	if err != nil {
		return err
	}
	defer closeRedis()
	g, err := gateway.New(cfg, opts)
	if err != nil {
		return err
	}
	addr, err := g.Start()
	if err != nil {
		g.Close(ctx)
		return err
	}
	log.Info("apimeter gateway listening", append([]any{"url", "http://" + addr.String(), "upstreams", len(cfg.Upstreams), "quotas", len(cfg.Quotas)}, dest...)...)
	if c.MetricsListen != "" {
		reg := newRegistry()
		registerGateway(reg, g)
		mln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			g.Shutdown(ctx)
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler(reg))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		defer ms.Close()
		log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	return runGateway(ctx, g, log, dest[0].(string))
}

// quotaCounter puts the quota counters on Redis when url is set; the
// returned func closes the client.
func quotaCounter(ctx context.Context, opts *gateway.Options, redisURL, prefix string) (func(), error) {
	if redisURL == "" {
		return func() {}, nil
	}
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis: %w", err)
	}
	o.ContextTimeoutEnabled = true // timeouts.quota cuts socket reads
	rc := redis.NewClient(o)
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("--redis %s: %w", o.Addr, err)
	}
	opts.Counter = gateway.NewRedisCounter(rc, prefix)
	return func() { rc.Close() }, nil
}

// runGateway serves until ctx ends, logging lost events once a minute at
// most, then shuts the gateway down. dest names where events go.
func runGateway(ctx context.Context, g *gateway.Gateway, log *slog.Logger, dest string) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	var lost int64
	for {
		select {
		case <-tick.C:
			st := g.Stats()
			if n := st.Capture.Dropped + st.Capture.Failed; n > lost {
				log.Warn("gateway: events not sent", "to", dest, "dropped", st.Capture.Dropped, "failed", st.Capture.Failed, "queued", st.Capture.Queued)
				lost = n
			}
		case err := <-g.Done():
			g.Close(context.Background())
			return err
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := g.Shutdown(sctx)
			cancel()
			st := g.Stats()
			log.Info("gateway stopped", "events_sent", st.Capture.Sent, "dropped", st.Capture.Dropped, "failed", st.Capture.Failed,
				"blocked", st.Blocked, "upstream_errors", st.UpstreamErrors)
			return err
		}
	}
}

// registerGateway exports a gateway's counters.
func registerGateway(reg prometheus.Registerer, g *gateway.Gateway) {
	counter := func(name, help string, f func(gateway.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(g.Stats())) })
	}
	reg.MustRegister(
		counter("apimeter_gateway_events_enqueued_total", "Calls captured and queued for sending.", func(s gateway.Stats) int64 { return s.Capture.Enqueued }),
		counter("apimeter_gateway_events_sent_total", "Events the collector (or the store) accepted.", func(s gateway.Stats) int64 { return s.Capture.Sent }),
		counter("apimeter_gateway_events_dropped_total", "Events dropped because the queue was full.", func(s gateway.Stats) int64 { return s.Capture.Dropped }),
		counter("apimeter_gateway_events_failed_total", "Events lost because sending failed after retries.", func(s gateway.Stats) int64 { return s.Capture.Failed }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apimeter_gateway_events_queued", Help: "Events waiting to be sent."},
			func() float64 { return float64(g.Stats().Capture.Queued) }),
		counter("apimeter_gateway_blocked_total", "Calls answered 429 by a quota.", func(s gateway.Stats) int64 { return s.Blocked }),
		counter("apimeter_gateway_upstream_errors_total", "Calls answered 502 or 504.", func(s gateway.Stats) int64 { return s.UpstreamErrors }),
		counter("apimeter_gateway_quota_errors_total", "Quota checks that failed (the call was forwarded).", func(s gateway.Stats) int64 { return s.QuotaErrors }),
		counter("apimeter_gateway_quota_skipped_total", "Calls forwarded without a quota check, the counter store's circuit being open.", func(s gateway.Stats) int64 { return s.QuotaSkipped }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apimeter_gateway_quota_circuit_open", Help: "1 while quota checks are skipped because the counter store failed repeatedly."},
			func() float64 {
				if g.Stats().QuotaBreakerOpen {
					return 1
				}
				return 0
			}),
		counter("apimeter_gateway_events_refused_total", "Events the collector refused one by one (counted in failed too); the rest of their batch was sent.", func(s gateway.Stats) int64 { return s.Capture.Refused }),
		counter("apimeter_gateway_no_route_total", "Calls no upstream matched.", func(s gateway.Stats) int64 { return s.NoRoute }),
	)
}

// startEmbeddedGateway runs the gateway of `apimeter serve --gateway-config`:
// its events go into the server's ingest path, its quota counters on the
// server's Redis when it has one.
func startEmbeddedGateway(ctx context.Context, in *instance, path string, idf identityFlags) (*gateway.Gateway, func(), error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	opts := gateway.Options{Sink: gateway.IngestSinks(in.Srv), Logger: in.log}
	closeRedis, err := quotaCounter(ctx, &opts, idf.Redis, idf.RedisPrefix)
	if err != nil {
		return nil, nil, err
	}
	g, err := gateway.New(cfg, opts)
	if err != nil {
		closeRedis()
		return nil, nil, err
	}
	addr, err := g.Start()
	if err != nil {
		g.Close(ctx)
		closeRedis()
		return nil, nil, err
	}
	if in.Prom != nil {
		registerGateway(in.Prom, g)
	}
	in.log.Info("apimeter gateway listening", "url", "http://"+addr.String(), "store", "embedded", "upstreams", len(cfg.Upstreams), "quotas", len(cfg.Quotas))
	return g, closeRedis, nil
}
