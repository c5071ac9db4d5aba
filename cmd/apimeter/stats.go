package main

import (
	"log/slog"

	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
)

// statsFlags configure the Metrics API.
type statsFlags struct {
	StatsQuota int `default:"40" env:"APIMETER_STATS_QUOTA" help:"Metrics API calls per minute allowed per organization (Apigee's documented 40); 0 or -1 turns the quota off."`
}

// wireStats serves the Metrics API (/v1/o/{org}/environments/{env}/stats...)
// from the DuckDB store.
func wireStats(srv stats.Mux, st *duckdb.Store, f statsFlags, log *slog.Logger) {
	quota := f.StatsQuota
	if quota == 0 {
		quota = -1 // a zero quota would refuse every call; treat it as off
	}
	stats.NewHandler(stats.Config{
		DB:             st.DB(),
		Dialect:        stats.DuckDB{},
		DailyTable:     duckdb.DailyTable,
		QuotaPerMinute: quota,
		Logger:         log,
	}).Register(srv)
}
