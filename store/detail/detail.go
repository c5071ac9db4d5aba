// Package detail encodes the parts of an event that are shown but never
// grouped or filtered on (headers, bodies, query string, tags, metadata, ...)
// as one JSON document, the "detail" column of every store, and holds the
// SQL that every reader of the events table shares (IsErrorSQL).
package detail

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/moesif"
)

// One column rather than ten because DuckDB's appender costs about the same
// for every string value whatever its length: that is most of the
// difference between a slow and a fast ingest path.
type detail struct {
	Direction  string          `json:"direction,omitempty"`
	APIVersion string          `json:"api_version,omitempty"`
	Query      string          `json:"query,omitempty"`
	Session    string          `json:"session,omitempty"`
	Tags       string          `json:"tags,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Req        detailMsg       `json:"req"`
	Resp       detailMsg       `json:"resp"`
}

type detailMsg struct {
	Headers   moesif.Headers `json:"headers,omitempty"`
	Body      string         `json:"body,omitempty"`
	Base64    bool           `json:"b64,omitempty"`
	Truncated bool           `json:"trunc,omitempty"`
}

// Append appends the detail JSON of e to dst without reflection.
func Append(dst []byte, e *apimeter.Event) []byte {
	dst = append(dst, '{')
	dst = appendField(dst, "direction", e.Direction, false)
	dst = appendField(dst, "api_version", e.APIVersion, true)
	dst = appendField(dst, "query", e.Query, true)
	dst = appendField(dst, "session", e.SessionToken, true)
	dst = appendField(dst, "tags", e.Tags, true)
	if len(e.Metadata) > 0 && json.Valid(e.Metadata) {
		// The collector normalises metadata already; other callers of
		// Append may not, and DuckDB refuses invalid UTF-8.
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, jsontext.ValidJSON(e.Metadata)...)
	}
	dst = append(dst, `,"req":`...)
	dst = appendMsg(dst, e.RequestHeaders, e.RequestBody)
	dst = append(dst, `,"resp":`...)
	dst = appendMsg(dst, e.ResponseHeaders, e.ResponseBody)
	return append(dst, '}')
}

func appendField(dst []byte, name, value string, comma bool) []byte {
	if value == "" && comma {
		return dst
	}
	if comma {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return jsontext.AppendString(dst, value)
}

func appendMsg(dst []byte, h apimeter.Headers, b apimeter.Body) []byte {
	dst = append(dst, `{"headers":`...)
	dst = jsontext.AppendHeaders(dst, h)
	if b.Text != "" {
		dst = append(dst, `,"body":`...)
		dst = jsontext.AppendString(dst, b.Text)
	}
	if b.Base64 {
		dst = append(dst, `,"b64":true`...)
	}
	if b.Truncated {
		dst = append(dst, `,"trunc":true`...)
	}
	return append(dst, '}')
}

// UnreadableKey is the metadata key an event read back gets when its
// stored detail could not be read whole (a row written before the
// per-event caps held for every entry point): what could be read is
// shown, the rest is left out, and the key lists what was left out.
const UnreadableKey = "apimeter_unreadable"

// Apply fills e from a detail JSON document. A stored row is always
// served: a document the strict decoding refuses (more headers than
// jsontext.MaxHeaders, a value of an odd type, bad JSON) is read as far
// as it goes and the event marked with UnreadableKey. It returns no error
// since then; the result is kept for the stores' callers.
func Apply(e *apimeter.Event, doc string) error {
	var d detail
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		applyLenient(e, doc)
		return nil
	}
	e.Direction, e.APIVersion, e.Query, e.SessionToken, e.Tags = d.Direction, d.APIVersion, d.Query, d.Session, d.Tags
	if len(d.Metadata) > 0 {
		e.Metadata = d.Metadata
	}
	e.RequestHeaders = apimeter.Headers(d.Req.Headers)
	e.RequestBody = apimeter.Body{Text: d.Req.Body, Base64: d.Req.Base64, Truncated: d.Req.Truncated}
	e.ResponseHeaders = apimeter.Headers(d.Resp.Headers)
	e.ResponseBody = apimeter.Body{Text: d.Resp.Body, Base64: d.Resp.Base64, Truncated: d.Resp.Truncated}
	return nil
}

// lenientDetail is detail with the parts a strict decoding may refuse
// left raw.
type lenientDetail struct {
	Direction  string          `json:"direction"`
	APIVersion string          `json:"api_version"`
	Query      string          `json:"query"`
	Session    string          `json:"session"`
	Tags       string          `json:"tags"`
	Metadata   json.RawMessage `json:"metadata"`
	Req        lenientMsg      `json:"req"`
	Resp       lenientMsg      `json:"resp"`
}

type lenientMsg struct {
	Headers   json.RawMessage `json:"headers"`
	Body      string          `json:"body"`
	Base64    bool            `json:"b64"`
	Truncated bool            `json:"trunc"`
}

// applyLenient reads what it can of doc into e and marks e.
func applyLenient(e *apimeter.Event, doc string) {
	var left []string
	var d lenientDetail
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		e.Metadata = markUnreadable(nil, []string{"detail"})
		return
	}
	e.Direction, e.APIVersion, e.Query, e.SessionToken, e.Tags = d.Direction, d.APIVersion, d.Query, d.Session, d.Tags
	var cut bool
	if e.RequestHeaders, cut = lenientHeaders(d.Req.Headers); cut {
		left = append(left, "request.headers")
	}
	if e.ResponseHeaders, cut = lenientHeaders(d.Resp.Headers); cut {
		left = append(left, "response.headers")
	}
	e.RequestBody = apimeter.Body{Text: d.Req.Body, Base64: d.Req.Base64, Truncated: d.Req.Truncated}
	e.ResponseBody = apimeter.Body{Text: d.Resp.Body, Base64: d.Resp.Base64, Truncated: d.Resp.Truncated}
	md := bytes.TrimSpace(d.Metadata)
	if len(md) > 0 && md[0] != '{' && !bytes.Equal(md, []byte("null")) {
		left = append(left, "metadata")
		md = nil
	}
	e.Metadata = markUnreadable(md, left)
}

// lenientHeaders reads a JSON object of header names to values, keeping
// the first jsontext.MaxHeaders; a value that is not a string is kept as
// its JSON text. cut says something was left out.
func lenientHeaders(raw json.RawMessage) (apimeter.Headers, bool) {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, true
	}
	var h apimeter.Headers
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return h, true
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return h, true
		}
		if len(h) == jsontext.MaxHeaders {
			return h, true
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = strings.TrimSpace(string(v))
		}
		h = append(h, apimeter.Header{Name: name, Value: s})
	}
	return h, false
}

// markUnreadable returns metadata md (a JSON object or nothing) with
// UnreadableKey listing left, or md unchanged when nothing was left out.
func markUnreadable(md json.RawMessage, left []string) json.RawMessage {
	if len(left) == 0 {
		if len(md) == 0 || bytes.Equal(md, []byte("null")) {
			return nil
		}
		return md
	}
	obj := map[string]json.RawMessage{}
	if len(md) > 0 {
		_ = json.Unmarshal(md, &obj)
	}
	list, _ := json.Marshal(left)
	obj[UnreadableKey] = list
	out, _ := json.Marshal(obj)
	return out
}
