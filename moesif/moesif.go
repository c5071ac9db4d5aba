package moesif

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
)

// Event is Moesif's collector EventModel, the JSON that Moesif's SDKs
// post to /v1/events and /v1/events/batch. apimeter adds event_id (an
// explicit idempotency id), api_name, route, api_key_id, and target_url and
// target_latency_ms (where a gateway forwarded the call and how long the
// upstream took); Moesif's SDKs ignore them on read and never send them.
type Event struct {
	EventID      string          `json:"event_id,omitempty"`
	Request      Request         `json:"request"`
	Response     *Response       `json:"response,omitempty"`
	UserID       string          `json:"user_id,omitempty"`
	CompanyID    string          `json:"company_id,omitempty"`
	SessionToken string          `json:"session_token,omitempty"`
	Tags         string          `json:"tags,omitempty"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
	Direction    string          `json:"direction,omitempty"`
	Weight       json.RawMessage `json:"weight,omitempty"`
	BlockedBy    string          `json:"blocked_by,omitempty"`

	APIName  string `json:"api_name,omitempty"`
	Route    string `json:"route,omitempty"`
	APIKeyID string `json:"api_key_id,omitempty"`

	TargetURL       string   `json:"target_url,omitempty"`
	TargetLatencyMs *float64 `json:"target_latency_ms,omitempty"`
}

// Request is the request half of Event.
type Request struct {
	Time             string          `json:"time"`
	URI              string          `json:"uri"`
	Verb             string          `json:"verb"`
	APIVersion       string          `json:"api_version,omitempty"`
	IPAddress        string          `json:"ip_address,omitempty"`
	Headers          Headers         `json:"headers,omitempty"`
	Body             json.RawMessage `json:"body,omitempty"`
	TransferEncoding string          `json:"transfer_encoding,omitempty"`
	ContentLength    *int64          `json:"content_length,omitempty"`
	// BodyTruncated says body is the start of a longer body: apimeter's
	// addition, set when it cut the body at its cap (a truncated JSON body
	// is then a string), or by a sender that cut it.
	BodyTruncated bool `json:"body_truncated,omitempty"`
}

// Response is the response half of Event.
type Response struct {
	Time             string          `json:"time,omitempty"`
	Status           int             `json:"status"`
	IPAddress        string          `json:"ip_address,omitempty"`
	Headers          Headers         `json:"headers,omitempty"`
	Body             json.RawMessage `json:"body,omitempty"`
	TransferEncoding string          `json:"transfer_encoding,omitempty"`
	ContentLength    *int64          `json:"content_length,omitempty"`
	BodyTruncated    bool            `json:"body_truncated,omitempty"` // as in Request

	// statusNull says status was sent as null, which ToEvent refuses
	// (a missing status is 0: no response).
	statusNull bool
}

// UnmarshalJSON implements json.Unmarshaler: the fields as encoding/json
// fills them, and whether status was null, which it cannot tell from a
// missing status.
func (r *Response) UnmarshalJSON(b []byte) error {
	type plain Response
	if err := json.Unmarshal(b, (*plain)(r)); err != nil {
		return err
	}
	var st struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	r.statusNull = string(st.Status) == "null"
	return nil
}

// Headers is a JSON object of headers. On input a value may be a
// string, a number, a boolean or an array of those (joined with ", "), as
// the various SDKs send them; on output every value is a string.
type Headers apimeter.Headers

// UnmarshalJSON implements json.Unmarshaler. It scans the object itself
// rather than through encoding/json's reflection: headers are most of an
// event and this is the collector's hot path.
func (h *Headers) UnmarshalJSON(b []byte) error {
	out, err := jsontext.ScanHeaders(b, apimeter.Headers((*h)[:0]))
	if err != nil {
		return err
	}
	*h = Headers(out)
	return nil
}

// MarshalJSON implements json.Marshaler, keeping header order.
func (h Headers) MarshalJSON() ([]byte, error) {
	return jsontext.AppendHeaders(nil, apimeter.Headers(h)), nil
}

// FieldError is bad input in one event: which event of a batch (Index, -1
// for a single event), which field (a JSON path such as "request.time") and
// what is wrong with it.
type FieldError struct {
	Index int
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// TransactionIDHeader is the header Moesif's SDKs add to each request and
// response; apimeter takes it as the event id when no event_id is given.
const TransactionIDHeader = "X-Moesif-Transaction-Id"

// ToEvent converts a collector event into an Event for (org, env). index is
// reported in errors (use -1 for a single event). Bodies are decoded from
// base64 when transfer_encoding says so; they are not capped here (see
// Scrubber). The id is, in order: event_id, the X-Moesif-Transaction-Id
// request header, the same response header, else a hash of the event's
// content, so that a sender retrying the same JSON is deduplicated.
func (m *Event) ToEvent(org, env string, index int) (apimeter.Event, error) {
	fe := func(field, format string, args ...any) error {
		return &FieldError{Index: index, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	ev := apimeter.Event{Org: org, Env: env, RequestSize: -1, ResponseSize: -1, Weight: 1}
	m.normalize()
	if m.Request.Time == "" {
		return ev, fe("request.time", "is required (ISO 8601, e.g. 2026-11-24T10:00:00.000Z)")
	}
	t, err := ParseTime(m.Request.Time)
	if err != nil {
		return ev, fe("request.time", "%v", err)
	}
	ev.RequestTime = t
	if m.Request.URI == "" {
		return ev, fe("request.uri", "is required")
	}
	if m.Request.Verb == "" {
		return ev, fe("request.verb", "is required")
	}
	ev.Method = strings.ToUpper(m.Request.Verb)
	ev.URI = m.Request.URI
	ev.Path, ev.Query = splitURI(m.Request.URI)
	ev.APIVersion = m.Request.APIVersion
	ev.ClientIP = clientIP(m.Request.IPAddress)
	ev.RequestHeaders = apimeter.Headers(m.Request.Headers)
	ev.UserAgent = ev.RequestHeaders.Get("User-Agent")
	if ev.RequestBody, err = decodeBody(m.Request.Body, m.Request.TransferEncoding); err != nil {
		return ev, fe("request.body", "%v", err)
	}
	ev.RequestBody.Truncated = m.Request.BodyTruncated && ev.RequestBody.Text != ""
	if cl := m.Request.ContentLength; cl != nil && *cl >= 0 {
		ev.RequestSize = *cl
	} else if cl := ev.RequestHeaders.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			ev.RequestSize = n
		}
	}
	if ev.RequestSize < 0 && len(m.Request.Body) > 0 && !ev.RequestBody.Base64 {
		ev.RequestSize = int64(len(ev.RequestBody.Text))
	}

	if m.Response == nil {
		return ev, fe("response", "is required (with at least status)")
	}
	if m.Response.statusNull {
		return ev, fe("response.status", "must be an HTTP status code, got null")
	}
	if m.Response.Status < 0 || m.Response.Status > 999 {
		return ev, fe("response.status", "must be an HTTP status code, got %d", m.Response.Status)
	}
	ev.Status = m.Response.Status
	ev.ResponseTime = ev.RequestTime
	if m.Response.Time != "" {
		rt, err := ParseTime(m.Response.Time)
		if err != nil {
			return ev, fe("response.time", "%v", err)
		}
		if rt.Before(ev.RequestTime) {
			return ev, fe("response.time", "is before request.time")
		}
		ev.ResponseTime = rt
	}
	ev.LatencyMs = float64(ev.ResponseTime.Sub(ev.RequestTime).Microseconds()) / 1000
	ev.ResponseHeaders = apimeter.Headers(m.Response.Headers)
	if ev.ResponseBody, err = decodeBody(m.Response.Body, m.Response.TransferEncoding); err != nil {
		return ev, fe("response.body", "%v", err)
	}
	ev.ResponseBody.Truncated = m.Response.BodyTruncated && ev.ResponseBody.Text != ""
	if cl := m.Response.ContentLength; cl != nil && *cl >= 0 {
		ev.ResponseSize = *cl
	} else if cl := ev.ResponseHeaders.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			ev.ResponseSize = n
		}
	}
	if ev.ResponseSize < 0 && len(m.Response.Body) > 0 && !ev.ResponseBody.Base64 {
		ev.ResponseSize = int64(len(ev.ResponseBody.Text))
	}

	ev.UserID = m.UserID
	ev.CompanyID = m.CompanyID
	ev.SessionToken = m.SessionToken
	ev.Tags = m.Tags
	ev.APIName = m.APIName
	ev.Route = m.Route
	ev.APIKeyID = m.APIKeyID
	ev.TargetURL = m.TargetURL
	if v := m.TargetLatencyMs; v != nil {
		if *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) {
			return ev, fe("target_latency_ms", "must be a number of milliseconds of at least 0, got %v", *v)
		}
		ev.TargetLatencyMs = *v
	}
	switch strings.ToLower(m.Direction) {
	case "", "incoming":
		ev.Direction = apimeter.Incoming
	case "outgoing":
		ev.Direction = apimeter.Outgoing
	default:
		return ev, fe("direction", "must be Incoming or Outgoing, got %q", m.Direction)
	}
	if md := bytes.TrimSpace(m.Metadata); len(md) > 0 && !bytes.Equal(md, []byte("null")) {
		if md[0] != '{' {
			return ev, fe("metadata", "must be a JSON object")
		}
		ev.Metadata = md
	}
	if len(m.Weight) > 0 && !bytes.Equal(m.Weight, []byte("null")) {
		// Moesif's Java SDK sends 0 for "not set": that means 1.
		w, err := strconv.ParseInt(string(m.Weight), 10, 64)
		if err != nil || w < 0 {
			return ev, fe("weight", "must be a whole number of at least 1, got %s", m.Weight)
		}
		if w > 0 {
			ev.Weight = w
		}
	}

	switch {
	case m.EventID != "":
		ev.ID = m.EventID
	case ev.RequestHeaders.Get(TransactionIDHeader) != "":
		ev.ID = ev.RequestHeaders.Get(TransactionIDHeader)
	case ev.ResponseHeaders.Get(TransactionIDHeader) != "":
		ev.ID = ev.ResponseHeaders.Get(TransactionIDHeader)
	default:
		ev.ID = contentID(m)
	}
	if len(ev.ID) > 256 {
		return ev, fe("event_id", "is longer than 256 characters")
	}
	return ev, nil
}

// NumberRepeats gives each repeat of a content id within one batch its own
// id: the n-th event (n ≥ 2) of ms whose id was derived from its content
// and equals an earlier one's becomes "<id>-n". Three identical calls in
// the same millisecond are three calls, yet a retried batch gets the same
// ids again, since they depend only on the content and its order in the
// batch. The first occurrence keeps the plain content id, the one a single
// event gets. Ids that were sent (event_id, a transaction id header) are
// left alone: a sender that repeats one means the same event. events[i]
// must be ms[i].ToEvent's result.
func NumberRepeats(ms []Event, events []apimeter.Event) {
	var seen map[string]int
	for i := range events {
		if !ms[i].idFromContent() {
			continue
		}
		if seen == nil {
			seen = make(map[string]int)
		}
		n := seen[events[i].ID] + 1
		seen[events[i].ID] = n
		if n > 1 {
			events[i].ID += "-" + strconv.Itoa(n)
		}
	}
}

// idFromContent reports whether ToEvent derives m's id from its content.
func (m *Event) idFromContent() bool {
	if m.EventID != "" || apimeter.Headers(m.Request.Headers).Get(TransactionIDHeader) != "" {
		return false
	}
	return m.Response == nil || apimeter.Headers(m.Response.Headers).Get(TransactionIDHeader) == ""
}

// normalize makes every text of m valid: strings as encoding/json decodes
// them (invalid UTF-8 becomes U+FFFD), raw JSON by ValidJSON. Values that
// are valid already are left as they are, without copying.
func (m *Event) normalize() {
	for _, f := range []*string{&m.EventID, &m.UserID, &m.CompanyID, &m.SessionToken, &m.Tags, &m.Direction,
		&m.BlockedBy, &m.APIName, &m.Route, &m.APIKeyID,
		&m.Request.Time, &m.Request.URI, &m.Request.Verb, &m.Request.APIVersion, &m.Request.IPAddress, &m.Request.TransferEncoding} {
		*f = jsontext.ValidString(*f)
	}
	normalizeHeaders(m.Request.Headers)
	m.Request.Body = jsontext.ValidJSON(m.Request.Body)
	m.Metadata = jsontext.ValidJSON(m.Metadata)
	if r := m.Response; r != nil {
		for _, f := range []*string{&r.Time, &r.IPAddress, &r.TransferEncoding} {
			*f = jsontext.ValidString(*f)
		}
		normalizeHeaders(r.Headers)
		r.Body = jsontext.ValidJSON(r.Body)
	}
}

func normalizeHeaders(h Headers) {
	for i := range h {
		h[i].Name = jsontext.ValidString(h[i].Name)
		h[i].Value = jsontext.ValidString(h[i].Value)
	}
}

// contentID derives an id from what identifies a call, so that the same
// event sent twice without an id is stored once. It is the one definition
// of an event's content id: m must be normalized (ToEvent does it first),
// so that every decoder of the same JSON, and every entry point, gives the
// same id.
func contentID(m *Event) string {
	h := xxh3.New()
	for _, s := range []string{m.Request.Time, m.Request.Verb, m.Request.URI, m.Request.IPAddress,
		m.UserID, m.CompanyID, m.SessionToken, m.Direction} {
		h.WriteString(s)
		h.Write([]byte{0})
	}
	h.Write(m.Request.Body)
	h.Write([]byte{0})
	if m.Response != nil {
		h.WriteString(m.Response.Time)
		h.WriteString(strconv.Itoa(m.Response.Status))
		h.Write([]byte{0})
		h.Write(m.Response.Body)
	}
	for _, kv := range m.Request.Headers {
		h.WriteString(kv.Name)
		h.WriteString(kv.Value)
	}
	sum := h.Sum128().Bytes()
	return "h-" + hex.EncodeToString(sum[:])
}

// clientIP returns the address part of ip. Moesif's Go middleware falls
// back to http.Request.RemoteAddr, which is "ip:port" ("[ip]:port" for
// IPv6); the port would split one client into many.
func clientIP(ip string) string {
	ip = strings.TrimSpace(ip)
	if host, _, err := net.SplitHostPort(ip); err == nil {
		if _, err := netip.ParseAddr(host); err == nil {
			return host
		}
	}
	return ip
}

func splitURI(uri string) (path, query string) {
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[j:]
		} else if j := strings.IndexByte(rest, '?'); j >= 0 {
			rest = "/" + rest[j:]
		} else {
			rest = "/"
		}
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, ""
}

func decodeBody(raw json.RawMessage, enc string) (apimeter.Body, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return apimeter.Body{}, nil
	}
	switch strings.ToLower(enc) {
	case "", "json":
		if raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return apimeter.Body{}, err
			}
			return apimeter.Body{Text: s}, nil
		}
		return apimeter.Body{Text: string(raw)}, nil
	case "base64":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return apimeter.Body{}, fmt.Errorf("with transfer_encoding base64 must be a string")
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				return apimeter.Body{}, fmt.Errorf("is not valid base64: %v", err)
			}
		}
		if isText(b) {
			return apimeter.Body{Text: string(b)}, nil
		}
		return apimeter.Body{Text: s, Base64: true}, nil
	}
	return apimeter.Body{}, fmt.Errorf("unknown transfer_encoding %q (json or base64)", enc)
}

// ParseTime accepts the time forms Moesif's SDKs send: RFC 3339 with or
// without fractional seconds and zone (no zone means UTC).
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999-0700", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			// The range holds in UTC: an offset may move a time across it.
			if t = t.UTC(); t.Year() < 1970 || t.Year() > 2200 {
				return time.Time{}, fmt.Errorf("%q is outside the years 1970 to 2200 (UTC)", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 time such as 2026-11-24T10:00:00.000Z", s)
}

// FromEvent converts a stored Event back to the collector schema, with the
// apimeter fields (event_id, api_name, route, api_key_id) filled.
func FromEvent(e *apimeter.Event) Event {
	m := Event{
		EventID: e.ID,
		Request: Request{
			Time:       e.RequestTime.UTC().Format("2006-01-02T15:04:05.000Z"),
			URI:        e.URI,
			Verb:       e.Method,
			APIVersion: e.APIVersion,
			IPAddress:  e.ClientIP,
			Headers:    Headers(e.RequestHeaders),
		},
		Response: &Response{
			Time:    e.ResponseTime.UTC().Format("2006-01-02T15:04:05.000Z"),
			Status:  e.Status,
			Headers: Headers(e.ResponseHeaders),
		},
		UserID:       e.UserID,
		CompanyID:    e.CompanyID,
		SessionToken: e.SessionToken,
		Tags:         e.Tags,
		Metadata:     e.Metadata,
		Direction:    e.Direction,
		APIName:      e.APIName,
		Route:        e.Route,
		APIKeyID:     e.APIKeyID,
		TargetURL:    e.TargetURL,
	}
	if e.TargetLatencyMs > 0 {
		v := e.TargetLatencyMs
		m.TargetLatencyMs = &v
	}
	if e.Weight != 1 {
		m.Weight = json.RawMessage(strconv.FormatInt(e.Weight, 10))
	}
	m.Request.Body, m.Request.TransferEncoding = encodeBody(e.RequestBody)
	m.Response.Body, m.Response.TransferEncoding = encodeBody(e.ResponseBody)
	m.Request.BodyTruncated = e.RequestBody.Truncated && e.RequestBody.Text != ""
	m.Response.BodyTruncated = e.ResponseBody.Truncated && e.ResponseBody.Text != ""
	return m
}

func encodeBody(b apimeter.Body) (json.RawMessage, string) {
	if b.Text == "" {
		return nil, ""
	}
	if b.Base64 {
		s, _ := json.Marshal(b.Text)
		return s, "base64"
	}
	if !b.Truncated && json.Valid([]byte(b.Text)) {
		return json.RawMessage(b.Text), ""
	}
	s, _ := json.Marshal(b.Text)
	return s, ""
}

// isText reports whether b is UTF-8 text without control characters other
// than tab, newline and carriage return, so it can be stored as text and
// read back unchanged.
func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b)
}
