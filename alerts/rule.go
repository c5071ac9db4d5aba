package alerts

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/stats"
)

// Kinds of rule.
const (
	// KindThreshold compares a metric over a trailing window with a
	// threshold.
	KindThreshold = "threshold"
	// KindAbsence holds while no call at all arrives in the window.
	KindAbsence = "absence"
	// KindQuota compares a customer's calls in the current quota window
	// (the billing period, or the gateway quota's window) with a
	// percentage of its limit.
	KindQuota = "quota"
)

// Conditions of a threshold rule.
const (
	Above = "above"
	Below = "below"
)

// Per-customer splits: one alert instance per user, company or API key.
const (
	PerUser    = "user"
	PerCompany = "company"
	PerAPIKey  = "api_key"
	// PerSubject is one instance per subject of a meter (meter rules
	// only): the customer a usage event or an API call is counted for.
	PerSubject = "subject"
)

// ErrorRate is the metric sum(is_error) / sum(message_count), a share
// from 0 to 1.
const ErrorRate = "error_rate"

// Rule is one alert rule. The JSON of the API and the YAML of the config
// file use the same field names (docs/alerts.md).
type Rule struct {
	// ID names the rule within its org and env: letters, digits, '-', '_'
	// and '.', up to 64.
	ID   string `json:"id" yaml:"id"`
	Org  string `json:"org" yaml:"org"`
	Env  string `json:"env" yaml:"env"`
	Name string `json:"name,omitempty" yaml:"name"`
	// Kind is threshold (the default), absence or quota.
	Kind string `json:"kind,omitempty" yaml:"kind"`
	// Metric is a Metrics API selection (sum(message_count),
	// sum(is_error), p95(total_response_time), avg(response_size), ...) or
	// error_rate.
	Metric string `json:"metric,omitempty" yaml:"metric"`
	// Meter names a meter whose value is compared instead of a metric;
	// it needs a MeterSource (Config.Meters).
	Meter string `json:"meter,omitempty" yaml:"meter"`
	// Window is the trailing time the metric covers (threshold, absence).
	Window Duration `json:"window,omitempty" yaml:"window"`
	// Filter is a Metrics API filter (filter=), ANDed with the fields
	// below.
	Filter  string `json:"filter,omitempty" yaml:"filter"`
	API     string `json:"api,omitempty" yaml:"api"`
	Route   string `json:"route,omitempty" yaml:"route"`
	Status  *int   `json:"status,omitempty" yaml:"status"`
	User    string `json:"user,omitempty" yaml:"user"`
	Company string `json:"company,omitempty" yaml:"company"`
	Key     string `json:"key,omitempty" yaml:"key"`
	// Per splits the rule into one instance per user, company or api_key
	// ("" for one instance over all calls).
	Per string `json:"per,omitempty" yaml:"per"`
	// Op is above (the default) or below; the condition holds when the
	// value is strictly above or below Threshold.
	Op        string  `json:"op,omitempty" yaml:"op"`
	Threshold float64 `json:"threshold" yaml:"threshold"`
	// For is how long the condition must hold before the rule fires.
	For Duration `json:"for,omitempty" yaml:"for"`
	// MinVolume is the calls an instance needs in the window for its
	// condition to hold at all.
	MinVolume int64 `json:"min_volume,omitempty" yaml:"min_volume"`
	// Quota rules: the limit is Limit, or the gateway quota named Quota
	// (its limit, or its override for the customer); the rule fires when
	// the customer's calls reach Percent of it.
	Limit   int64   `json:"limit,omitempty" yaml:"limit"`
	Quota   string  `json:"quota,omitempty" yaml:"quota"`
	Percent float64 `json:"percent,omitempty" yaml:"percent"`
	// Channels are where notifications go.
	Channels []Channel `json:"channels" yaml:"channels"`
	Disabled bool      `json:"disabled,omitempty" yaml:"disabled"`

	// Source is "api" or "file" (set by apimeter, not by the sender).
	Source string `json:"source,omitempty" yaml:"-"`
	// Updated is when the rule was last written (set by apimeter).
	Updated time.Time `json:"updated,omitzero" yaml:"-"`
}

// Channel is one destination of notifications.
type Channel struct {
	// Type is webhook (a signed JSON POST) or slack (an incoming webhook).
	Type string `json:"type" yaml:"type"`
	URL  string `json:"url" yaml:"url"`
	// Secret signs webhook bodies (HMAC-SHA256); required for webhooks.
	Secret string `json:"secret,omitempty" yaml:"secret"`
}

// Channel types.
const (
	Webhook = "webhook"
	Slack   = "slack"
)

