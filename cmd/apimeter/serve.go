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
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// serverFlags are the flags of every command that runs a server.
type serverFlags struct {
	Listen         string        `default:"127.0.0.1:7070" env:"APIMETER_LISTEN" help:"Address to listen on."`
	Data           string        `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory (DuckDB file, application ids)."`
	BodyCap        int           `default:"1024" env:"APIMETER_BODY_CAP" help:"Bytes of each request/response body kept; longer bodies are cut and marked truncated."`
	SecretHeader   []string      `env:"APIMETER_SECRET_HEADERS" help:"Extra header names whose values never reach disk (besides Authorization, Cookie, X-Api-Key, ...)."`
	SecretParam    []string      `env:"APIMETER_SECRET_PARAMS" help:"Extra query parameters whose values never reach disk."`
	MaxBodyBytes   int64         `default:"33554432" env:"APIMETER_MAX_BODY_BYTES" help:"Largest accepted request body, after gzip decoding."`
	MaxBatchEvents int           `default:"10000" env:"APIMETER_MAX_BATCH_EVENTS" help:"Most events accepted in one batch."`
	DedupeHorizon  time.Duration `default:"168h" env:"APIMETER_DEDUPE_HORIZON" help:"How long an event id is remembered, so a resent event is not stored twice."`
	DailyInterval  time.Duration `default:"5m" env:"APIMETER_DAILY_INTERVAL" help:"How often complete days are folded into the daily table the Metrics API reads (negative: never; the events table is then read alone)."`
	LogLevel       slog.Level    `default:"info" env:"APIMETER_LOG_LEVEL" help:"debug, info, warn or error."`
	statsFlags
	identityFlags
	storeFlags
}

// instance is a running server.
type instance struct {
	URL   string
	Addr  net.Addr
	Store *duckdb.Store // nil with a ClickHouse store
	es    *eventStore
	Srv   *server.Server
	Apps  *apps.Registry
	http  *http.Server
	idn   *identitySetup
	done  chan error
	log   *slog.Logger
}

// DBFile is the DuckDB file inside the data directory.
const DBFile = "events.duckdb"

func start(ctx context.Context, f serverFlags) (*instance, error) {
	return startWith(ctx, f, duckdb.Options{})
}

// startWith starts a server with store options beyond the flags (tests and
// benchmarks).
func startWith(ctx context.Context, f serverFlags, so duckdb.Options) (*instance, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: f.LogLevel}))
	if err := os.MkdirAll(f.Data, 0o750); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	reg, err := apps.Open(f.Data)
	if err != nil {
		return nil, err
	}
	so.DedupeHorizon, so.Logger = f.DedupeHorizon, log
	if so.DailyInterval == 0 {
		so.DailyInterval = f.DailyInterval
	}
	st, err := openEventStore(ctx, f, so, log)
	if err != nil {
		return nil, err
	}
	if st.Apps != nil {
		if reg, err = apps.OpenLoader(st.Apps); err != nil {
			st.Close()
			return nil, err
		}
	}
	idn, err := setupIdentity(ctx, f.identityFlags, st, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	srv := server.New(server.Config{
		Store:          st,
		Apps:           reg,
		Scrubber:       apimeter.NewScrubber(f.SecretHeader, f.SecretParam, f.BodyCap),
		Identifier:     idn.Identifier,
		Sinks:          idn.Sinks,
		MaxBodyBytes:   f.MaxBodyBytes,
		MaxBatchEvents: f.MaxBatchEvents,
		Logger:         log,
	})
	idn.API.Register(srv)
	wireStats(srv, st, f.statsFlags, log)
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		st.Close()
		idn.Close()
		return nil, err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	in := &instance{URL: "http://" + ln.Addr().String(), Addr: ln.Addr(), Store: st.Duck, es: st, Srv: srv, Apps: reg, http: hs, idn: idn, done: make(chan error, 1), log: log}
	go func() {
		err := hs.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		in.done <- err
	}()
	log.Info("apimeter listening", "url", in.URL, "data", f.Data)
	return in, nil
}

// Close stops accepting requests, lets running ones finish, then closes the
// store (which writes what it has queued).
func (in *instance) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := in.http.Shutdown(ctx)
	return errors.Join(err, in.es.Close(), in.idn.Close())
}

type serveCmd struct {
	serverFlags
}

func (c *serveCmd) Run(ctx context.Context) error {
	in, err := start(ctx, c.serverFlags)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		in.log.Info("shutting down")
	case err := <-in.done:
		in.es.Close()
		return err
	}
	return in.Close()
}

type appsCmd struct {
	Create appsCreateCmd `cmd:"" help:"Create an application id for an org and environment; prints the id alone on its last line."`
	List   appsListCmd   `cmd:"" help:"List application ids."`
}

type appsCreateCmd struct {
	Data  string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	Store string `env:"APIMETER_STORE" placeholder:"URL" help:"clickhouse://host:9000/db: keep the id in that ClickHouse database, shared by the collectors started with the same --store."`
	Org   string `required:"" help:"Organization the events belong to."`
	Env   string `default:"prod" help:"Environment (e.g. prod, test)."`
}

func (c *appsCreateCmd) Run(ctx context.Context) error {
	var a apps.App
	var err error
	if c.Store != "" {
		st, serr := openAppsStore(ctx, c.Store)
		if serr != nil {
			return serr
		}
		defer st.Close()
		if a, err = st.CreateApp(ctx, c.Org, c.Env); err != nil {
			return err
		}
	} else if a, err = apps.Create(c.Data, c.Org, c.Env); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created application id for org %s, env %s; send it as X-Moesif-Application-Id:\n", a.Org, a.Env)
	fmt.Println(a.ID)
	return nil
}

type appsListCmd struct {
	Data  string `default:"./apimeter-data" env:"APIMETER_DATA" help:"Data directory."`
	Store string `env:"APIMETER_STORE" placeholder:"URL" help:"clickhouse://host:9000/db: list the ids kept in that ClickHouse database."`
}

func (c *appsListCmd) Run(ctx context.Context) error {
	var reg *apps.Registry
	var err error
	if c.Store != "" {
		st, serr := openAppsStore(ctx, c.Store)
		if serr != nil {
			return serr
		}
		defer st.Close()
		reg, err = apps.OpenLoader(func() ([]apps.App, error) { return st.Apps(ctx) })
	} else {
		reg, err = apps.Open(c.Data)
	}
	if err != nil {
		return err
	}
	for _, a := range reg.List() {
		fmt.Printf("%s\t%s\t%s\t%s\n", a.Org, a.Env, a.Created.Format(time.RFC3339), a.ID)
	}
	return nil
}
