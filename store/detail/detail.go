// Package detail encodes the parts of an event that are shown but never
// grouped or filtered on (headers, bodies, query string, tags, metadata, ...)
// as one JSON document, the "detail" column of every store, and holds the
// SQL that every reader of the events table shares (IsErrorSQL).
package detail

import (
	"encoding/json"

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

// Apply fills e from a detail JSON document.
func Apply(e *apimeter.Event, doc string) error {
	var d detail
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return err
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
