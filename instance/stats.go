package instance

import (
	"database/sql"
	"log/slog"
	"slices"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
)

// StatsConfig configure the Metrics API.
type StatsConfig struct {
	StatsQuota        int           `default:"40" env:"APIMETER_STATS_QUOTA" help:"Metrics API calls per minute allowed per organization (Apigee's documented 40); 0 or -1 turns the quota off."`
	StatsSessionQuota int           `default:"600" env:"APIMETER_STATS_SESSION_QUOTA" help:"Metrics API calls per minute allowed per key signed in to the dashboard, counted apart from --stats-quota (a page makes up to a dozen); 0 or -1 turns it off."`
	QueryTimeout      time.Duration `default:"30s" env:"APIMETER_QUERY_TIMEOUT" help:"Longest time one read query (Metrics API, events) may run; the engine stops it there and the answer is a 503."`
}

// wireStats serves the Metrics API (/v1/o/{org}/environments/{env}/stats...)
// from db, in the SQL of the store's engine.
func wireStats(srv stats.Mux, db *sql.DB, eng engine, reg *apps.Registry, f StatsConfig, q *server.Queries, log *slog.Logger) {
	quota := f.StatsQuota
	if quota == 0 {
		quota = -1 // a zero quota would refuse every call; treat it as off
	}
	sessionQuota := f.StatsSessionQuota
	if sessionQuota == 0 {
		sessionQuota = -1
	}
	stats.NewHandler(stats.Config{
		DB:                    db,
		Dialect:               eng.Dialect,
		Rollups:               eng.Rollups,
		QuotaPerMinute:        quota,
		SessionQuotaPerMinute: sessionQuota,
		Envs:                  func(org string) []string { return appEnvs(reg, org) },
		Logger:                log,
		Queries:               q,
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
