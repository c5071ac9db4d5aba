package instance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/httpmsg"
	"github.com/apimeter/apimeter/kafka"
)

// KafkaOut configure the gateway's Kafka / Event Hubs output: the
// consumer's connection flags, and what is written where.
type KafkaOut struct {
	KafkaConn
	Topic           string        `env:"TOPIC" help:"Topic (event hub) the calls are written to."`
	Format          string        `default:"json" enum:"apim,json" env:"FORMAT" help:"json: one record per call in the collector's schema, all the gateway knows (read it with apimeter consume --format json); apim: Azure API Management's log-to-eventhub messages (request:/response:) on partitions 0 and 1, as its policy writes them."`
	DeliveryTimeout time.Duration `default:"30s" env:"DELIVERY_TIMEOUT" help:"How long a batch may wait for the brokers (retries included) before its calls count as failed; meanwhile new calls queue, then are dropped and counted."`
}

// sinks returns the SinkFunc writing every upstream's events to the topic,
// through one Producer (one set of connections) and a Sink per upstream,
// and the func that closes the Producer once the gateway is closed.
func (f KafkaOut) Sinks(cfg gateway.Config, log *slog.Logger) (gateway.SinkFunc, func(), error) {
	conn, err := f.Conn()
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

// StartGateway runs the gateway of `apimeter serve --gateway-config`:
// its events go into the server's ingest path, its quota counters on the
// server's Redis when it has one.
func StartGateway(ctx context.Context, in *Instance, path string, idf IdentityConfig) (*gateway.Gateway, func(), error) {
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	// The server's own identity rules, applied while the token is
	// readable: its events reach the store with the token fingerprinted.
	edge, err := idf.Edge()
	if err != nil {
		return nil, nil, err
	}
	opts := gateway.Options{Sink: gateway.IngestSinks(in.Srv), Logger: in.Log, Identity: edge}
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
	in.Log.Info("apimeter gateway listening", "url", "http://"+addr.String(), "store", "embedded", "upstreams", len(cfg.Upstreams), "quotas", len(cfg.Quotas))
	return g, closeRedis, nil
}
