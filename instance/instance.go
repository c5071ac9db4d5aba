package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
)

// Config are the flags of every command that runs a server.
type Config struct {
	Listen         string        `default:"127.0.0.1:7070" env:"APIMETER_LISTEN" help:"Address to listen on."`
	Data           string        `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory (DuckDB file, application ids, keys, fingerprint key; with a ClickHouse store only the fingerprint key)."`
	BodyCap        int           `default:"1024" env:"APIMETER_BODY_CAP" help:"Bytes of each request/response body kept; longer bodies are cut and marked truncated."`
	SecretHeader   []string      `env:"APIMETER_SECRET_HEADERS" help:"Extra header names whose values never reach disk (besides Authorization, Cookie, X-Api-Key, ...)."`
	SecretParam    []string      `env:"APIMETER_SECRET_PARAMS" help:"Extra query parameters whose values never reach disk."`
	SecretField    []string      `env:"APIMETER_SECRET_FIELDS" help:"Extra JSON/form body and metadata field names whose values never reach disk (besides password, token, access_token, card_number, ...)."`
	MaxBodyBytes   int64         `default:"33554432" env:"APIMETER_MAX_BODY_BYTES" help:"Largest accepted request body, after gzip decoding."`
	MaxBatchEvents int           `default:"10000" env:"APIMETER_MAX_BATCH_EVENTS" help:"Most events accepted in one batch."`
	DedupeHorizon  time.Duration `default:"168h" env:"APIMETER_DEDUPE_HORIZON" help:"How long an event id is remembered, so a resent event is not stored twice."`
	DailyInterval  time.Duration `default:"1m" env:"APIMETER_DAILY_INTERVAL" help:"How often complete hours and days are folded into the rollup tables the Metrics API reads (negative: never; the events table is then read alone)."`
	LogLevel       slog.Level    `default:"info" env:"APIMETER_LOG_LEVEL" help:"debug, info, warn or error."`
	LogFormat      string        `default:"text" enum:"text,json" env:"APIMETER_LOG_FORMAT" help:"Log lines as text (key=value) or json (one object a line)."`
	Retention      time.Duration `env:"APIMETER_RETENTION" help:"Drop events once they are older than this (e.g. 9504h, about 13 months), with their rollups: whole UTC days on the embedded store, whole months on ClickHouse; 0 keeps everything."`
	StoreConfig
	StatsConfig
	IdentityConfig
	Observability
	IngestCaps
	HTTPConfig
	MeterConfig
	AuthLimitConfig
	PortalConfig
}

// Instance is a running apimeter: its store, identity, key check, HTTP
// server and sinks, assembled by Start from a Config.
type Instance struct {
	// unlock releases the data directory (lockDataDir) once the store is
	// closed.
	unlock func()

	URL   string
	Addr  net.Addr
	Store eventStore
	Srv   *server.Server
	Apps  *apps.Registry
	Keys  *auth.Keys
	Auth  *auth.Guard
	// Portal is the customer portal (docs/portal.md).
	Portal *portal.Handler
	// catalog creates application ids where this server reads them.
	catalog *catalog
	http    *http.Server
	// metrics serves /metrics when it has a listener of its own.
	metrics *http.Server
	// Prom is the registry /metrics serves.
	Prom *prometheus.Registry
	idn  *identitySetup
	// Meters are the usage events and meters (/api/v1/...).
	Meters meter.Store
	done   chan error
	Log    *slog.Logger
	// beforeClose runs first in Close (an embedded gateway sends what it
	// holds while the store is still open).
	beforeClose func() error
}

// DBFile is the DuckDB file inside the data directory.
const DBFile = "events.duckdb"

func Start(ctx context.Context, f Config) (*Instance, error) {
	return StartWith(ctx, f, Options{})
}

