package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/kafka"
)

// kafkaConnFlags say how to reach Kafka or Event Hubs: shared by the
// consumer (`apimeter consume`, `serve --kafka-*`) and the gateway's Kafka
// output (`gateway --kafka-*`), under the environment prefix
// APIMETER_KAFKA_ that their embedding gives.
type kafkaConnFlags struct {
	Brokers      []string `env:"BROKERS" placeholder:"HOST:PORT" help:"Kafka brokers (for Event Hubs: NAMESPACE.servicebus.windows.net:9093, or give the Event Hubs connection string)."`
	EventHubs    string   `env:"EVENT_HUBS" placeholder:"CONNECTION-STRING" help:"Azure Event Hubs namespace connection string: sets the broker (port 9093), TLS and SASL PLAIN with user $ConnectionString."`
	TLS          bool     `env:"TLS" help:"Connect with TLS (on with an Event Hubs connection string)."`
	SASLUser     string   `env:"SASL_USER" help:"SASL PLAIN user ($ConnectionString for Event Hubs)."`
	SASLPassword string   `env:"SASL_PASSWORD" help:"SASL PLAIN password (the connection string for Event Hubs)."`
}

func (f kafkaConnFlags) enabled() bool { return len(f.Brokers) > 0 || f.EventHubs != "" }

func (f kafkaConnFlags) conn() (kafka.Conn, error) {
	if f.EventHubs != "" {
		c, err := kafka.EventHubs(f.EventHubs)
		if err != nil {
			return c, err
		}
		if len(f.Brokers) > 0 {
			c.Brokers = f.Brokers
		}
		return c, nil
	}
	if len(f.Brokers) == 0 {
		return kafka.Conn{}, errors.New("no brokers: give --brokers or --event-hubs")
	}
	return kafka.Conn{Brokers: f.Brokers, TLS: f.TLS, SASLUser: f.SASLUser, SASLPassword: f.SASLPassword}, nil
}

// consumerFlags configure a Kafka / Event Hubs consumer: those of
// `apimeter consume`, and of `apimeter serve` with the kafka- prefix.
type consumerFlags struct {
	kafkaConnFlags
	Topic          string        `env:"TOPIC" help:"Topic (event hub) to read."`
	Group          string        `default:"apimeter" env:"GROUP" help:"Consumer group; a new group starts at the earliest offset."`
	Format         string        `default:"apim" enum:"apim,json" env:"FORMAT" help:"apim: seed 002's request:/response: messages (APIM's log-to-eventhub policy); json: events in the collector's JSON schema (what apimeter gateway writes by default)."`
	Org            string        `env:"ORG" help:"Organization the calls belong to (or --app-id)."`
	Env            string        `default:"prod" env:"ENV" help:"Environment the calls belong to."`
	AppID          string        `env:"APP_ID" help:"Application id naming the org and env (and, with --collector, the write key)."`
	PairTTL        time.Duration `default:"2m" env:"PAIR_TTL" help:"How long a request waits for its response (and a response for its request), in record time, before it is stored alone and flagged."`
	MaxPending     int           `default:"200000" env:"MAX_PENDING" help:"Most halves waiting for their pair; beyond it the oldest are stored alone and flagged."`
	SessionTimeout time.Duration `default:"45s" env:"SESSION_TIMEOUT" help:"How long the group waits for a silent member (one killed, say) before giving its partitions to another."`
}

func (f consumerFlags) config(log *slog.Logger) (kafka.ConsumerConfig, error) {
	conn, err := f.conn()
	if err != nil {
		return kafka.ConsumerConfig{}, err
	}
	if f.Topic == "" {
		return kafka.ConsumerConfig{}, errors.New("no topic: give the topic (event hub) to read")
	}
	format, err := kafka.ParseFormat(f.Format)
	if err != nil {
		return kafka.ConsumerConfig{}, err
	}
	return kafka.ConsumerConfig{Conn: conn, Topic: f.Topic, Group: f.Group, Format: format, Org: f.Org, Env: f.Env,
		PairTTL: f.PairTTL, MaxPending: f.MaxPending, SessionTimeout: f.SessionTimeout, Logger: log}, nil
}

