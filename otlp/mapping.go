package otlp

import (
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/zeebo/xxh3"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter"
)

// Batch is what one export request becomes: the API calls to store, and
// what was left out and why.
type Batch struct {
	Events []apimeter.Event
	// Rejected counts the spans or log records that looked like API calls
	// but could not be used (answered as partial success); Messages says
	// why, for the first few.
	Rejected int64
	Messages []string
	// Ignored counts, by span kind, the spans that are not API calls by
	// design (client, internal, producer, consumer); for logs, index 0
	// counts the records without HTTP attributes.
	Ignored [6]int64
}

// maxMessages bounds the reasons kept for a partial-success answer.
const maxMessages = 3

func (b *Batch) reject(where string, msg string) {
	b.Rejected++
	if len(b.Messages) < maxMessages {
		b.Messages = append(b.Messages, where+": "+msg)
	}
}

// Message is the partial-success error_message: how many were rejected and
// the first reasons.
func (b *Batch) Message(what string) string {
	if b.Rejected == 0 {
		return ""
	}
	s := fmt.Sprintf("%d %s not stored as API calls: %s", b.Rejected, what, strings.Join(b.Messages, "; "))
	if b.Rejected > int64(len(b.Messages)) {
		s += "; ..."
	}
	return s
}

// Mapper turns OTLP requests into events. Its zero value is ready; it
// keeps buffers between calls and is not safe for concurrent use.
type Mapper struct {
	// Check, when set, refuses an event the collector would refuse (caps on
	// URI, header values, metadata); the span or record is then rejected
	// with its message.
	Check func(e *apimeter.Event) error
	call  httpCall
	meta  []byte
}

// resource holds what a resource says of the service.
type resource struct {
	service, version string
}

func readResource(r *resourcepb.Resource) resource {
	var res resource
	for _, kv := range r.GetAttributes() {
		switch kv.GetKey() {
		case "service.name":
			res.service = str(kv.GetValue())
		case "service.version":
			res.version = str(kv.GetValue())
		}
	}
	return res
}

// Traces maps the SERVER spans of req to events of (org, env) and counts
// the others.
func (m *Mapper) Traces(req *coltracepb.ExportTraceServiceRequest, org, env string, b *Batch) {
	for ri, rs := range req.GetResourceSpans() {
		res := readResource(rs.GetResource())
		for si, ss := range rs.GetScopeSpans() {
			for pi, sp := range ss.GetSpans() {
				kind := sp.GetKind()
				if kind != tracepb.Span_SPAN_KIND_SERVER {
					// A kind this version of the protocol does not
					// define is counted as unspecified, not lost.
					k := int(kind)
					if k < 0 || k >= len(b.Ignored) {
						k = int(tracepb.Span_SPAN_KIND_UNSPECIFIED)
					}
					b.Ignored[k]++
					continue
				}
				ev, msg := m.span(sp, res, org, env)
				if msg == "" && m.Check != nil {
					if err := m.Check(&ev); err != nil {
						msg = err.Error()
					}
				}
				if msg != "" {
					b.reject(fmt.Sprintf("resource_spans[%d].scope_spans[%d].spans[%d] (span %x)", ri, si, pi, sp.GetSpanId()), msg)
					continue
				}
				b.Events = append(b.Events, ev)
			}
		}
	}
}

// validID reports whether id has n bytes, not all zero (the conventions'
// invalid id).
func validID(id []byte, n int) bool {
	if len(id) != n {
		return false
	}
	for _, c := range id {
		if c != 0 {
			return true
		}
	}
	return false
}

// unixNano converts an OTLP time; 0 and times past 2262 are not times.
func unixNano(ns uint64) (time.Time, bool) {
	if ns == 0 || ns > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)).UTC(), true
}

func (m *Mapper) span(sp *tracepb.Span, res resource, org, env string) (apimeter.Event, string) {
	ev := apimeter.Event{Org: org, Env: env, Direction: apimeter.Incoming, APIName: res.service, APIVersion: res.version, Weight: 1}
	c := &m.call
	c.reset()
	for _, kv := range sp.GetAttributes() {
		c.add(kv)
	}
	if !c.isHTTP() {
		return ev, "a SERVER span without HTTP attributes (neither http.request.method nor http.method): not an HTTP call"
	}
	tid, sid := sp.GetTraceId(), sp.GetSpanId()
	if !validID(tid, 16) {
		return ev, "trace_id must be 16 bytes (32 hex digits in JSON), not all zero"
	}
	if !validID(sid, 8) {
		return ev, "span_id must be 8 bytes (16 hex digits in JSON), not all zero"
	}
	start, ok := unixNano(sp.GetStartTimeUnixNano())
	if !ok {
		return ev, "start_time_unix_nano is missing or out of range"
	}
	end := start
	if ns := sp.GetEndTimeUnixNano(); ns != 0 {
		if end, ok = unixNano(ns); !ok {
			return ev, "end_time_unix_nano is out of range"
		}
		if end.Before(start) {
			return ev, "end_time_unix_nano is before start_time_unix_nano"
		}
	}
	if c.tooManyHeaders {
		return ev, fmt.Sprintf("more than %d captured header values", maxHeaders)
	}
	if msg := c.fill(&ev); msg != "" {
		return ev, msg
	}
	if ev.Route == "" {
		ev.Route = routeFromName(sp.GetName(), ev.Method, ev.Path)
	}
	ev.RequestTime, ev.ResponseTime = start, end
	ev.LatencyMs = float64(end.Sub(start).Microseconds()) / 1000
	ev.ID = eventID(tid, sid)
	ev.Metadata = m.metadata(tid, sid)
	return ev, ""
}