// Duration is a time.Duration written as "30s", "5m", "1h30m".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s, 5m or 1h", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// FieldError is a rule that does not hold together; Field names the JSON
// field at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Limits of a rule.
const (
	MinWindow = time.Second
	MaxWindow = 31 * 24 * time.Hour
	MaxFor    = 7 * 24 * time.Hour
	// MaxInstances bounds the customers one rule reads per tick: with more
	// customers than this, the ones furthest over the threshold are kept.
	MaxInstances = stats.DefaultLimit
	maxChannels  = 10
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// compiled is a rule checked and turned into a query plan. The plan's
// time range is set on each evaluation.
type compiled struct {
	Rule
	plan *stats.Plan
	// value and volume are the indexes of the metric and of
	// sum(message_count) in the plan's selections; ratio says the value
	// is selection value / selection volume (error_rate).
	value, volume int
	ratio         bool
	// additive metrics are 0, not unknown, for a customer without calls.
	additive bool
	// meter rules read a MeterSource instead of the plan (nil).
	meter bool
	// filter is the plan's filter text; dims its dimension.
	filter, dims string
}

// Check normalizes r (defaults filled in) and reports the first thing
// wrong with it as a *FieldError.
func (r *Rule) Check() error {
	_, err := r.compile()
	return err
}

// filterText is the rule's Metrics API filter: Filter and the structured
// fields, ANDed.
func (r *Rule) filterText() string {
	var parts []string
	add := func(dim, v string) {
		if v != "" {
			parts = append(parts, dim+" eq '"+strings.ReplaceAll(v, "'", "''")+"'")
		}
	}
	add("apiproxy", r.API)
	add("route", r.Route)
	add("user_id", r.User)
	add("company_id", r.Company)
	add("api_key", r.Key)
	if r.Status != nil {
		parts = append(parts, "response_status_code eq "+strconv.Itoa(*r.Status))
	}
	if strings.TrimSpace(r.Filter) != "" {
		parts = append(parts, "("+r.Filter+")")
	}
	return strings.Join(parts, " and ")
}

// callFilterField names the first call filter r sets, or "".
func (r *Rule) callFilterField() string {
	switch {
	case strings.TrimSpace(r.Filter) != "":
		return "filter"
	case r.API != "":
		return "api"
	case r.Route != "":
		return "route"
	case r.Status != nil:
		return "status"
	case r.User != "":
		return "user"
	case r.Company != "":
		return "company"
	case r.Key != "":
		return "key"
	}
	return ""
}

func (r *Rule) compile() (*compiled, error) { return r.compileWith("") }

// compileWith compiles r with an extra filter ANDed (a gateway quota's
// APIs).
func (r *Rule) compileWith(extra string) (*compiled, error) {
	if !idRE.MatchString(r.ID) {
		return nil, fieldErr("id", "%q: want 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit", r.ID)
	}
	if r.Org == "" {
		return nil, fieldErr("org", "required")
	}
	if r.Env == "" {
		return nil, fieldErr("env", "required")
	}
	if r.Kind == "" {
		r.Kind = KindThreshold
	}
	if r.Op == "" {
		r.Op = Above
	}
	if r.Op != Above && r.Op != Below {
		return nil, fieldErr("op", "%q is not above or below", r.Op)
	}
	switch {
	case r.Meter != "":
		if r.Per != "" && r.Per != PerSubject {
			return nil, fieldErr("per", "%q: a meter rule is per subject (the meter's customer) or empty for the meter's total", r.Per)
		}
	case r.Per == PerSubject:
		return nil, fieldErr("per", "subject splits meter rules only; calls split by user, company or api_key")
	case r.Per != "" && r.Per != PerUser && r.Per != PerCompany && r.Per != PerAPIKey:
		return nil, fieldErr("per", "%q is not user, company or api_key (or empty for all calls)", r.Per)
	}
	if r.MinVolume < 0 {
		return nil, fieldErr("min_volume", "must not be negative")
	}
	if r.For.D() < 0 || r.For.D() > MaxFor {
		return nil, fieldErr("for", "%s is not from 0 to %s", r.For.D(), MaxFor)
	}
	if r.Meter != "" && r.Kind != KindThreshold {
		return nil, fieldErr("meter", "a %s rule counts calls; meters are compared by threshold rules", r.Kind)
	}
	c := &compiled{Rule: *r}
	var sel []string
	switch r.Kind {
	case KindThreshold:
		if r.Meter != "" {
			if r.Metric != "" {
				return nil, fieldErr("meter", "give either metric or meter")
			}
			if r.MinVolume != 0 {
				return nil, fieldErr("min_volume", "a meter rule has no call volume; leave min_volume out")
			}
			if f := r.callFilterField(); f != "" {
				return nil, fieldErr(f, "a meter rule reads the meter's events, which call filters do not select; leave %s out", f)
			}
			c.meter = true
			break
		}
		if r.Metric == "" {
			return nil, fieldErr("metric", "required, e.g. sum(is_error), error_rate or p95(total_response_time)")
		}
		if r.Metric == ErrorRate {
			sel = []string{"sum(is_error)", "sum(message_count)"}
			c.value, c.volume, c.ratio = 0, 1, true
		} else {
			sel = []string{r.Metric, "sum(message_count)"}
			c.value, c.volume = 0, 1
		}
	case KindAbsence:
		if r.Metric != "" && r.Metric != "sum(message_count)" {
			return nil, fieldErr("metric", "an absence rule counts calls; leave metric out")
		}
		if r.Per != "" {
			return nil, fieldErr("per", "absence rules watch all the calls their filter selects; to watch one customer, set user or company")
		}
		sel = []string{"sum(message_count)"}
		c.additive = true
	case KindQuota:
		if r.Per == "" {
			return nil, fieldErr("per", "a quota rule needs per: user, company or api_key")
		}
		if (r.Limit > 0) == (r.Quota != "") {
			return nil, fieldErr("limit", "give either limit (calls per billing period) or quota (a gateway quota's name)")
		}
		if r.Limit < 0 {
			return nil, fieldErr("limit", "must be positive")
		}
		if r.Percent <= 0 || r.Percent > 1000 {
			return nil, fieldErr("percent", "%v is not from 0 (exclusive) to 1000", r.Percent)
		}
		if r.Metric != "" && r.Metric != "sum(message_count)" {
			return nil, fieldErr("metric", "a quota rule counts calls; leave metric out")
		}
		sel = []string{"sum(message_count)"}
		c.additive = true
	default:
		return nil, fieldErr("kind", "%q is not threshold, absence or quota", r.Kind)
	}
	if r.Kind != KindQuota {
		if r.Limit != 0 || r.Quota != "" || r.Percent != 0 {
			return nil, fieldErr("limit", "limit, quota and percent belong to quota rules")
		}
		w := r.Window.D()
		if w < MinWindow || w > MaxWindow {
			return nil, fieldErr("window", "%s is not from %s to %s", w, MinWindow, MaxWindow)
		}
	}
	if len(r.Channels) > maxChannels {
		return nil, fieldErr("channels", "at most %d", maxChannels)
	}
	for i := range r.Channels {
		if err := r.Channels[i].check(); err != nil {
			err.Field = fmt.Sprintf("channels[%d].%s", i, err.Field)
			return nil, err
		}
	}
	if c.meter {
		*r = c.Rule
		return c, nil
	}
	q := url.Values{}
	q.Set("select", strings.Join(sel, ","))
	q.Set("timeRange", "01/01/2000 00:00~01/01/2000 00:01") // set per evaluation
	f := r.filterText()
	if extra != "" {
		if f != "" {
			f = "(" + f + ") and "
		}
		f += extra
	}
	if f != "" {
		q.Set("filter", f)
	}
	c.filter = f
	dims := ""
	if r.Per != "" {
		dims = map[string]string{PerUser: "user_id", PerCompany: "company_id", PerAPIKey: "api_key"}[r.Per]
		// The instances furthest over the threshold come first, so that
		// a cap on the rows keeps those that matter.
		q.Set("sortby", sel[0])
		if r.Op == Below && r.Kind == KindThreshold {
			q.Set("sort", "ASC")
		}
		q.Set("limit", strconv.Itoa(MaxInstances))
	}
	p, err := stats.Parse(r.Org, r.Env, dims, q)
	if err != nil {
		var pe *stats.ParamError
		if ok := asParam(err, &pe); ok {
			field := map[string]string{"select": "metric", "sortby": "metric", "filter": "filter"}[pe.Param]
			if field == "" {
				field = pe.Param
			}
			return nil, fieldErr(field, "%s", pe.Msg)
		}
		return nil, fieldErr("metric", "%v", err)
	}
	if r.Kind == KindThreshold && !c.ratio {
		name := p.Select[0].Name
		c.Metric = name
		c.additive = strings.HasPrefix(name, "sum(")
		if name == "sum(message_count)" {
			// One selection is both.
			p.Select = p.Select[:1]
			c.volume = 0
		}
	}
	c.plan, c.dims = p, dims
	*r = c.Rule
	return c, nil
}

func asParam(err error, pe **stats.ParamError) bool {
	e, ok := err.(*stats.ParamError)
	if ok {
		*pe = e
	}
	return ok
}

func (ch *Channel) check() *FieldError {
	u, err := url.Parse(ch.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldErr("url", "%q is not an http or https URL", ch.URL)
	}
	switch ch.Type {
	case Webhook:
		if len(ch.Secret) < 16 {
			return fieldErr("secret", "a webhook needs a secret of at least 16 characters to sign with")
		}
	case Slack:
	default:
		return fieldErr("type", "%q is not webhook or slack", ch.Type)
	}
	return nil
}

// channelID names a channel in the delivery log: its type and URL,
// hashed, so that a changed URL is a new channel.
func (ch Channel) id() string {
	return shortHash(ch.Type + " " + ch.URL)
}

// holds reports whether an instance's sample is past the threshold.
func (c *compiled) holds(s Sample) bool {
	v, ok := 0.0, s.Value != nil
	if ok {
		v = *s.Value
	}
	return c.holdsV(v, ok, s.Volume, s.Threshold)
}

// holdsV is holds on unboxed figures: value v (known when ok), volume
// calls, threshold th.
func (c *compiled) holdsV(v float64, ok bool, volume, th float64) bool {
	switch c.Kind {
	case KindAbsence:
		return volume == 0
	case KindQuota:
		return ok && v >= th
	}
	if !ok || volume < float64(c.MinVolume) {
		return false
	}
	if c.Op == Below {
		return v < th
	}
	return v > th
}
