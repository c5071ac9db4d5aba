package instance

import (
	"database/sql"
	"log/slog"
	"slices"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/stats"
)

// StatsConfig configure the Metrics API.
type StatsConfig struct {
	StatsQuota int `default:"40" env:"APIMETER_STATS_QUOTA" help:"Metrics API calls per minute allowed per organization (Apigee's documented 40); 0 or -1 turns the quota off."`
}

// wireStats serves the Metrics API (/v1/o/{org}/environments/{env}/stats...)
// from db, in the SQL of the store's engine.
func wireStats(srv stats.Mux, db *sql.DB, eng engine, reg *apps.Registry, f StatsConfig, log *slog.Logger) {
	quota := f.StatsQuota
	if quota == 0 {
		quota = -1 // a zero quota would refuse every call; treat it as off
	}
	stats.NewHandler(stats.Config{
		DB:             db,
		Dialect:        eng.Dialect,
		DailyTable:     eng.DailyTable,
		QuotaPerMinute: quota,
		Envs:           func(org string) []string { return appEnvs(reg, org) },
		Logger:         log,
	}).Register(srv)
}

// appEnvs lists the envs an org has application ids for: the envs its
// events can arrive in.
func appEnvs(reg *apps.Registry, org string) []string {
	var envs []string
	for _, a := range reg.List() {
		if a.Org == org {
			envs = append(envs, a.Env)
		}
	}
	slices.Sort(envs)
	return slices.Compact(envs)
}
