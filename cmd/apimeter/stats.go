package main

import (
	"log/slog"

	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
)

// statsFlags configure the Metrics API.
type statsFlags struct {
	StatsQuota int `default:"40" env:"APIMETER_STATS_QUOTA" help:"Metrics API calls per minute allowed per organization (Apigee's documented 40); 0 or -1 turns the quota off."`
}

// wireStats serves the Metrics API (/v1/o/{org}/environments/{env}/stats...)
// from the event store.
func wireStats(srv *server.Server, st *eventStore, f statsFlags, log *slog.Logger) {
	quota := f.StatsQuota
	if quota == 0 {
		quota = -1 // a zero quota would refuse every call; treat it as off
	}
	stats.NewHandler(stats.Config{
		DB:             st.DB,
		Dialect:        st.Dialect,
		DailyTable:     st.DailyTable,
		QuotaPerMinute: quota,
		Logger:         log,
	}).Register(srv)
}
