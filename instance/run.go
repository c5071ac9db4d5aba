package instance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/kafka"
)

// Serve runs what apimeter serve runs until ctx ends: an instance of cfg,
// with a gateway configured by the file gatewayConfig (none when empty)
// whose events go straight into its store, a consumer (none without
// brokers) feeding its ingest path, and the alert evaluator.
func Serve(ctx context.Context, cfg Config, gatewayConfig string, consumer ConsumerConfig, alerts AlertsConfig) error {
	// Alerts are wired before the first request: their routes answer as
	// soon as the server does.
	var stopAlerts func()
	in, err := StartWith(ctx, cfg, Options{wire: func(in *Instance) (err error) {
		stopAlerts, err = startAlerts(ctx, in, alerts, cfg, gatewayConfig)
		return err
	}})
	if err != nil {
		return err
	}
	in.beforeClose = func() error { stopAlerts(); return nil }
	if gatewayConfig != "" {
		g, closeRedis, err := StartGateway(ctx, in, gatewayConfig, cfg.IdentityConfig)
		if err != nil {
			in.Close()
			return err
		}
		in.Portal.SetQuotas(g)
		// Before the store closes: the gateway's queued events go in.
		in.beforeClose = func() error {
			stopAlerts()
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			defer closeRedis()
			return g.Shutdown(sctx)
		}
	}
	// The consumer stops with ctx: it stores its batch and commits before
	// the store closes.
	consumed, err := StartConsumer(ctx, in, consumer)
	if err != nil {
		in.Close()
		return err
	}
	return in.wait(ctx, consumed)
}

// Consume runs what apimeter consume runs until ctx ends: a consumer of
// cons that posts the calls to a running collector (collector, a URL, with
// cons.AppID as write key), or without one stores them through an
// instance of cfg of its own.
func Consume(ctx context.Context, cons ConsumerConfig, collector string, cfg Config) error {
	if collector != "" && cfg.Store != "" {
		return errors.New("--store and --collector exclude each other: the collector stores the calls in its own store")
	}
	if collector == "" {
		// The consumer and the store in one process: serve's API beside it,
		// since the DuckDB file has one process at a time (a ClickHouse
		// store is shared with the collectors and other consumers).
		if !cons.Enabled() {
			return errors.New("no brokers: give --brokers or --event-hubs")
		}
		in, err := Start(ctx, cfg)
		if err != nil {
			return err
		}
		consumed, err := StartConsumer(ctx, in, cons)
		if err != nil {
			in.Close()
			return err
		}
		return in.wait(ctx, consumed)
	}
	log := NewLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if cons.AppID == "" {
		return errors.New("--collector needs --app-id, the write key naming the org and env")
	}
	kcfg, err := cons.KafkaConfig(log)
	if err != nil {
		return err
	}
	sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: collector, ApplicationID: cons.AppID, Logger: log})
	if err != nil {
		return err
	}
	defer sink.Close(context.Background())
	kcfg.Ingester = collectorIngester{sink}
	if cfg.MetricsListen != "" {
		// The consumer's health, on an address of its own: there is no
		// server here to carry /metrics.
		reg := newRegistry()
		kcfg.Registerer = reg
		closeMetrics, err := serveMetrics(cfg.MetricsListen, reg, log)
		if err != nil {
			return err
		}
		defer closeMetrics()
	}
	consumer, err := kafka.NewConsumer(kcfg)
	if err != nil {
		return err
	}
	return consumer.Run(ctx)
}

// collectorIngester stores through a running collector, which answers
// only once the events are durable.
type collectorIngester struct{ sink *capture.HTTPSink }

func (c collectorIngester) Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	return apimeter.AppendResult{}, c.sink.Send(ctx, events)
}

// GatewayRun is how apimeter gateway runs a gateway on its own: where its
// events go (a collector, or Kafka when Kafka names brokers), its quota
// counters (Redis), its log and its /metrics.
type GatewayRun struct {
	Collector     string // default defaultCollector
	AppID         string
	Redis         string
	RedisPrefix   string
	LogLevel      slog.Level
	LogFormat     string // "text" or "json"
	MetricsListen string
	Kafka         KafkaOut
	// Claims are the identity rules applied to each call (the same flags
	// as serve's), unless the config file has its own.
	Claims ClaimsConfig
}

// defaultCollector is where the gateway sends events when neither a
// collector nor Kafka is given.
const defaultCollector = "http://127.0.0.1:7070"

// RunGateway runs a gateway of cfg until ctx ends, then lets it send what
// it holds.
func RunGateway(ctx context.Context, cfg gateway.Config, c GatewayRun) error {
	log := NewLogger(os.Stderr, c.LogLevel, c.LogFormat)
	edge, err := c.Claims.Edge()
	if err != nil {
		return err
	}
	opts := gateway.Options{Logger: log, Identity: edge}
	dest := []any{"collector", cmp.Or(c.Collector, defaultCollector)}
	if c.Kafka.Enabled() {
		sinks, closeProd, err := c.Kafka.Sinks(cfg, log)
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
		closeMetrics, err := serveMetrics(c.MetricsListen, reg, log)
		if err != nil {
			g.Shutdown(ctx)
			return err
		}
		defer closeMetrics()
	}
	return runGateway(ctx, g, log, dest[0].(string))
}

// serveMetrics serves reg's /metrics on an address of its own, for a
// process with no server to carry it (a consumer or a gateway alone),
// until the func it returns is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler(reg))
	ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go ms.Serve(ln)
	log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { ms.Close() }, nil
}
