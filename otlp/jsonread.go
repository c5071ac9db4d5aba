package otlp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/apimeter/apimeter/internal/jsontext"
)

// jsonReader reads OTLP/JSON into the official protobuf types, one pass
// over the text with no reflection: protojson spends four to five times
// what protobuf decoding does on the same export, most of it in reflection
// and in a token per value.
//
// It reads what OTLP/JSON senders write: field names in lowerCamelCase or
// as in the proto, trace and span ids in hex, 64-bit integers as strings
// or numbers, enums as numbers or names, unknown fields skipped. Anything
// else it gives up on (ok false), and the export is decoded by protojson
// instead, which accepts or refuses it and says what is wrong. So it never
// needs to say why, and every input it accepts is one protojson accepts,
// into the same message (FuzzJSONReader checks both).
type jsonReader struct {
	b     []byte
	i     int
	ok    bool
	depth int
}

// maxJSONDepth bounds the nesting read here (attribute values nest);
// deeper exports are left to protojson and its own limit.
const maxJSONDepth = 64

// readTracesJSON reads an OTLP/JSON trace export into req; false means it
// gave up and req holds a part of it.
func readTracesJSON(b []byte, req *coltracepb.ExportTraceServiceRequest) bool {
	r := &jsonReader{b: b, ok: true}
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "resourceSpans", "resource_spans":
			if r.field(&seen, 1) {
				list(r, &req.ResourceSpans, r.resourceSpans)
			}
		default:
			r.skip()
		}
	})
	return r.end()
}

// readLogsJSON is readTracesJSON for log exports.
func readLogsJSON(b []byte, req *collogspb.ExportLogsServiceRequest) bool {
	r := &jsonReader{b: b, ok: true}
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "resourceLogs", "resource_logs":
			if r.field(&seen, 1) {
				list(r, &req.ResourceLogs, r.resourceLogs)
			}
		default:
			r.skip()
		}
	})
	return r.end()
}

func (r *jsonReader) end() bool {
	r.ws()
	return r.ok && r.i == len(r.b)
}

func (r *jsonReader) fail() {
	r.ok = false
	r.i = len(r.b)
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space; 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *jsonReader) literal(s string) bool {
	if bytes.HasPrefix(r.b[r.i:], []byte(s)) {
		r.i += len(s)
		return true
	}
	r.fail()
	return false
}

// field marks a known field as read: a field named twice (even once in
// each spelling) is left to protojson, which refuses it. It reports
// whether a value follows: null leaves the field unset, as in protojson.
func (r *jsonReader) field(seen *uint32, bit uint32) bool {
	if *seen&bit != 0 {
		r.fail()
		return false
	}
	*seen |= bit
	if r.peek() == 'n' {
		r.literal("null")
		return false
	}
	return r.ok
}

// object reads an object, calling member for each key with the reader
// at the value, which member must read (or skip).
func (r *jsonReader) object(member func(key []byte)) {
	if !r.open('{') {
		return
	}
	for n := 0; r.more(n, '}'); n++ {
		key := r.key()
		if !r.ok {
			return
		}
		member(key)
	}
}

// array reads an array, calling elem for each element.
func (r *jsonReader) array(elem func()) {
	if !r.open('[') {
		return
	}
	for n := 0; r.more(n, ']'); n++ {
		elem()
	}
}

func (r *jsonReader) open(c byte) bool {
	if r.peek() != c || r.depth >= maxJSONDepth {
		r.fail()
		return false
	}
	r.i++
	r.depth++
	return true
}

// more reports whether another member or element follows, n having been
// read; it reads the separator, or the closing bracket at the end.
func (r *jsonReader) more(n int, closing byte) bool {
	c := r.peek()
	if !r.ok {
		return false
	}
	if c == closing {
		r.i++
		r.depth--
		return false
	}
	if n == 0 {
		return true
	}
	if c != ',' {
		r.fail()
		return false
	}
	r.i++
	return true
}

// key reads a member's name and its colon. Names with escapes or outside
// ASCII name no OTLP field; they are left to protojson.
func (r *jsonReader) key() []byte {
	if r.peek() != '"' {
		r.fail()
		return nil
	}
	start := r.i + 1
	j := start
	for ; j < len(r.b); j++ {
		c := r.b[j]
		if c == '"' {
			break
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			r.fail()
			return nil
		}
	}
	if j >= len(r.b) {
		r.fail()
		return nil
	}
	r.i = j + 1
	if r.peek() != ':' {
		r.fail()
		return nil
	}
	r.i++
	return r.b[start:j]
}

