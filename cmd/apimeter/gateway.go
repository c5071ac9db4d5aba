package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter/gateway"
)

// gatewayCmd runs the gateway on its own, sending events to a collector.
type gatewayCmd struct {
	Config      string     `short:"c" type:"existingfile" env:"APIMETER_GATEWAY_CONFIG" placeholder:"FILE" help:"YAML configuration: upstreams, routes, quotas, timeouts (docs/gateway.md)."`
	Listen      string     `env:"APIMETER_GATEWAY_LISTEN" help:"Address to listen on; overrides the config's listen (default 127.0.0.1:8080)."`
	Collector   string     `default:"http://127.0.0.1:7070" env:"APIMETER_COLLECTOR" placeholder:"URL" help:"apimeter collector the events are sent to."`
	AppID       string     `env:"APIMETER_APP_ID" placeholder:"ID" help:"Application id the events are sent with (apimeter apps create), for upstreams without app_id."`
	Upstream    string     `placeholder:"URL" help:"Without --config: the one API to front."`
	APIName     string     `help:"Without --config: the API name of --upstream (Apigee's apiproxy; default: its host)."`
	Route       []string   `placeholder:"TEMPLATE" help:"Without --config: a route template of --upstream, e.g. '/accounts/{id}/message' (repeatable)."`
	Redis       string     `env:"APIMETER_REDIS" placeholder:"URL" help:"Redis URL for quota counters shared by several gateways; empty keeps them in this process."`
	RedisPrefix string     `default:"apimeter:" env:"APIMETER_REDIS_PREFIX" help:"Prefix of every Redis key."`
	LogLevel    slog.Level `default:"info" env:"APIMETER_LOG_LEVEL" help:"debug, info, warn or error."`
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
	opts := gateway.Options{Sink: gateway.CollectorSinks(c.Collector, c.AppID, nil), Logger: log}
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
	log.Info("apimeter gateway listening", "url", "http://"+addr.String(), "collector", c.Collector, "upstreams", len(cfg.Upstreams), "quotas", len(cfg.Quotas))
	return runGateway(ctx, g, log)
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
	rc := redis.NewClient(o)
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("--redis %s: %w", o.Addr, err)
	}
	opts.Counter = gateway.NewRedisCounter(rc, prefix)
	return func() { rc.Close() }, nil
}

// runGateway serves until ctx ends, logging lost events as they happen,
// then shuts the gateway down.
func runGateway(ctx context.Context, g *gateway.Gateway, log *slog.Logger) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	var lost int64
	for {
		select {
		case <-tick.C:
			st := g.Stats()
			if n := st.Capture.Dropped + st.Capture.Failed; n > lost {
				log.Warn("gateway: events not sent to the collector", "dropped", st.Capture.Dropped, "failed", st.Capture.Failed, "queued", st.Capture.Queued)
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
	in.log.Info("apimeter gateway listening", "url", "http://"+addr.String(), "store", "embedded", "upstreams", len(cfg.Upstreams), "quotas", len(cfg.Quotas))
	return g, closeRedis, nil
}
