package meter

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Aggregations a meter may take (OpenMeter's names).
const (
	Sum         = "SUM"
	Count       = "COUNT"
	UniqueCount = "UNIQUE_COUNT"
	Avg         = "AVG"
	Min         = "MIN"
	Max         = "MAX"
	Latest      = "LATEST"
)

var aggregations = []string{Sum, Count, UniqueCount, Avg, Min, Max, Latest}

// ReservedTypePrefix starts the types of the usage events apimeter writes
// itself (package billing's ledger); POST /api/v1/events refuses them.
const ReservedTypePrefix = "apimeter."

// CallType is the event type of the API calls apimeter stores: a meter of
// this type reads the events table (see CallFields).
const CallType = "api-call"

// Meter aggregates the usage events of one type: OpenMeter's meter, plus
// Filter for meters over API calls.
type Meter struct {
	ID          string `json:"id"`
	Slug        string `json:"slug"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	EventType   string `json:"eventType"`
	Aggregation string `json:"aggregation"`
	// ValueProperty is the JSONPath ($.a.b) of the value in data; none for
	// COUNT.
	ValueProperty string `json:"valueProperty,omitempty"`
	// GroupBy names JSONPaths of data the meter's queries may group and
	// filter by.
	GroupBy map[string]string `json:"groupBy,omitempty"`
	// WindowSize is accepted for OpenMeter's older meters and not used:
	// every query names its own.
	WindowSize string `json:"windowSize,omitempty"`
	// StripeEventName is the event_name of the Stripe Billing meter this
	// meter is pushed to (apimeter billing push); none: not pushed.
	StripeEventName string `json:"stripeEventName,omitempty"`
	// Filter narrows a meter over API calls (EventType "api-call").
	Filter    *CallFilter `json:"filter,omitempty"`
	CreatedAt time.Time   `json:"createdAt"`
	// Org and Env own the meter; they come from the key, not the body.
	Org string `json:"-"`
	Env string `json:"-"`
}

// CallFilter selects the API calls a meter counts; every field given must
// match (a list: any of its values).
type CallFilter struct {
	API     []string `json:"api,omitempty"`
	Route   []string `json:"route,omitempty"`
	Verb    []string `json:"verb,omitempty"`
	Status  []int    `json:"status,omitempty"`
	User    []string `json:"user,omitempty"`
	Company []string `json:"company,omitempty"`
	Key     []string `json:"key,omitempty"`
	// Errors, when set, keeps only calls that failed (true: status 400 or
	// above, or no response) or only those that did not (false).
	Errors *bool `json:"errors,omitempty"`
}

// CallField is one field of an API call as a meter sees it in data.
type CallField struct {
	Name    string // the key in data ($.Name)
	Numeric bool   // a value for SUM, AVG, MIN, MAX, LATEST
	About   string
}

// CallFields are the data of an "api-call" event: what a meter over API
// calls may name in valueProperty and groupBy.
var CallFields = []CallField{
	{"route", false, "route template, e.g. /accounts/{id}, else the path"},
	{"api", false, "API name (Apigee's apiproxy)"},
	{"verb", false, "HTTP method"},
	{"status", true, "response status (0: no response)"},
	{"requestBytes", true, "request body bytes, when known"},
	{"responseBytes", true, "response body bytes, when known"},
	{"latencyMs", true, "total response time in milliseconds"},
	{"user", false, "user id"},
	{"company", false, "company id"},
	{"key", false, "fingerprint of the API key"},
}

func callField(name string) (CallField, bool) {
	for _, f := range CallFields {
		if f.Name == name {
			return f, true
		}
	}
	return CallField{}, false
}

// FieldError is a meter definition or query parameter that is wrong.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

var (
	slugRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	groupKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	segmentRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// MaxGroupBy bounds a meter's groupBy keys.
const MaxGroupBy = 20

// ParsePath reads the subset of JSONPath that OpenMeter's meters use: $
// followed by one or more .key segments ($.tokens, $.usage.input). It
// returns the flattened key ("usage.input") under which Event keeps the
// value.
func ParsePath(p string) (string, error) {
	if !strings.HasPrefix(p, "$.") {
		return "", fmt.Errorf("%q: want a JSONPath of the form $.key or $.a.b (object keys of letters, digits, _ and -)", p)
	}
	segs := strings.Split(p[2:], ".")
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			return "", fmt.Errorf("%q: want a JSONPath of the form $.key or $.a.b (object keys of letters, digits, _ and -; no brackets, wildcards or filters)", p)
		}
	}
	return p[2:], nil
}

// Validate checks a meter as created through the API or the config file.
func (m *Meter) Validate() error {
	if !slugRE.MatchString(m.Slug) {
		return &FieldError{"slug", fmt.Sprintf("%q: want 1 to 63 lowercase letters, digits, _ or -, starting with a letter or digit", m.Slug)}
	}
	if m.EventType == "" {
		return &FieldError{"eventType", "required"}
	}
	if len(m.EventType) > DefaultMaxFieldBytes {
		return &FieldError{"eventType", "too long"}
	}
	if !slices.Contains(aggregations, m.Aggregation) {
		return &FieldError{"aggregation", fmt.Sprintf("%q: want one of %s", m.Aggregation, strings.Join(aggregations, ", "))}
	}
	call := m.EventType == CallType
	if m.Aggregation == Count {
		if m.ValueProperty != "" {
			return &FieldError{"valueProperty", "COUNT counts events; it takes no valueProperty"}
		}
	} else {
		if m.ValueProperty == "" {
			return &FieldError{"valueProperty", m.Aggregation + " needs a valueProperty (the JSONPath of the value in data)"}
		}
		key, err := ParsePath(m.ValueProperty)
		if err != nil {
			return &FieldError{"valueProperty", err.Error()}
		}
		if call {
			f, ok := callField(key)
			if !ok || strings.Contains(key, ".") {
				return &FieldError{"valueProperty", fmt.Sprintf("%q: an api-call event's data has %s", m.ValueProperty, callFieldList())}
			}
			if !f.Numeric && m.Aggregation != UniqueCount {
				return &FieldError{"valueProperty", fmt.Sprintf("%q is not a number; %s needs one of $.status, $.requestBytes, $.responseBytes, $.latencyMs", m.ValueProperty, m.Aggregation)}
			}
		}
	}
	if len(m.GroupBy) > MaxGroupBy {
		return &FieldError{"groupBy", fmt.Sprintf("at most %d keys", MaxGroupBy)}
	}
	for _, k := range slices.Sorted(maps.Keys(m.GroupBy)) {
		if !groupKeyRE.MatchString(k) || k == "subject" {
			return &FieldError{"groupBy", fmt.Sprintf("key %q: want a name of letters, digits and _ (not \"subject\", which every meter has)", k)}
		}
		key, err := ParsePath(m.GroupBy[k])
		if err != nil {
			return &FieldError{"groupBy." + k, err.Error()}
		}
		if call {
			if _, ok := callField(key); !ok || strings.Contains(key, ".") {
				return &FieldError{"groupBy." + k, fmt.Sprintf("%q: an api-call event's data has %s", m.GroupBy[k], callFieldList())}
			}
		}
	}
	if len(m.StripeEventName) > 100 || strings.ContainsAny(m.StripeEventName, " \t\r\n") {
		return &FieldError{"stripeEventName", "want a Stripe meter's event_name: at most 100 characters, no spaces"}
	}
	if m.Filter != nil && !call {
		return &FieldError{"filter", "only meters over API calls (eventType \"api-call\") take a filter"}
	}
	switch m.WindowSize {
	case "", "MINUTE", "HOUR", "DAY":
	default:
		return &FieldError{"windowSize", fmt.Sprintf("%q: want MINUTE, HOUR or DAY", m.WindowSize)}
	}
	return nil
}

func callFieldList() string {
	var names []string
	for _, f := range CallFields {
		names = append(names, "$."+f.Name)
	}
	return strings.Join(names, ", ")
}

// NewID returns a new meter id: 26 random hex digits.
func NewID() string {
	var b [13]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ConfigFile is the meters file (--meters): meters per org and env, as
// OpenMeter's meter JSON. They are written to the store at start,
// replacing the meters of the same slug.
type ConfigFile struct {
	Meters []ConfigMeter `json:"meters"`
}

// ConfigMeter is a meter of the config file with the org and env it
// belongs to.
type ConfigMeter struct {
	Org string `json:"org"`
	Env string `json:"env"`
	Meter
}

// LoadConfig reads and checks a meters file.
func LoadConfig(path string) ([]Meter, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("meters file: %w", err)
	}
	var cf ConfigFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cf); err != nil {
		return nil, fmt.Errorf("meters file %s: %w", path, err)
	}
	var out []Meter
	seen := map[[3]string]bool{}
	for i, cm := range cf.Meters {
		m := cm.Meter
		m.Org, m.Env = cm.Org, cm.Env
		if m.Org == "" || m.Env == "" {
			return nil, fmt.Errorf("meters file %s: meter %d: org and env are required", path, i)
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("meters file %s: meter %d (%s): %w", path, i, m.Slug, err)
		}
		k := [3]string{m.Org, m.Env, m.Slug}
		if seen[k] {
			return nil, fmt.Errorf("meters file %s: meter %d: slug %q appears twice for org %s env %s", path, i, m.Slug, m.Org, m.Env)
		}
		seen[k] = true
		if m.ID == "" {
			// Stable across restarts and processes: the file names it.
			m.ID = "cfg-" + m.Org + "-" + m.Env + "-" + m.Slug
		}
		out = append(out, m)
	}
	return out, nil
}
