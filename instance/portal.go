package instance

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/server"
)

// PortalConfig configures the customer portal (docs/portal.md).
type PortalConfig struct {
	PortalFrameOrigin []string `name:"portal-frame-origin" env:"APIMETER_PORTAL_FRAME_ORIGINS" placeholder:"ORG=ORIGIN[,ORIGIN]" help:"Origins whose pages may show an org's customer portal in an iframe (repeatable), e.g. acme=https://www.acme.example. Without one the portal of that org may not be framed."`
	PortalQuotas      string   `name:"portal-quotas" type:"existingfile" env:"APIMETER_PORTAL_QUOTAS" placeholder:"FILE" help:"Gateway configuration (YAML) whose quotas the portal shows, read from the gateways' counters on --redis (for gateways that run apart from this server; serve --gateway-config needs nothing more)."`
	PortalRate        int      `name:"portal-rate" default:"240" env:"APIMETER_PORTAL_RATE" help:"Portal API calls allowed per token per minute (negative: no bound)."`
}

// wirePortal serves the customer portal: its tokens live in the catalog
// (data directory or the shared store), its figures come from the store,
// its meters and statements from mt.
func wirePortal(srv *server.Server, st eventStore, eng engine, cat *catalog, idn *identitySetup, mt *portal.Metering, f PortalConfig, redisPrefix string, log *slog.Logger) (*portal.Handler, error) {
	origins, err := portal.ParseFrameOrigins(f.PortalFrameOrigin)
	if err != nil {
		return nil, fmt.Errorf("--portal-frame-origin %w", err)
	}
	cfg := portal.Config{
		Tokens: cat.Tokens, DB: st.DB(), Dialect: eng.Dialect, Events: st,
		Periods: idn.API.Meter.Periods, FrameOrigins: origins, RatePerMinute: f.PortalRate, Logger: log,
	}
	if mt != nil {
		cfg.Meters = mt
		if mt.Biller != nil {
			cfg.Statements = mt
		}
	}
	if f.PortalQuotas != "" {
		if idn.Redis == nil {
			return nil, errors.New("--portal-quotas reads the gateways' quota counters on Redis: give --redis, the one the gateways use")
		}
		gc, err := gateway.LoadConfig(f.PortalQuotas)
		if err != nil {
			return nil, fmt.Errorf("--portal-quotas: %w", err)
		}
		// The gateways' keys are under the prefix this server's are.
		qs, err := gateway.NewQuotaState(gc, gateway.NewRedisCounter(idn.Redis, redisPrefix))
		if err != nil {
			return nil, fmt.Errorf("--portal-quotas: %w", err)
		}
		cfg.Quotas = qs
	}
	h := portal.New(cfg)
	h.Register(srv)
	return h, nil
}
