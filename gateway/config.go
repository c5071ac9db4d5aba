package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/apimeter/apimeter/identity"
)

// Config is a gateway's configuration, read from YAML by ParseConfig (the
// field names in docs/gateway.md are the YAML keys). The zero value of every
// field but Upstreams is a working default.
type Config struct {
	// Listen is the address the gateway serves on.
	Listen string `yaml:"listen"`
	// Org, Env and AppID are the defaults of the upstreams that do not set
	// their own.
	Org   string `yaml:"org"`
	Env   string `yaml:"env"`
	AppID string `yaml:"app_id"`

	Upstreams []Upstream `yaml:"upstreams"`
	Quotas    []Quota    `yaml:"quotas"`
	Timeouts  Timeouts   `yaml:"timeouts"`

	// LogBody captures request and response bodies, cut at MaxBodyBytes.
	// Nil means true: a gateway is usually put in front of an API to see
	// its traffic.
	LogBody      *bool `yaml:"log_body"`
	MaxBodyBytes int   `yaml:"max_body_bytes"`
	// SampleRate is the share of calls recorded, in (0, 1]; each recorded
	// event counts round(1/SampleRate) calls. Zero means 1. Quotas count
	// every call whatever the rate.
	SampleRate float64 `yaml:"sample_rate"`
	// QueueSize bounds the events waiting to be sent, per upstream; beyond
	// it they are dropped and counted. Zero means capture's default.
	QueueSize int `yaml:"queue_size"`
	// SecretHeaders and SecretParams are scrubbed besides the defaults.
	SecretHeaders []string `yaml:"secret_headers"`
	SecretParams  []string `yaml:"secret_params"`

	// TrustForwarded keeps the X-Forwarded-For chain, -Proto and -Host
	// that a client sent, and takes the client's address from it: only
	// behind a load balancer you run.
	TrustForwarded bool `yaml:"trust_forwarded"`

	// JWTSecrets verify HS256/384/512 bearer tokens before their user claim
	// identifies a caller (for quotas and events). Empty means tokens are
	// decoded without verifying, as the collector does without keys.
	JWTSecrets []string `yaml:"jwt_secrets"`
	// JWTClaim is the claim holding the user id. Empty means "sub".
	JWTClaim string `yaml:"jwt_claim"`
	// CompanyRules find the company of a call, as the collector's
	// --company-rule does: url:/accounts/{id}, header:X-Company-Id,
	// claim:tenant_id.
	CompanyRules []string `yaml:"company_rules"`

	// BillingDay and BillingTZ define billing periods for quotas "per:
	// billing_period" and the day boundary of "per: day", as the server's
	// --billing-day and --billing-tz do.
	BillingDay int    `yaml:"billing_day"`
	BillingTZ  string `yaml:"billing_tz"`

	// DisableTransactionID leaves the X-Moesif-Transaction-Id response
	// header out (see capture.Options).
	DisableTransactionID bool `yaml:"disable_transaction_id"`
}

// Upstream is one API behind the gateway.
type Upstream struct {
	// Name is the API's name: the Metrics API's apiproxy dimension.
	Name string `yaml:"name"`
	// URL is where calls are forwarded: scheme, host and an optional base
	// path.
	URL string `yaml:"url"`
	// Host, when set, routes only calls whose Host header is this name
	// (port ignored, case ignored). Empty matches any host.
	Host string `yaml:"host"`
	// PathPrefix, when set, routes only calls whose path is the prefix or
	// starts with prefix + "/". Empty matches every path.
	PathPrefix string `yaml:"path_prefix"`
	// StripPrefix removes PathPrefix from the path forwarded upstream.
	StripPrefix bool `yaml:"strip_prefix"`
	// PreserveHost forwards the client's Host header instead of the
	// upstream's.
	PreserveHost bool `yaml:"preserve_host"`
	// Routes are route templates on the path the client sent, in
	// net/http.ServeMux syntax ("/accounts/{id}/message", "GET
	// /orders/{id}", "/files/{path...}"): a call's route is the template
	// that matches it, for route and request grouping.
	Routes []string `yaml:"routes"`
	// Org and Env are the org and environment of the events in the
	// embedded store; AppID is the application id they are sent with to a
	// collector (which decides org and env). Empty means Config's.
	Org   string `yaml:"org"`
	Env   string `yaml:"env"`
	AppID string `yaml:"app_id"`
}