// startEmbeddedConsumer runs a consumer into a running server's ingest path
// (identify, scrub, store) when f names brokers. Its health goes to the
// server's /metrics. The channel gets Run's result; it is nil without a
// consumer.
func startEmbeddedConsumer(ctx context.Context, in *instance, f consumerFlags) (<-chan error, error) {
	if !f.enabled() {
		return nil, nil
	}
	cfg, err := f.config(in.log)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	if f.AppID != "" {
		a, ok := in.Apps.Lookup(f.AppID)
		if !ok {
			return nil, fmt.Errorf("kafka consumer: application id %q is unknown here (apimeter apps list)", f.AppID)
		}
		cfg.Org, cfg.Env = a.Org, a.Env
	}
	if cfg.Org == "" {
		return nil, errors.New("kafka consumer: name where the calls belong with an org (and env) or an application id")
	}
	cfg.Ingester, cfg.Registerer, cfg.Limits = in.Srv, in.Prom, in.Srv.EventLimits()
	cons, err := kafka.NewConsumer(cfg)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	return done, nil
}

// wait serves until ctx ends, the server fails or the consumer (if any)
// stops with an error; then it lets the consumer finish and closes.
func (in *instance) wait(ctx context.Context, consumed <-chan error) error {
	select {
	case <-ctx.Done():
		in.log.Info("shutting down")
	case err := <-in.done:
		in.Store.Close()
		return err
	case err := <-consumed:
		consumed = nil
		if err != nil {
			in.Close()
			return err
		}
	}
	var cerr error
	if consumed != nil {
		cerr = <-consumed
	}
	return errors.Join(cerr, in.Close())
}

type consumeCmd struct {
	consumerFlags `envprefix:"APIMETER_KAFKA_"`
	Collector     string `env:"APIMETER_COLLECTOR" placeholder:"URL" help:"Post the calls to this running collector (with --app-id as write key) instead of opening a store here."`
	serverFlags   `group:"Store (without --collector)"`
}

func (c *consumeCmd) Run(ctx context.Context) error {
	if c.Collector != "" && c.Store != "" {
		return errors.New("--store and --collector exclude each other: the collector stores the calls in its own store")
	}
	if c.Collector == "" {
		// The consumer and the store in one process: serve's API beside it,
		// since the DuckDB file has one process at a time (a ClickHouse
		// store is shared with the collectors and other consumers).
		if !c.consumerFlags.enabled() {
			return errors.New("no brokers: give --brokers or --event-hubs")
		}
		in, err := start(ctx, c.serverFlags)
		if err != nil {
			return err
		}
		consumed, err := startEmbeddedConsumer(ctx, in, c.consumerFlags)
		if err != nil {
			in.Close()
			return err
		}
		return in.wait(ctx, consumed)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: c.LogLevel}))
	if c.AppID == "" {
		return errors.New("--collector needs --app-id, the write key naming the org and env")
	}
	cfg, err := c.consumerFlags.config(log)
	if err != nil {
		return err
	}
	sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: c.Collector, ApplicationID: c.AppID, Logger: log})
	if err != nil {
		return err
	}
	defer sink.Close(context.Background())
	cfg.Ingester = collectorIngester{sink}
	if c.MetricsListen != "" {
		// The consumer's health, on an address of its own: there is no
		// server here to carry /metrics.
		reg := newRegistry()
		cfg.Registerer = reg
		ln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler(reg))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(ln)
		defer ms.Close()
		log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	cons, err := kafka.NewConsumer(cfg)
	if err != nil {
		return err
	}
	return cons.Run(ctx)
}

// collectorIngester stores through a running collector, which answers
// only once the events are durable.
type collectorIngester struct{ sink *capture.HTTPSink }

func (c collectorIngester) Ingest(ctx context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	return apimeter.AppendResult{}, c.sink.Send(ctx, events)
}
