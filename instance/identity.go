package instance

import (
	"context"
	"crypto"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
)

// IdentityConfig configure who a call is attributed to and where the alias
// table and usage counters live. The zero value is usable (tests build
// Config by hand).
type IdentityConfig struct {
	Redis        string        `env:"APIMETER_REDIS" placeholder:"URL" help:"Redis URL (redis://host:6379/0) holding the alias table and usage counters, shared by several collectors. Empty keeps them embedded."`
	RedisPrefix  string        `default:"apimeter:" env:"APIMETER_REDIS_PREFIX" help:"Prefix of every Redis key apimeter writes."`
	RedisTimeout time.Duration `default:"250ms" env:"APIMETER_REDIS_TIMEOUT" help:"Deadline of the alias lookups and usage updates of a batch on Redis; past it the batch gets 503, and after 5 failures in a row Redis is left alone for 5 s."`
	UsageRebuild bool          `env:"APIMETER_USAGE_REBUILD" help:"With --redis: overwrite the Redis counters with figures rebuilt from this collector's events table at start-up (one-collector deployments, or repair)."`
	ClaimsConfig
	ClientIDHeader []string `name:"client-id-header" env:"APIMETER_CLIENT_ID_HEADERS" help:"Request headers holding a client id to look up in the alias table (repeatable)."`
	BillingDay     int      `default:"1" env:"APIMETER_BILLING_DAY" help:"Day of the month billing periods start on (1-31; short months start on their last day)."`
	BillingTZ      string   `name:"billing-tz" default:"UTC" env:"APIMETER_BILLING_TZ" help:"Time zone of billing periods (IANA name, e.g. Europe/Berlin)."`
}

// identitySetup is the identity part of a running server.
type identitySetup struct {
	Identifier apimeter.Identifier
	Sinks      []apimeter.Sink
	API        *identity.API
	// Redis is the shared client when the alias table and counters are on
	// Redis, nil when embedded.
	Redis redis.UniversalClient
	close func() error
}

func (s *identitySetup) Close() error {
	if s == nil || s.close == nil {
		return nil
	}
	return s.close()
}

// setupIdentity builds who a call is attributed to, and the alias table
// and usage counters: in db beside the events when the store is embedded,
// on Redis with --redis (required when the store is shared). db is also
// what --usage-rebuild reads.
func setupIdentity(ctx context.Context, f IdentityConfig, db *sql.DB, eng engine, log *slog.Logger) (*identitySetup, error) {
	ps := identity.Periods{AnchorDay: f.BillingDay}
	if f.BillingDay < 0 || f.BillingDay > 31 {
		return nil, fmt.Errorf("--billing-day %d: want 1 to 31", f.BillingDay)
	}
	if f.BillingTZ != "" && f.BillingTZ != "UTC" {
		loc, err := time.LoadLocation(f.BillingTZ)
		if err != nil {
			return nil, fmt.Errorf("--billing-tz: %w", err)
		}
		ps.Location = loc
	}
	jo, err := f.jwtOptions()
	if err != nil {
		return nil, err
	}
	rules, err := f.companyRules()
	if err != nil {
		return nil, err
	}

	setup := &identitySetup{}
	var aliases identity.Aliases
	var counters identity.Counters
	if f.Redis == "" {
		if eng.Shared {
			return nil, errors.New("a store shared by several processes needs --redis for the alias table and usage counters")
		}
		emb, err := identity.OpenEmbedded(ctx, db, identity.EmbeddedOptions{Periods: ps})
		if err != nil {
			return nil, err
		}
		aliases, counters = emb, emb
	} else {
		opt, err := redis.ParseURL(f.Redis)
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		opt.ContextTimeoutEnabled = true // the deadlines below cut socket reads
		rc := redis.NewClient(opt)
		if err := rc.Ping(ctx).Err(); err != nil {
			rc.Close()
			return nil, fmt.Errorf("--redis %s: %w", opt.Addr, err)
		}
		r := identity.NewRedis(rc, identity.RedisOptions{Prefix: f.RedisPrefix, Timeout: f.RedisTimeout, Logger: log})
		if f.UsageRebuild {
			counts, err := eng.RebuildUsage(ctx, db, ps)
			if err == nil {
				err = r.ReplaceUsage(ctx, counts)
			}
			if err != nil {
				rc.Close()
				return nil, err
			}
		}
		aliases, counters, setup.close, setup.Redis = r, r, rc.Close, rc
	}
	jwtr := identity.NewJWT(jo)
	meter := &identity.Meter{Counters: counters, Periods: ps}
	setup.Identifier = identity.NewResolver(identity.Config{Aliases: aliases, JWT: jwtr, Company: rules, ClientIDHeaders: f.ClientIDHeader})
	setup.Sinks = []apimeter.Sink{meter}
	setup.API = &identity.API{Aliases: aliases, Meter: meter, Logger: log}
	backend := "embedded"
	if f.Redis != "" {
		backend = "redis"
	}
	log.Info("identity", "backend", backend, "jwt_verify", jwtr.Verifies(), "company_rules", len(rules), "billing_day", max(1, f.BillingDay), "billing_tz", f.BillingTZ)
	return setup, nil
}