// Timeouts bound both sides of the gateway. Zero means the default in
// parentheses; a negative value means none.
type Timeouts struct {
	// ReadHeader bounds reading a client's request header (10 s).
	ReadHeader Duration `yaml:"read_header"`
	// Read bounds reading a client's whole request, body included (none:
	// uploads and streams may be long).
	Read Duration `yaml:"read"`
	// Write bounds writing a response (none: streams may be long).
	Write Duration `yaml:"write"`
	// Idle bounds a client's keep-alive connection between requests (2 min).
	Idle Duration `yaml:"idle"`
	// Dial bounds connecting to an upstream (5 s): then 502, or 504 when
	// the connection attempt timed out.
	Dial Duration `yaml:"dial"`
	// Upstream bounds the wait for an upstream's response header after the
	// request was sent (30 s): then 504.
	Upstream Duration `yaml:"upstream"`
	// UpstreamIdle bounds an idle connection kept to an upstream (90 s).
	UpstreamIdle Duration `yaml:"upstream_idle"`
	// Quota bounds a quota check on a shared counter store (Redis), 50 ms:
	// past it the call is forwarded unchecked, and after 5 such failures
	// in a row the checks are skipped for 5 s before one is tried again.
	Quota Duration `yaml:"quota"`
}

// Duration is a time.Duration written in YAML as "30s", "2m", "1h30m".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s, 2m or 1h", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d Duration) or(def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return time.Duration(d)
}

// Quota limits the calls of one user, company or API key in a window; a
// call over it is answered 429 and not forwarded.
type Quota struct {
	// Name identifies the quota in errors, events (metadata.blocked_by)
	// and counter keys.
	Name string `yaml:"name"`
	// By is what is counted: user, company or api_key. A call without one
	// (no token, no key) is not counted by this quota.
	By string `yaml:"by"`
	// Per is the window: minute, hour, day or billing_period (alias
	// month). Windows are fixed: a minute starts at :00, a day at midnight
	// and a billing period on the billing day, in the billing time zone.
	Per string `yaml:"per"`
	// Limit is the calls allowed per window.
	Limit int64 `yaml:"limit"`
	// APIs restricts the quota to these upstream names. Empty means all.
	APIs []string `yaml:"apis"`
	// Overrides give some subjects their own limit: user or company id, or
	// the API key's fingerprint (fp_..., as api_key_id shows it).
	Overrides map[string]int64 `yaml:"overrides"`
}

// Quota subjects and windows.
const (
	ByUser    = "user"
	ByCompany = "company"
	ByAPIKey  = "api_key"

	PerMinute        = "minute"
	PerHour          = "hour"
	PerDay           = "day"
	PerBillingPeriod = "billing_period"
)