// str reads a string.
func (r *jsonReader) str() string {
	raw, escaped := r.strRaw()
	if !r.ok {
		return ""
	}
	if !escaped {
		return string(raw)
	}
	var s string
	if err := json.Unmarshal(r.b[r.i-len(raw)-2:r.i], &s); err != nil {
		r.fail()
	}
	return s
}

// strRaw reads a string and returns its text between the quotes, and
// whether it holds escapes. Strings protojson refuses or reads otherwise
// than encoding/json are left to protojson: invalid UTF-8 and \u escapes
// of surrogates, which encoding/json turns into U+FFFD.
func (r *jsonReader) strRaw() (raw []byte, escaped bool) {
	if r.peek() != '"' {
		r.fail()
		return nil, false
	}
	start := r.i + 1
	ascii := true
	j := start
	for {
		j = jsontext.PlainRun(r.b, j)
		if j >= len(r.b) {
			r.fail()
			return nil, false
		}
		switch c := r.b[j]; {
		case c == '"':
			raw = r.b[start:j]
			if (!ascii && !utf8.Valid(raw)) ||
				(escaped && (bytes.Contains(raw, []byte(`\ud`)) || bytes.Contains(raw, []byte(`\uD`)))) {
				r.fail()
				return nil, false
			}
			r.i = j + 1
			return raw, escaped
		case c == '\\':
			escaped = true
			j += 2
		case c < 0x20:
			r.fail()
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
			j++
		default:
			j++ // PlainRun stops short of the end on plain bytes
		}
	}
}

