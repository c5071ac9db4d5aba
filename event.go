// Package apimeter holds the domain of apimeter: one API call as an Event
// (its request, response, who made it and where it belongs), and the small
// interfaces between the parts (Store, Sink, Identifier) that the packages
// below implement: the Moesif collector schema in moesif, the scrubbing of
// secrets in scrub, the stores in store/duckdb and store/clickhouse.
package apimeter

import (
	"encoding/json"
	"time"
)

// Direction says whether an API call came into the API (Incoming) or was made
// by it to a third party (Outgoing). The values are Moesif's.
const (
	Incoming = "Incoming"
	Outgoing = "Outgoing"
)

// Event is one API call: the request, the response, who made it and where it
// belongs. Secrets never live in an Event once it has passed Scrub: header
// values that carry credentials are replaced by fingerprints and the API key
// and session token are kept only as fingerprint ids.
type Event struct {
	// ID identifies the call within (Org, Env). Ingest is idempotent on it.
	ID  string
	Org string
	Env string

	Direction  string
	APIName    string // Apigee's "apiproxy"
	APIVersion string
	TargetURL  string // upstream the call was forwarded to, when known

	RequestTime  time.Time
	ResponseTime time.Time

	Method    string
	URI       string // full URI as sent, scheme and host included when known
	Path      string
	Route     string // route template, e.g. /accounts/{id}/message, when known
	Query     string // raw query string, secrets removed
	ClientIP  string
	UserAgent string

	RequestHeaders Headers
	RequestBody    Body
	RequestSize    int64 // bytes of request body as sent, -1 when unknown

	Status          int
	ResponseHeaders Headers
	ResponseBody    Body
	ResponseSize    int64 // bytes of response body as sent, -1 when unknown

	// LatencyMs is the total response time in milliseconds (response time
	// minus request time); TargetLatencyMs the part spent in the upstream
	// when a gateway measured it.
	LatencyMs       float64
	TargetLatencyMs float64

	UserID       string
	CompanyID    string
	APIKeyID     string // fingerprint of the API key, never the key
	SessionToken string // fingerprint of the session token, never the token

	Tags     string
	Metadata json.RawMessage // a JSON object, or nil
	// Weight is how many calls this event stands for (sampling). At least 1.
	Weight int64
}

// Header is one header, name as sent.
type Header struct {
	Name  string
	Value string
}

// Headers keeps header order and original case; lookups ignore case.
type Headers []Header

// Get returns the first value of the named header, ignoring case.
func (h Headers) Get(name string) string {
	for _, kv := range h {
		if equalFold(kv.Name, name) {
			return kv.Value
		}
	}
	return ""
}

// Body is a captured request or response body.
type Body struct {
	// Text is the body: UTF-8 text as captured, or base64 when Base64 is set
	// (bodies that are not valid UTF-8).
	Text   string
	Base64 bool
	// Truncated says the body was cut at the configured cap.
	Truncated bool
}

// IsError reports whether the call failed from the caller's point of view:
// a status of 400 or above, or no response at all (status 0).
func (e *Event) IsError() bool { return e.Status >= 400 || e.Status == 0 }

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
