package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/instance"
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
	LogFormat     string     `default:"text" enum:"text,json" env:"APIMETER_LOG_FORMAT" help:"Log lines as text (key=value) or json (one object a line)."`
	MetricsListen string     `env:"APIMETER_METRICS_LISTEN" placeholder:"ADDR" help:"Serve /metrics (the gateway's counters: events sent, dropped, failed, calls blocked, upstream errors) on this address, e.g. 127.0.0.1:9465; empty: none."`

	Kafka instance.KafkaOut `embed:"" prefix:"kafka-" envprefix:"APIMETER_KAFKA_" group:"Kafka / Event Hubs output (instead of --collector; off without --kafka-brokers or --kafka-event-hubs)"`

	// The collector's identity flags, applied here while the token is
	// still readable (the events carry it only as a fingerprint).
	instance.ClaimsConfig `group:"Identity (as serve's; a config file's jwt_secrets, jwt_claim or company_rules replace them)"`
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
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.Listen != "" {
		cfg.Listen = c.Listen
	}
	return instance.RunGateway(ctx, cfg, instance.GatewayRun{Collector: c.Collector, AppID: c.AppID, Redis: c.Redis,
		RedisPrefix: c.RedisPrefix, LogLevel: c.LogLevel, LogFormat: c.LogFormat, MetricsListen: c.MetricsListen, Kafka: c.Kafka, Claims: c.ClaimsConfig})
}
