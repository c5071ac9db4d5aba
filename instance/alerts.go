package instance

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/apimeter/apimeter/alerts"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/stats"
)

// AlertsConfig are the flags of alert evaluation (docs/alerts.md).
type AlertsConfig struct {
	AlertsConfig   string        `env:"APIMETER_ALERTS_CONFIG" placeholder:"FILE" help:"YAML file of alert rules (docs/alerts.md), read again on SIGHUP. Rules can also be made over the API."`
	AlertsInterval time.Duration `default:"10s" env:"APIMETER_ALERTS_INTERVAL" help:"Time between evaluations of the alert rules."`
	PublicURL      string        `env:"APIMETER_PUBLIC_URL" placeholder:"URL" help:"The address people open the dashboard at, for the links in alert notifications (default: the listen address)."`
}

// gatewayQuotas are the quotas of the embedded gateway's config, for quota
// rules; empty until the gateway is configured.
type gatewayQuotas struct {
	p atomic.Pointer[map[string]alerts.QuotaLimit]
}

func (g *gatewayQuotas) QuotaLimit(name string) (alerts.QuotaLimit, bool) {
	m := g.p.Load()
	if m == nil {
		return alerts.QuotaLimit{}, false
	}
	q, ok := (*m)[name]
	return q, ok
}

func (g *gatewayQuotas) set(cfg gateway.Config) {
	m := map[string]alerts.QuotaLimit{}
	for _, q := range cfg.Quotas {
		m[q.Name] = alerts.QuotaLimit{By: q.By, Per: q.Per, Limit: q.Limit, Overrides: q.Overrides, APIs: q.APIs}
	}
	g.p.Store(&m)
}

// startAlerts runs the alert evaluator of in, serves its API and reloads
// the rules file on SIGHUP; stop ends it all (before the store closes).
func startAlerts(ctx context.Context, in *Instance, f AlertsConfig, sf Config, gatewayConfig string) (stop func(), err error) {
	var fileRules []alerts.Rule
	if f.AlertsConfig != "" {
		if fileRules, err = alerts.LoadFile(f.AlertsConfig); err != nil {
			return nil, fmt.Errorf("--alerts-config: %w", err)
		}
	}
	engine, dialect, meterDialect := alerts.DuckDB, stats.Dialect(stats.DuckDB{}), meter.Dialect(meter.DuckDB{})
	var leaser alerts.Leaser = &alerts.LocalLeaser{}
	if sf.ClickHouse() {
		engine, dialect, meterDialect = alerts.ClickHouse, stats.ClickHouse{}, meter.ClickHouse{}
		host, _ := os.Hostname()
		leaser = &alerts.RedisLeaser{Client: in.idn.Redis, Prefix: sf.RedisPrefix, Owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString())}
	}
	st, err := alerts.NewSQLStore(ctx, in.Store.DB(), engine)
	if err != nil {
		return nil, err
	}
	periods := identity.Periods{AnchorDay: sf.BillingDay}
	if sf.BillingTZ != "" && sf.BillingTZ != "UTC" {
		if periods.Location, err = time.LoadLocation(sf.BillingTZ); err != nil {
			return nil, fmt.Errorf("--billing-tz: %w", err)
		}
	}
	quotas := &gatewayQuotas{}
	if gatewayConfig != "" {
		gc, err := gateway.LoadConfig(gatewayConfig)
		if err != nil {
			return nil, err
		}
		quotas.set(gc)
	}
	public := f.PublicURL
	if public == "" {
		public = in.URL
	}
	m := alerts.NewMetrics(in.Prom)
	notifier := alerts.NewNotifier(alerts.NotifierConfig{Store: st, Logger: in.Log, Metrics: m})
	ev, err := alerts.New(alerts.Config{
		Store: st, DB: in.Store.DB(), Dialect: dialect, Notifier: notifier, Leaser: leaser,
		Interval: f.AlertsInterval, Dashboard: public, Periods: periods, Quotas: quotas,
		Meters: meter.AlertSource{Store: in.Meters, Dialect: meterDialect},
		Logger: in.Log, Metrics: m,
	})
	if err != nil {
		notifier.Close()
		return nil, err
	}
	ev.SetFileRules(fileRules)
	(&alerts.Handler{Eval: ev, Store: st, Logger: in.Log}).Register(in.Srv)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		ev.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if f.AlertsConfig == "" {
					continue
				}
				rs, err := alerts.LoadFile(f.AlertsConfig)
				if err != nil {
					in.Log.Error("alerts config not reloaded; the previous rules stay", "err", err)
					continue
				}
				ev.SetFileRules(rs)
				in.Log.Info("alerts config reloaded", "rules", len(rs))
			}
		}
	}()
	in.Log.Info("alerts", "rules_in_file", len(fileRules), "interval", f.AlertsInterval, "store", engine)
	return func() {
		cancel()
		wg.Wait()
		notifier.Close()
	}, nil
}

// demoAlerts are the demo's alert rules, so that its Alerts page has
// something to show; they notify no one.
const demoAlerts = `rules:
  - {id: company-errors, name: Company error rate, org: %[1]q, env: %[2]q, metric: error_rate, per: company, window: 5m, threshold: 0.05, min_volume: 20}
  - {id: slow, name: Slow calls, org: %[1]q, env: %[2]q, metric: p95(total_response_time), window: 5m, threshold: 250, for: 1m}
  - {id: silence, name: No calls, org: %[1]q, env: %[2]q, kind: absence, window: 2m}
`

// StartDemoAlerts evaluates the demo's rules (org, env) every 5 s until in
// closes.
func StartDemoAlerts(ctx context.Context, in *Instance, f Config, org, env string) error {
	path := filepath.Join(f.Data, "alerts.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(demoAlerts, org, env)), 0o600); err != nil {
		return err
	}
	stop, err := startAlerts(ctx, in, AlertsConfig{AlertsConfig: path, AlertsInterval: 5 * time.Second}, f, "")
	if err != nil {
		return err
	}
	prev := in.beforeClose
	in.beforeClose = func() error {
		stop()
		if prev != nil {
			return prev()
		}
		return nil
	}
	return nil
}