// eventID is the id of the call a span (or a log record inside it) stands
// for: the trace id and the span id in hex. An exporter's retry carries the
// same ids, so the call is stored once.
func eventID(tid, sid []byte) string {
	var b [48]byte
	hex.Encode(b[:32], tid)
	hex.Encode(b[32:], sid)
	return string(b[:])
}

// metadata keeps the trace and span ids with the call, for drill-down
// from a call to its trace.
func (m *Mapper) metadata(tid, sid []byte) []byte {
	b := m.meta[:0]
	b = append(b, `{"otel":{"trace_id":"`...)
	b = hex.AppendEncode(b, tid)
	b = append(b, `","span_id":"`...)
	b = hex.AppendEncode(b, sid)
	b = append(b, `"}}`...)
	m.meta = b
	return append([]byte(nil), b...)
}

// Logs maps the log records of req that describe HTTP calls (access logs
// with HTTP attributes, on the record or in a map body) to events of
// (org, env). Records without HTTP attributes are ordinary logs: counted in
// Ignored[0], not rejected.
func (m *Mapper) Logs(req *collogspb.ExportLogsServiceRequest, org, env string, b *Batch) {
	for ri, rl := range req.GetResourceLogs() {
		res := readResource(rl.GetResource())
		for si, sl := range rl.GetScopeLogs() {
			for li, lr := range sl.GetLogRecords() {
				ev, msg, isHTTP := m.logRecord(lr, res, org, env)
				if !isHTTP {
					b.Ignored[0]++
					continue
				}
				if msg == "" && m.Check != nil {
					if err := m.Check(&ev); err != nil {
						msg = err.Error()
					}
				}
				if msg != "" {
					b.reject(fmt.Sprintf("resource_logs[%d].scope_logs[%d].log_records[%d]", ri, si, li), msg)
					continue
				}
				b.Events = append(b.Events, ev)
			}
		}
	}
}

func (m *Mapper) logRecord(lr *logspb.LogRecord, res resource, org, env string) (apimeter.Event, string, bool) {
	ev := apimeter.Event{Org: org, Env: env, Direction: apimeter.Incoming, APIName: res.service, APIVersion: res.version, Weight: 1}
	c := &m.call
	c.reset()
	for _, kv := range lr.GetAttributes() {
		c.add(kv)
	}
	// Structured access logs often carry the fields in a map body; the
	// record's own attributes win where both name a value.
	if kvs := lr.GetBody().GetKvlistValue(); kvs != nil {
		for _, kv := range kvs.GetValues() {
			c.add(kv)
		}
	}
	if !c.isHTTP() {
		return ev, "", false
	}
	t, ok := unixNano(lr.GetTimeUnixNano())
	if !ok {
		if t, ok = unixNano(lr.GetObservedTimeUnixNano()); !ok {
			return ev, "neither time_unix_nano nor observed_time_unix_nano is set", true
		}
	}
	if c.tooManyHeaders {
		return ev, fmt.Sprintf("more than %d captured header values", maxHeaders), true
	}
	if msg := c.fill(&ev); msg != "" {
		return ev, msg, true
	}
	// An access log is written when the response is done; the duration,
	// when given, says when the request came.
	ev.ResponseTime, ev.RequestTime = t, t
	if d := c.durationSec; d > 0 && d < 1e6 {
		ev.RequestTime = t.Add(-time.Duration(d * float64(time.Second)))
		ev.LatencyMs = d * 1000
	}
	tid, sid := lr.GetTraceId(), lr.GetSpanId()
	if validID(tid, 16) && validID(sid, 8) {
		// The same id as the SERVER span of the call: a service that
		// exports both its spans and its access logs is counted once.
		ev.ID = eventID(tid, sid)
		ev.Metadata = m.metadata(tid, sid)
	} else {
		ev.ID = logID(lr, res)
	}
	return ev, "", true
}

// logID is the id of a log record that names no span: a hash of the record
// as encoded deterministically, with its service, so that a retried export
// is stored once.
func logID(lr *logspb.LogRecord, res resource) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(lr)
	h := xxh3.New()
	h.WriteString(res.service)
	h.Write([]byte{0})
	h.Write(b)
	sum := h.Sum128().Bytes()
	return "log-" + hex.EncodeToString(sum[:])
}