// ClaimsConfig are the rules that read a call's bearer JWT and find its
// company: the collector applies them to the events it receives, and
// apimeter gateway (and serve's --gateway-config) to each call before its
// token leaves the process as a fingerprint, so that claim: rules work for
// proxied traffic too (docs/api.md#where-identity-is-resolved).
type ClaimsConfig struct {
	JWTClaim     string        `name:"jwt-claim" default:"sub" env:"APIMETER_JWT_CLAIM" help:"JWT claim holding the user id."`
	JWTSecret    []string      `name:"jwt-secret" env:"APIMETER_JWT_SECRETS" help:"HS256/384/512 secret that verifies bearer JWTs (repeatable). With any JWT key set, unverifiable tokens identify no one."`
	JWTPublicKey []string      `name:"jwt-public-key" type:"existingfile" env:"APIMETER_JWT_PUBLIC_KEYS" help:"PEM file of an RSA, EC or Ed25519 public key that verifies bearer JWTs (repeatable)."`
	JWTJWKS      string        `name:"jwt-jwks" type:"existingfile" env:"APIMETER_JWT_JWKS" help:"JWKS file (RFC 7517) of keys that verify bearer JWTs, picked by kid."`
	JWTLeeway    time.Duration `name:"jwt-leeway" default:"1m" env:"APIMETER_JWT_LEEWAY" help:"Leeway on a verified JWT's exp and nbf, checked at the call's time."`
	CompanyRule  []string      `env:"APIMETER_COMPANY_RULES" help:"Where the company id comes from when the sender and the alias table do not say, tried in order: url:/accounts/{id}, header:X-Company-Id, claim:tenant_id (repeatable)."`
}

// Edge builds the rules of f for the edge (gateway, capture middleware).
func (f ClaimsConfig) Edge() (*identity.Edge, error) {
	jo, err := f.jwtOptions()
	if err != nil {
		return nil, err
	}
	rules, err := f.companyRules()
	if err != nil {
		return nil, err
	}
	return &identity.Edge{JWT: identity.NewJWT(jo), Company: rules}, nil
}

func (f ClaimsConfig) companyRules() ([]identity.CompanyRule, error) {
	var rules []identity.CompanyRule
	for _, s := range f.CompanyRule {
		r, err := identity.ParseCompanyRule(s)
		if err != nil {
			return nil, fmt.Errorf("--company-rule: %w", err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// jwtOptions reads the keys that verify bearer JWTs.
func (f ClaimsConfig) jwtOptions() (identity.JWTOptions, error) {
	jo := identity.JWTOptions{UserClaim: f.JWTClaim, Leeway: f.JWTLeeway}
	for _, s := range f.JWTSecret {
		jo.HMACSecrets = append(jo.HMACSecrets, []byte(s))
	}
	for _, path := range f.JWTPublicKey {
		b, err := os.ReadFile(path)
		if err != nil {
			return jo, fmt.Errorf("--jwt-public-key: %w", err)
		}
		k, err := identity.ParsePublicKeyPEM(b)
		if err != nil {
			return jo, fmt.Errorf("--jwt-public-key %s: %w", path, err)
		}
		jo.PublicKeys = append(jo.PublicKeys, crypto.PublicKey(k))
	}
	if f.JWTJWKS != "" {
		b, err := os.ReadFile(f.JWTJWKS)
		if err != nil {
			return jo, fmt.Errorf("--jwt-jwks: %w", err)
		}
		jwks, err := identity.ParseJWKS(b)
		if err != nil {
			return jo, fmt.Errorf("--jwt-jwks %s: %w", f.JWTJWKS, err)
		}
		jo.JWKS = jwks
	}
	return jo, nil
}
