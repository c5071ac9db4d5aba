package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apimeter/apimeter/kafka"
)

// KafkaConn say how to reach Kafka or Event Hubs: shared by the
// consumer (`apimeter consume`, `serve --kafka-*`) and the gateway's Kafka
// output (`gateway --kafka-*`), under the environment prefix
// APIMETER_KAFKA_ that their embedding gives.
type KafkaConn struct {
	Brokers      []string `env:"BROKERS" placeholder:"HOST:PORT" help:"Kafka brokers (for Event Hubs: NAMESPACE.servicebus.windows.net:9093, or give the Event Hubs connection string)."`
	EventHubs    string   `env:"EVENT_HUBS" placeholder:"CONNECTION-STRING" help:"Azure Event Hubs namespace connection string: sets the broker (port 9093), TLS and SASL PLAIN with user $ConnectionString."`
	TLS          bool     `env:"TLS" help:"Connect with TLS (on with an Event Hubs connection string)."`
	SASLUser     string   `env:"SASL_USER" help:"SASL PLAIN user ($ConnectionString for Event Hubs)."`
	SASLPassword string   `env:"SASL_PASSWORD" help:"SASL PLAIN password (the connection string for Event Hubs)."`
}

func (f KafkaConn) Enabled() bool { return len(f.Brokers) > 0 || f.EventHubs != "" }

func (f KafkaConn) Conn() (kafka.Conn, error) {
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

// ConsumerConfig configure a Kafka / Event Hubs consumer: those of
// `apimeter consume`, and of `apimeter serve` with the kafka- prefix.
type ConsumerConfig struct {
	KafkaConn
	Topic          string        `env:"TOPIC" help:"Topic (event hub) to read."`
	Group          string        `default:"apimeter" env:"GROUP" help:"Consumer group; a new group starts at the earliest offset."`
	Format         string        `default:"apim" enum:"apim,json" env:"FORMAT" help:"apim: Azure API Management's log-to-eventhub messages (request:/response:); json: events in the collector's JSON schema (what apimeter gateway writes by default)."`
	Org            string        `env:"ORG" help:"Organization the calls belong to (or --app-id)."`
	Env            string        `default:"prod" env:"ENV" help:"Environment the calls belong to."`
	AppID          string        `env:"APP_ID" help:"Application id naming the org and env (and, with --collector, the write key)."`
	PairTTL        time.Duration `default:"2m" env:"PAIR_TTL" help:"How long a request waits for its response (and a response for its request), in record time, before it is stored alone and flagged."`
	MaxPending     int           `default:"200000" env:"MAX_PENDING" help:"Most halves waiting for their pair; beyond it the oldest are stored alone and flagged."`
	SessionTimeout time.Duration `default:"45s" env:"SESSION_TIMEOUT" help:"How long the group waits for a silent member (one killed, say) before giving its partitions to another."`
}

func (f ConsumerConfig) KafkaConfig(log *slog.Logger) (kafka.ConsumerConfig, error) {
	conn, err := f.Conn()
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

// StartConsumer runs a consumer into a running server's ingest path
// (identify, scrub, store) when f names brokers. Its health goes to the
// server's /metrics. The channel gets Run's result; it is nil without a
// consumer.
func StartConsumer(ctx context.Context, in *Instance, f ConsumerConfig) (<-chan error, error) {
	if !f.Enabled() {
		return nil, nil
	}
	cfg, err := f.KafkaConfig(in.Log)
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
	cfg.Ingester, cfg.Registerer = in.Srv, in.Prom
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
func (in *Instance) wait(ctx context.Context, consumed <-chan error) error {
	select {
	case <-ctx.Done():
		in.Log.Info("shutting down")
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