// digits reads a JSON integer's digits at r.i (no sign): none, or a
// leading zero before more digits, is not a JSON number.
func (r *jsonReader) digits(limit uint64) (uint64, bool) {
	b, j := r.b, r.i
	var n uint64
	for ; j < len(b) && b[j]-'0' <= 9; j++ {
		d := uint64(b[j] - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if j == r.i || (b[r.i] == '0' && j-r.i > 1) {
		return 0, false
	}
	r.i = j
	return n, true
}

// integer reads a whole number up to limit in magnitude (-limit-1 when
// signed), as a JSON number or a string holding one, as OTLP/JSON writes
// 64-bit integers. Fractions and exponents, which protojson takes when
// they make a whole number, are left to it.
func (r *jsonReader) integer(limit uint64, signed bool) (uint64, bool) {
	quoted := r.peek() == '"'
	if quoted {
		r.i++
	}
	neg := signed && r.i < len(r.b) && r.b[r.i] == '-'
	if neg {
		r.i++
		limit++
	}
	n, ok := r.digits(limit)
	switch {
	case !ok:
	case quoted:
		ok = r.i < len(r.b) && r.b[r.i] == '"'
		r.i++
	default:
		ok = r.i == len(r.b) || (r.b[r.i] != '.' && r.b[r.i] != 'e' && r.b[r.i] != 'E')
	}
	if !ok {
		r.fail()
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func (r *jsonReader) uint64() uint64 {
	n, _ := r.integer(math.MaxUint64, false)
	return n
}

func (r *jsonReader) uint32() uint32 {
	n, _ := r.integer(math.MaxUint32, false)
	return uint32(n)
}

func (r *jsonReader) int64() int64 {
	n, _ := r.integer(math.MaxInt64, true)
	return int64(n)
}

func (r *jsonReader) int32() int32 {
	n, _ := r.integer(math.MaxInt32, true)
	return int32(n)
}

// enum reads an enum: its number (a JSON number), or its name in names.
// Unknown names (a number in a string is one), which protojson skips, are
// left to it.
func (r *jsonReader) enum(names map[string]int32) int32 {
	if r.peek() != '"' {
		return r.int32()
	}
	v, ok := names[r.str()]
	if !ok {
		r.fail()
	}
	return v
}

// number reads a JSON number's text, checking its grammar.
func (r *jsonReader) number() []byte {
	r.ws()
	start := r.i
	if r.i < len(r.b) && r.b[r.i] == '-' {
		r.i++
	}
	if _, ok := r.digitsAny(); !ok {
		r.fail()
		return nil
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if !r.plainDigits() {
			return nil
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if !r.plainDigits() {
			return nil
		}
	}
	return r.b[start:r.i]
}

// digitsAny reads an integer part of any length.
func (r *jsonReader) digitsAny() (int, bool) {
	start := r.i
	for r.i < len(r.b) && r.b[r.i]-'0' <= 9 {
		r.i++
	}
	n := r.i - start
	return n, n > 0 && (r.b[start] != '0' || n == 1)
}

func (r *jsonReader) plainDigits() bool {
	start := r.i
	for r.i < len(r.b) && r.b[r.i]-'0' <= 9 {
		r.i++
	}
	if r.i == start {
		r.fail()
		return false
	}
	return true
}

// double reads a JSON number as a float64; strings ("NaN", "Infinity" or
// a number in a string) are left to protojson, as are numbers out of range.
func (r *jsonReader) double() float64 {
	t := r.number()
	if !r.ok {
		return 0
	}
	f, err := strconv.ParseFloat(string(t), 64)
	if err != nil {
		r.fail()
	}
	return f
}

func (r *jsonReader) boolean() bool {
	switch r.peek() {
	case 't':
		return r.literal("true")
	case 'f':
		r.literal("false")
	default:
		r.fail()
	}
	return false
}

// id reads a trace id (n 16) or span id (n 8) in hex, as OTLP/JSON
// writes them; other ids (base64, as the protobuf JSON mapping writes
// bytes) are left to protojson and fixID.
func (r *jsonReader) id(n int) []byte {
	s := r.strBytes()
	if !r.ok || len(s) == 0 {
		return nil
	}
	if len(s) != 2*n {
		r.fail()
		return nil
	}
	id := make([]byte, n)
	if _, err := hex.Decode(id, s); err != nil {
		r.fail()
		return nil
	}
	return id
}

// strBytes reads a string without escapes, returning its text in place.
func (r *jsonReader) strBytes() []byte {
	if r.peek() != '"' {
		r.fail()
		return nil
	}
	start := r.i + 1
	j := bytes.IndexByte(r.b[start:], '"')
	if j < 0 || bytes.IndexByte(r.b[start:start+j], '\\') >= 0 {
		r.fail()
		return nil
	}
	r.i = start + j + 1
	return r.b[start : start+j]
}

// bytesValue reads bytes in base64, standard or URL alphabet, padded or
// not, as protojson does.
func (r *jsonReader) bytesValue() []byte {
	s := r.str()
	if !r.ok {
		return nil
	}
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		r.fail()
	}
	return b
}

// skip reads a value of an unknown field, checking that it is JSON.
func (r *jsonReader) skip() {
	switch r.peek() {
	case '{':
		r.object(func([]byte) { r.skip() })
	case '[':
		r.array(r.skip)
	case '"':
		r.skipString()
	case 't':
		r.literal("true")
	case 'f':
		r.literal("false")
	case 'n':
		r.literal("null")
	default:
		r.number()
	}
}

func (r *jsonReader) skipString() {
	raw, escaped := r.strRaw()
	if r.ok && escaped && !json.Valid(r.b[r.i-len(raw)-2:r.i]) {
		r.fail()
	}
}

// The messages, field by field. Each known field has a bit in seen.

// list reads an array of messages into dst, each read by read.
func list[T any](r *jsonReader, dst *[]*T, read func(*T)) {
	r.array(func() {
		x := new(T)
		read(x)
		*dst = append(*dst, x)
	})
}

// group reads the shape ResourceSpans, ScopeSpans, ResourceLogs and
// ScopeLogs share: a message under head (the resource or the scope), a
// list under one of items, and schemaUrl.
func (r *jsonReader) group(head string, readHead func(), items [2]string, readItems func(), schemaURL *string) {
	var seen uint32
	r.object(func(key []byte) {
		switch {
		case string(key) == head:
			if r.field(&seen, 1) {
				readHead()
			}
		case string(key) == items[0] || string(key) == items[1]:
			if r.field(&seen, 2) {
				readItems()
			}
		case string(key) == "schemaUrl" || string(key) == "schema_url":
			if r.field(&seen, 4) {
				*schemaURL = r.str()
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) keyValues(dst *[]*commonpb.KeyValue) {
	list(r, dst, r.keyValue)
}

func (r *jsonReader) keyValue(kv *commonpb.KeyValue) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "key":
			if r.field(&seen, 1) {
				kv.Key = r.str()
			}
		case "value":
			if r.field(&seen, 2) {
				kv.Value = &commonpb.AnyValue{}
				r.anyValue(kv.Value)
			}
		case "keyStrindex", "key_strindex":
			if r.field(&seen, 4) {
				kv.KeyStrindex = r.int32()
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) anyValue(v *commonpb.AnyValue) {
	var seen uint32
	// set marks the oneof as set: a second member is left to protojson,
	// which refuses it.
	set := func() bool {
		if v.Value != nil {
			r.fail()
			return false
		}
		return true
	}
	r.object(func(key []byte) {
		switch string(key) {
		case "stringValue", "string_value":
			if r.field(&seen, 1) && set() {
				v.Value = &commonpb.AnyValue_StringValue{StringValue: r.str()}
			}
		case "boolValue", "bool_value":
			if r.field(&seen, 2) && set() {
				v.Value = &commonpb.AnyValue_BoolValue{BoolValue: r.boolean()}
			}
		case "intValue", "int_value":
			if r.field(&seen, 4) && set() {
				v.Value = &commonpb.AnyValue_IntValue{IntValue: r.int64()}
			}
		case "doubleValue", "double_value":
			if r.field(&seen, 8) && set() {
				v.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: r.double()}
			}
		case "arrayValue", "array_value":
			if r.field(&seen, 16) && set() {
				arr := &commonpb.ArrayValue{}
				v.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arr}
				var seenArr uint32
				r.object(func(key []byte) {
					if string(key) != "values" {
						r.skip()
					} else if r.field(&seenArr, 1) {
						list(r, &arr.Values, r.anyValue)
					}
				})
			}
		case "kvlistValue", "kvlist_value":
			if r.field(&seen, 32) && set() {
				kvs := &commonpb.KeyValueList{}
				v.Value = &commonpb.AnyValue_KvlistValue{KvlistValue: kvs}
				var seenKvs uint32
				r.object(func(key []byte) {
					if string(key) != "values" {
						r.skip()
					} else if r.field(&seenKvs, 1) {
						r.keyValues(&kvs.Values)
					}
				})
			}
		case "bytesValue", "bytes_value":
			if r.field(&seen, 64) && set() {
				v.Value = &commonpb.AnyValue_BytesValue{BytesValue: r.bytesValue()}
			}
		case "stringValueStrindex", "string_value_strindex":
			if r.field(&seen, 128) && set() {
				v.Value = &commonpb.AnyValue_StringValueStrindex{StringValueStrindex: r.int32()}
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) resource(res *resourcepb.Resource) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "attributes":
			if r.field(&seen, 1) {
				r.keyValues(&res.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 2) {
				res.DroppedAttributesCount = r.uint32()
			}
		case "entityRefs", "entity_refs":
			// Still in development and not used here: left to protojson.
			r.fail()
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) scope(s *commonpb.InstrumentationScope) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "name":
			if r.field(&seen, 1) {
				s.Name = r.str()
			}
		case "version":
			if r.field(&seen, 2) {
				s.Version = r.str()
			}
		case "attributes":
			if r.field(&seen, 4) {
				r.keyValues(&s.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 8) {
				s.DroppedAttributesCount = r.uint32()
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) resourceSpans(rs *tracepb.ResourceSpans) {
	r.group("resource", func() { rs.Resource = &resourcepb.Resource{}; r.resource(rs.Resource) },
		[2]string{"scopeSpans", "scope_spans"}, func() { list(r, &rs.ScopeSpans, r.scopeSpans) }, &rs.SchemaUrl)
}

func (r *jsonReader) scopeSpans(ss *tracepb.ScopeSpans) {
	r.group("scope", func() { ss.Scope = &commonpb.InstrumentationScope{}; r.scope(ss.Scope) },
		[2]string{"spans", "spans"}, func() { list(r, &ss.Spans, r.span) }, &ss.SchemaUrl)
}

func (r *jsonReader) span(sp *tracepb.Span) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "traceId", "trace_id":
			if r.field(&seen, 1<<0) {
				sp.TraceId = r.id(16)
			}
		case "spanId", "span_id":
			if r.field(&seen, 1<<1) {
				sp.SpanId = r.id(8)
			}
		case "traceState", "trace_state":
			if r.field(&seen, 1<<2) {
				sp.TraceState = r.str()
			}
		case "parentSpanId", "parent_span_id":
			if r.field(&seen, 1<<3) {
				sp.ParentSpanId = r.id(8)
			}
		case "flags":
			if r.field(&seen, 1<<4) {
				sp.Flags = r.uint32()
			}
		case "name":
			if r.field(&seen, 1<<5) {
				sp.Name = r.str()
			}
		case "kind":
			if r.field(&seen, 1<<6) {
				sp.Kind = tracepb.Span_SpanKind(r.enum(tracepb.Span_SpanKind_value))
			}
		case "startTimeUnixNano", "start_time_unix_nano":
			if r.field(&seen, 1<<7) {
				sp.StartTimeUnixNano = r.uint64()
			}
		case "endTimeUnixNano", "end_time_unix_nano":
			if r.field(&seen, 1<<8) {
				sp.EndTimeUnixNano = r.uint64()
			}
		case "attributes":
			if r.field(&seen, 1<<9) {
				r.keyValues(&sp.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 1<<10) {
				sp.DroppedAttributesCount = r.uint32()
			}
		case "events":
			if r.field(&seen, 1<<11) {
				list(r, &sp.Events, r.spanEvent)
			}
		case "droppedEventsCount", "dropped_events_count":
			if r.field(&seen, 1<<12) {
				sp.DroppedEventsCount = r.uint32()
			}
		case "links":
			if r.field(&seen, 1<<13) {
				list(r, &sp.Links, r.spanLink)
			}
		case "droppedLinksCount", "dropped_links_count":
			if r.field(&seen, 1<<14) {
				sp.DroppedLinksCount = r.uint32()
			}
		case "status":
			if r.field(&seen, 1<<15) {
				sp.Status = &tracepb.Status{}
				r.status(sp.Status)
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) spanEvent(ev *tracepb.Span_Event) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "timeUnixNano", "time_unix_nano":
			if r.field(&seen, 1) {
				ev.TimeUnixNano = r.uint64()
			}
		case "name":
			if r.field(&seen, 2) {
				ev.Name = r.str()
			}
		case "attributes":
			if r.field(&seen, 4) {
				r.keyValues(&ev.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 8) {
				ev.DroppedAttributesCount = r.uint32()
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) spanLink(l *tracepb.Span_Link) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "traceId", "trace_id":
			if r.field(&seen, 1) {
				l.TraceId = r.id(16)
			}
		case "spanId", "span_id":
			if r.field(&seen, 2) {
				l.SpanId = r.id(8)
			}
		case "traceState", "trace_state":
			if r.field(&seen, 4) {
				l.TraceState = r.str()
			}
		case "attributes":
			if r.field(&seen, 8) {
				r.keyValues(&l.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 16) {
				l.DroppedAttributesCount = r.uint32()
			}
		case "flags":
			if r.field(&seen, 32) {
				l.Flags = r.uint32()
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) status(s *tracepb.Status) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "message":
			if r.field(&seen, 1) {
				s.Message = r.str()
			}
		case "code":
			if r.field(&seen, 2) {
				s.Code = tracepb.Status_StatusCode(r.enum(tracepb.Status_StatusCode_value))
			}
		default:
			r.skip()
		}
	})
}

func (r *jsonReader) resourceLogs(rl *logspb.ResourceLogs) {
	r.group("resource", func() { rl.Resource = &resourcepb.Resource{}; r.resource(rl.Resource) },
		[2]string{"scopeLogs", "scope_logs"}, func() { list(r, &rl.ScopeLogs, r.scopeLogs) }, &rl.SchemaUrl)
}

func (r *jsonReader) scopeLogs(sl *logspb.ScopeLogs) {
	r.group("scope", func() { sl.Scope = &commonpb.InstrumentationScope{}; r.scope(sl.Scope) },
		[2]string{"logRecords", "log_records"}, func() { list(r, &sl.LogRecords, r.logRecord) }, &sl.SchemaUrl)
}

func (r *jsonReader) logRecord(lr *logspb.LogRecord) {
	var seen uint32
	r.object(func(key []byte) {
		switch string(key) {
		case "timeUnixNano", "time_unix_nano":
			if r.field(&seen, 1<<0) {
				lr.TimeUnixNano = r.uint64()
			}
		case "observedTimeUnixNano", "observed_time_unix_nano":
			if r.field(&seen, 1<<1) {
				lr.ObservedTimeUnixNano = r.uint64()
			}
		case "severityNumber", "severity_number":
			if r.field(&seen, 1<<2) {
				lr.SeverityNumber = logspb.SeverityNumber(r.enum(logspb.SeverityNumber_value))
			}
		case "severityText", "severity_text":
			if r.field(&seen, 1<<3) {
				lr.SeverityText = r.str()
			}
		case "body":
			if r.field(&seen, 1<<4) {
				lr.Body = &commonpb.AnyValue{}
				r.anyValue(lr.Body)
			}
		case "attributes":
			if r.field(&seen, 1<<5) {
				r.keyValues(&lr.Attributes)
			}
		case "droppedAttributesCount", "dropped_attributes_count":
			if r.field(&seen, 1<<6) {
				lr.DroppedAttributesCount = r.uint32()
			}
		case "flags":
			if r.field(&seen, 1<<7) {
				lr.Flags = r.uint32()
			}
		case "traceId", "trace_id":
			if r.field(&seen, 1<<8) {
				lr.TraceId = r.id(16)
			}
		case "spanId", "span_id":
			if r.field(&seen, 1<<9) {
				lr.SpanId = r.id(8)
			}
		case "eventName", "event_name":
			if r.field(&seen, 1<<10) {
				lr.EventName = r.str()
			}
		default:
			r.skip()
		}
	})
}
