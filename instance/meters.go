package instance

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/duckdb"
)

// MeterConfig configures usage metering (docs/metering.md).
type MeterConfig struct {
	Meters string `type:"existingfile" env:"APIMETER_METERS" placeholder:"FILE" help:"Meters file (JSON, docs/metering.md): meters per org and env written to the store at start, replacing those of the same slug."`
	// BillingSecretFile holds the secret each org's statement signing key
	// is derived from (billing.Config.Secret).
	BillingSecretFile string `type:"existingfile" env:"APIMETER_BILLING_SECRET_FILE" placeholder:"FILE" help:"File holding the secret (at least 32 bytes) from which each org's Ed25519 key signing billing statements is derived; without it, statements are not offered (docs/metering.md)."`
}

// openMeters opens the usage events and meters of st, writes the meters of
// the meters file, and serves OpenMeter's API (/api/v1/...) on srv. The
// Metering it returns is what the customer portal shows of them.
func openMeters(ctx context.Context, st eventStore, srv *server.Server, authz server.Authorizer, reg *apps.Registry, f Config, log *slog.Logger) (meter.Store, *portal.Metering, error) {
	var ms meter.Store
	var d meter.Dialect
	switch s := st.(type) {
	case *duckdb.Store:
		u, err := s.OpenUsage(ctx, duckdb.UsageOptions{DedupeHorizon: f.DedupeHorizon})
		if err != nil {
			return nil, nil, err
		}
		ms, d = u, meter.DuckDB{}
	case *clickhouse.Store:
		u, err := s.OpenUsage(ctx, clickhouse.UsageOptions{DedupeHorizon: f.DedupeHorizon})
		if err != nil {
			return nil, nil, &StoreError{Store: f.StoreConfig.String(), Err: err}
		}
		ms, d = u, meter.ClickHouse{}
	default:
		return nil, nil, fmt.Errorf("usage metering: no usage tables for a %T store", st)
	}
	if f.Meters != "" {
		list, err := meter.LoadConfig(f.Meters)
		if err != nil {
			ms.Close()
			return nil, nil, fmt.Errorf("--meters: %w", err)
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		for _, m := range list {
			m.CreatedAt = now // when the file was last read
			if err := ms.PutMeter(ctx, m); err != nil {
				ms.Close()
				return nil, nil, fmt.Errorf("--meters: %w", err)
			}
		}
		log.Info("meters loaded", "file", f.Meters, "meters", len(list))
	}
	meter.NewHandler(meter.Config{
		Store: ms, Dialect: d, Auth: authz, Apps: reg, Logger: log,
		MaxBodyBytes: f.MaxBodyBytes,
		Limits:       meter.Limits{MaxEvents: f.MaxBatchEvents, MaxDataBytes: f.MaxMetadataBytes},
	}).Register(srv)
	var secret []byte
	if f.BillingSecretFile != "" {
		b, err := os.ReadFile(f.BillingSecretFile)
		if err != nil || len(bytes.TrimSpace(b)) < 32 {
			ms.Close()
			return nil, nil, fmt.Errorf("--billing-secret-file %s: want a file of at least 32 bytes of secret (%v)", f.BillingSecretFile, err)
		}
		secret = bytes.TrimSpace(b)
	}
	b := billing.New(billing.Config{Usage: ms, Dialect: d, Profiles: st, Secret: secret})
	billing.NewHandler(b, log).Register(srv)
	mt := &portal.Metering{Usage: ms, Dialect: d}
	if secret != nil {
		mt.Biller = b // else the portal has no statements page
	}
	return ms, mt, nil
}
