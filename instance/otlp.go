package instance

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/otlp"
	"github.com/apimeter/apimeter/server"
)

// wireOTLP serves OTLP/HTTP (POST /v1/traces, /v1/logs) on the server's
// listener: spans and access logs go the collector's way into the store.
func wireOTLP(srv *server.Server, reg *apps.Registry, prom prometheus.Registerer, f Config, log *slog.Logger) {
	otlp.New(otlp.Config{
		Apps:           reg,
		Ingest:         srv,
		Check:          srv.CheckEvent,
		MaxBodyBytes:   f.MaxBodyBytes,
		MaxBatchEvents: f.MaxBatchEvents,
		Logger:         log,
		Registerer:     prom,
	}).Register(srv)
}