// LoadConfig reads and checks a YAML configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("gateway config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("gateway config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a YAML configuration and checks it; unknown keys are
// errors, so that a misspelt option is not silently ignored.
func ParseConfig(b []byte) (cfg Config, err error) {
	if len(bytes.TrimSpace(b)) > 0 {
		if err := unmarshalYAML(b, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Check(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// unmarshalYAML decodes strictly. go-yaml v1.19.2 panics on some
// malformed documents (FuzzParseConfig found one, kept in testdata/fuzz):
// that becomes an error rather than a crash.
func unmarshalYAML(b []byte, cfg *Config) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("malformed YAML (the parser failed: %v)", v)
		}
	}()
	if err := yaml.UnmarshalWithOptions(b, cfg, yaml.DisallowUnknownField(), yaml.Strict()); err != nil {
		return errors.New(yaml.FormatError(err, false, true))
	}
	return nil
}

// Check reports the first thing wrong with cfg, naming the field.
func (cfg *Config) Check() error {
	if len(cfg.Upstreams) == 0 {
		return errors.New("upstreams: at least one upstream is required")
	}
	names := map[string]bool{}
	routes := map[string]int{}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		at := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			return fmt.Errorf("%s.name: required (the API name, Apigee's apiproxy)", at)
		}
		if names[u.Name] {
			return fmt.Errorf("%s.name: %q is used twice", at, u.Name)
		}
		names[u.Name] = true
		t, err := url.Parse(u.URL)
		if err != nil || (t.Scheme != "http" && t.Scheme != "https") || t.Host == "" {
			return fmt.Errorf("%s.url: %q is not an http:// or https:// URL with a host", at, u.URL)
		}
		if t.RawQuery != "" || t.Fragment != "" {
			return fmt.Errorf("%s.url: %q may not have a query or fragment", at, u.URL)
		}
		if u.PathPrefix != "" && !strings.HasPrefix(u.PathPrefix, "/") {
			return fmt.Errorf("%s.path_prefix: %q must start with /", at, u.PathPrefix)
		}
		u.PathPrefix = strings.TrimRight(u.PathPrefix, "/")
		if u.StripPrefix && u.PathPrefix == "" {
			return fmt.Errorf("%s.strip_prefix: needs a path_prefix", at)
		}
		if strings.ContainsAny(u.Host, "/ ") {
			return fmt.Errorf("%s.host: %q is not a host name", at, u.Host)
		}
		key := strings.ToLower(u.Host) + " " + u.PathPrefix
		if j, dup := routes[key]; dup {
			return fmt.Errorf("%s: host %q and path_prefix %q are already upstreams[%d]'s", at, u.Host, u.PathPrefix, j)
		}
		routes[key] = i
		if _, err := newRouteMux(u.Routes); err != nil {
			return fmt.Errorf("%s.routes: %w", at, err)
		}
		if u.Org == "" {
			u.Org = cfg.Org
		}
		if u.Env == "" {
			u.Env = cfg.Env
		}
		if u.AppID == "" {
			u.AppID = cfg.AppID
		}
	}
	qnames := map[string]bool{}
	for i := range cfg.Quotas {
		q := &cfg.Quotas[i]
		at := fmt.Sprintf("quotas[%d]", i)
		if q.Name == "" {
			return fmt.Errorf("%s.name: required", at)
		}
		if strings.ContainsAny(q.Name, ":{} ") {
			return fmt.Errorf("%s.name: %q may not contain spaces, ':' or braces", at, q.Name)
		}
		if qnames[q.Name] {
			return fmt.Errorf("%s.name: %q is used twice", at, q.Name)
		}
		qnames[q.Name] = true
		switch q.By {
		case ByUser, ByCompany, ByAPIKey:
		default:
			return fmt.Errorf("%s.by: %q is not user, company or api_key", at, q.By)
		}
		switch q.Per {
		case PerMinute, PerHour, PerDay, PerBillingPeriod:
		case "month":
			q.Per = PerBillingPeriod
		default:
			return fmt.Errorf("%s.per: %q is not minute, hour, day or billing_period", at, q.Per)
		}
		if q.Limit < 0 {
			return fmt.Errorf("%s.limit: %d is negative", at, q.Limit)
		}
		for id, n := range q.Overrides {
			if n < 0 {
				return fmt.Errorf("%s.overrides[%q]: %d is negative", at, id, n)
			}
		}
		for _, api := range q.APIs {
			if !names[api] {
				return fmt.Errorf("%s.apis: %q names no upstream", at, api)
			}
		}
	}
	for i, r := range cfg.CompanyRules {
		if _, err := identity.ParseCompanyRule(r); err != nil {
			return fmt.Errorf("company_rules[%d]: %w", i, err)
		}
	}
	if cfg.MaxBodyBytes < 0 {
		return fmt.Errorf("max_body_bytes: %d is negative", cfg.MaxBodyBytes)
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 || cfg.SampleRate != cfg.SampleRate {
		return fmt.Errorf("sample_rate: %v is not in (0, 1]", cfg.SampleRate)
	}
	if cfg.QueueSize < 0 {
		return fmt.Errorf("queue_size: %d is negative", cfg.QueueSize)
	}
	if cfg.BillingDay < 0 || cfg.BillingDay > 31 {
		return fmt.Errorf("billing_day: %d is not 1 to 31", cfg.BillingDay)
	}
	if cfg.BillingTZ != "" {
		if _, err := time.LoadLocation(cfg.BillingTZ); err != nil {
			return fmt.Errorf("billing_tz: %w", err)
		}
	}
	return nil
}

// routeMux finds the route template of a call.
type routeMux struct{ mux *http.ServeMux }

// newRouteMux checks and registers templates; ServeMux panics on a bad or
// conflicting pattern, which becomes an error naming it.
func newRouteMux(templates []string) (rm *routeMux, err error) {
	if len(templates) == 0 {
		return nil, nil
	}
	mux := http.NewServeMux()
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, t := range templates {
		func() {
			defer func() {
				if v := recover(); v != nil {
					err = fmt.Errorf("%q: %v", t, v)
				}
			}()
			if t == "" || !strings.Contains(t, "/") {
				panic("a template is a path such as /accounts/{id}/message, optionally after a method")
			}
			mux.Handle(t, noop)
		}()
		if err != nil {
			return nil, err
		}
	}
	return &routeMux{mux: mux}, nil
}

// route returns the template that matches r, without its method and host,
// or "".
func (m *routeMux) route(r *http.Request) string {
	if m == nil {
		return ""
	}
	_, pattern := m.mux.Handler(r)
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}