// StartWith starts a server with store options beyond the flags (tests and
// benchmarks).
func StartWith(ctx context.Context, f Config, so Options) (*Instance, error) {
	log := NewLogger(os.Stderr, f.LogLevel, f.LogFormat)
	if f.ClickHouse() && f.Redis == "" {
		// Aliases and usage counters embedded in one collector's memory
		// would differ from collector to collector.
		return nil, fmt.Errorf("--store %s: a ClickHouse store is shared by several processes, so the alias table and usage counters must be too: give --redis", f.StoreConfig)
	}
	// Listen first: a taken port must stop the start before anything is
	// written, or a new data directory would be left behind.
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			ln.Close()
		}
	}()
	if err := privateDataDir(f.Data); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	unlock := func() {}
	if !f.ClickHouse() {
		// A shared ClickHouse store is meant for several collectors, each
		// with its own fingerprint key file; the DuckDB file has one.
		if unlock, err = lockDataDir(f.Data); err != nil {
			return nil, err
		}
	}
	defer func() {
		if !started {
			unlock()
		}
	}()
	st, eng, cat, err := openStore(ctx, f, so, log)
	if err != nil {
		return nil, err
	}
	reg, keys := cat.Apps, cat.Keys
	authLimit, err := f.AuthLimitConfig.limiter()
	if err != nil {
		st.Close()
		return nil, err
	}
	guard := auth.New(auth.Config{
		Limiter: authLimit,
		Keys:    keys,
		IsAppID: func(id string) bool { _, ok := reg.Lookup(id); return ok },
		Envs:    func(org string) []string { return appEnvs(reg, org) },
		Logger:  log,
	})
	fpKey, err := scrub.LoadFingerprintKey(f.Data)
	if err != nil {
		st.Close()
		return nil, err
	}
	scrubber := scrub.NewWith(scrub.Config{
		SecretHeaders: f.SecretHeader, SecretParams: f.SecretParam, SecretFields: f.SecretField,
		BodyCap: f.BodyCap, Key: fpKey,
	})
	if err := checkFingerprintKey(ctx, st, scrubber); err != nil {
		st.Close()
		return nil, err
	}
	idn, err := setupIdentity(ctx, f.IdentityConfig, st.DB(), eng, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	idn.API.KeyID = scrubber.FingerprintOfHash
	prom := newRegistry()
	registerStore(prom, st)
	srv := server.New(server.Config{
		Store:          st,
		Apps:           reg,
		Scrubber:       scrubber,
		Identifier:     idn.Identifier,
		Sinks:          idn.Sinks,
		MaxBodyBytes:   f.MaxBodyBytes,
		MaxBatchEvents: f.MaxBatchEvents,
		Auth:           guard,
		Logger:         log,
		Registerer:     prom,
		Ready:          readyChecks(st, idn.Redis),

		MaxHeaderValueBytes: f.MaxHeaderValueBytes,
		MaxURIBytes:         f.MaxURIBytes,
		MaxMetadataBytes:    f.MaxMetadataBytes,
		MaxClockSkew:        f.MaxClockSkew,
		QueryTimeout:        f.QueryTimeout,
		AuthLimiter:         authLimit,
	})
	guard.Register(srv)
	idn.API.Register(srv)
	wireStats(newTimedMux(srv, prom, "apimeter_metrics_api", "Metrics API"), st.DB(), eng, reg, f.StatsConfig, srv.Queries(), log)
	wireWeb(srv)
	wireOTLP(srv, reg, prom, f, log)
	wireExport(srv, st, log)
	ms, mt, err := openMeters(ctx, st, srv, guard, reg, f, log)
	if err != nil {
		st.Close()
		idn.Close()
		return nil, err
	}
	ph, err := wirePortal(srv, st, eng, cat, idn, mt, f.PortalConfig, f.RedisPrefix, log)
	if err != nil {
		ms.Close()
		st.Close()
		idn.Close()
		return nil, err
	}
	closeStore := func() { ms.Close(); st.Close() }
	if err := f.HTTPConfig.Validate(); err != nil {
		closeStore()
		idn.Close()
		return nil, err
	}
	var metricsSrv *http.Server
	if f.MetricsListen == "" {
		srv.Handle("GET /metrics", metricsHandler(prom))
	} else {
		mln, err := net.Listen("tcp", f.MetricsListen)
		if err != nil {
			closeStore()
			idn.Close()
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler(prom))
		metricsSrv = f.HTTPConfig.server(mux)
		go metricsSrv.Serve(server.LimitListener(mln, f.HTTPConfig.withDefaults().MaxConnections))
		log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	ln = server.LimitListener(ln, f.HTTPConfig.withDefaults().MaxConnections)
	ln = server.JSONConnErrors(ln) // net/http's own 431 and 400 answers as JSON
	hs := f.HTTPConfig.server(srv)
	hs.RegisterOnShutdown(srv.Stream().Close) // open event streams would hold Shutdown up
	hs.RegisterOnShutdown(srv.Queries().Stop) // and so would running queries
	in := &Instance{URL: "http://" + ln.Addr().String(), Addr: ln.Addr(), Store: st, Srv: srv, Apps: reg, Keys: keys, Auth: guard, Portal: ph, catalog: cat, Meters: ms, http: hs, metrics: metricsSrv, Prom: prom, idn: idn, done: make(chan error, 1), Log: log, unlock: unlock}
	if so.wire != nil {
		if err := so.wire(in); err != nil {
			closeStore()
			idn.Close()
			if metricsSrv != nil {
				metricsSrv.Close()
			}
			return nil, err
		}
	}
	started = true
	go func() {
		err := hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		in.done <- err
	}()
	log.Info("apimeter listening", "url", in.URL, "store", f.StoreConfig.String(), "data", f.Data)
	return in, nil
}

// Close stops accepting requests, lets running ones finish, then closes the
// store (which writes what it has queued).
func (in *Instance) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var err error
	if in.beforeClose != nil {
		err = in.beforeClose()
	}
	err = errors.Join(err, in.http.Shutdown(ctx))
	if in.metrics != nil {
		err = errors.Join(err, in.metrics.Shutdown(ctx))
	}
	err = errors.Join(err, in.Meters.Close(), in.Store.Close(), in.idn.Close())
	if in.unlock != nil {
		in.unlock()
	}
	return err
}

// Done receives the result of serving HTTP once the server stops by
// itself (a failed listener); Close does not send on it.
func (in *Instance) Done() <-chan error { return in.done }
