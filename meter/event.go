package meter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one usage event: a CloudEvent of (Org, Env), identified by
// (Source, ID). Its data is kept as sent (compacted) and, for the meters'
// JSONPaths, flattened: every leaf of the data object reachable by a path
// of object keys ($.a.b) is one entry of Keys ("a.b"), with its text in
// Str and its number in Num (NaN when it is not a number).
type Event struct {
	Org, Env string
	ID       string
	Source   string
	Type     string
	Subject  string
	Time     time.Time
	Data     []byte // a JSON object, compacted
	Keys     []string
	Str      []string
	Num      []float64
}

// Limits bound what one ingest request may hold; the zero value of each
// field means its Default.
type Limits struct {
	// MaxEvents is the most events in one batch (the collector's
	// --max-batch-events).
	MaxEvents int
	// MaxDataBytes is the most bytes of one event's data, as sent (the
	// collector's cap on metadata).
	MaxDataBytes int
	// MaxDepth is the deepest nesting of objects and arrays in data (the
	// collector's decoder's).
	MaxDepth int
	// MaxFieldBytes caps id, source, type and subject.
	MaxFieldBytes int
}

// Defaults of Limits.
const (
	DefaultMaxEvents     = 10000
	DefaultMaxDataBytes  = 64 << 10
	DefaultMaxDepth      = 1000
	DefaultMaxFieldBytes = 1024
)

func (l Limits) withDefaults() Limits {
	if l.MaxEvents <= 0 {
		l.MaxEvents = DefaultMaxEvents
	}
	if l.MaxDataBytes <= 0 {
		l.MaxDataBytes = DefaultMaxDataBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxFieldBytes <= 0 {
		l.MaxFieldBytes = DefaultMaxFieldBytes
	}
	return l
}

// EventError says what is wrong with one event of a request: Index is its
// position in the batch (0 for a single event), Field the CloudEvents
// attribute ("" for the event as a whole).
type EventError struct {
	Index   int
	Field   string
	Message string
	// TooLarge marks a limit that was passed (413), not a malformed event.
	TooLarge bool
}

func (e *EventError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("event %d: %s", e.Index, e.Message)
	}
	return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Message)
}

// Content types of POST /api/v1/events.
const (
	ContentTypeEvent = "application/cloudevents+json"
	ContentTypeBatch = "application/cloudevents-batch+json"
	ContentTypeJSON  = "application/json"
)

// ErrContentType is returned by Decode for a content type it does not read.
var ErrContentType = errors.New("Content-Type must be application/cloudevents+json, application/cloudevents-batch+json or application/json")

// minTime is the earliest event time taken: windows are computed with
// integer division of epoch milliseconds plus a zone offset, which must
// stay positive for both engines to agree.
var minTime = time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)

// maxTime is the latest event time taken.
var maxTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// wireEvent is a CloudEvent in JSON (the structured content mode).
type wireEvent struct {
	// An absent attribute and an empty one are alike: both missing.
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// Decode reads the body of POST /api/v1/events: one CloudEvent
// (application/cloudevents+json), an array of them
// (application/cloudevents-batch+json), or either as application/json.
// Events without a time get now. A bad event fails the whole request with
// an *EventError naming its index and field; nothing of it is stored.
func Decode(contentType string, body []byte, org, env string, now time.Time, lim Limits) ([]Event, error) {
	lim = lim.withDefaults()
	mt := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	body = bytes.TrimSpace(body)
	isArray := len(body) > 0 && body[0] == '['
	switch mt {
	case ContentTypeBatch:
		if !isArray {
			return nil, &EventError{Message: "a batch (application/cloudevents-batch+json) must be a JSON array of events"}
		}
	case ContentTypeEvent:
		if isArray {
			return nil, &EventError{Message: "a single event (application/cloudevents+json) must be a JSON object; send arrays as application/cloudevents-batch+json"}
		}
	case ContentTypeJSON, "":
	default:
		return nil, ErrContentType
	}
	if len(body) == 0 {
		return nil, &EventError{Message: "the body is empty"}
	}
	var ws []wireEvent
	if isArray {
		if err := json.Unmarshal(body, &ws); err != nil {
			// Decoded again one event at a time, to name the event.
			var raws []json.RawMessage
			if err := json.Unmarshal(body, &raws); err != nil {
				return nil, &EventError{Message: "malformed JSON: " + jsonErr(err)}
			}
			for i, raw := range raws {
				if _, err := decodeObject(raw, i); err != nil {
					return nil, err
				}
			}
			return nil, &EventError{Message: "malformed JSON: " + jsonErr(err)}
		}
		if len(ws) == 0 {
			return nil, &EventError{Message: "the batch holds no events"}
		}
		if len(ws) > lim.MaxEvents {
			return nil, &EventError{Index: lim.MaxEvents, Message: fmt.Sprintf("a batch may hold at most %d events", lim.MaxEvents), TooLarge: true}
		}
	} else {
		w, err := decodeObject(body, 0)
		if err != nil {
			return nil, err
		}
		ws = []wireEvent{w}
	}
	out := make([]Event, len(ws))
	var f flattener
	for i := range ws {
		if err := decodeOne(&ws[i], i, &out[i], &f, now, lim); err != nil {
			return nil, err
		}
		out[i].Org, out[i].Env = org, env
	}
	return out, nil
}

// decodeObject decodes one event of a request, naming it (index i) in its
// errors.
func decodeObject(raw []byte, i int) (wireEvent, error) {
	var w wireEvent
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return w, &EventError{Index: i, Message: "must be a JSON object (a CloudEvent)"}
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return w, &EventError{Index: i, Field: te.Field, Message: "must be a string, got JSON " + te.Value}
		}
		return w, &EventError{Index: i, Message: "malformed JSON: " + jsonErr(err)}
	}
	return w, nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	return err.Error()
}

func decodeOne(w *wireEvent, i int, e *Event, f *flattener, now time.Time, lim Limits) error {
	str := func(field string, v string, required bool) (string, error) {
		if v == "" {
			if required {
				return "", &EventError{Index: i, Field: field, Message: "required"}
			}
			return "", nil
		}
		if len(v) > lim.MaxFieldBytes {
			return "", &EventError{Index: i, Field: field, Message: fmt.Sprintf("longer than %d bytes", lim.MaxFieldBytes), TooLarge: true}
		}
		if !utf8.ValidString(v) {
			return "", &EventError{Index: i, Field: field, Message: "not valid UTF-8"}
		}
		return v, nil
	}
	sv, err := str("specversion", w.SpecVersion, true)
	if err != nil {
		return err
	}
	if sv != "1.0" {
		return &EventError{Index: i, Field: "specversion", Message: fmt.Sprintf("must be \"1.0\", got %q", sv)}
	}
	if e.ID, err = str("id", w.ID, true); err != nil {
		return err
	}
	if e.Source, err = str("source", w.Source, true); err != nil {
		return err
	}
	if e.Type, err = str("type", w.Type, true); err != nil {
		return err
	}
	if e.Subject, err = str("subject", w.Subject, true); err != nil {
		return err
	}
	if e.Type == CallType {
		return &EventError{Index: i, Field: "type", Message: fmt.Sprintf("%q is the type of the API calls apimeter records itself; name your events otherwise", CallType)}
	}
	e.Time = now.UTC()
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return &EventError{Index: i, Field: "time", Message: fmt.Sprintf("must be an RFC 3339 time (2026-11-10T12:00:00Z), got %q", w.Time)}
		}
		e.Time = t.UTC()
	}
	if e.Time.Before(minTime) || !e.Time.Before(maxTime) {
		return &EventError{Index: i, Field: "time", Message: "must be between 1970-01-02 and 9999-01-01"}
	}
	if w.DataContentType != "" {
		ct := strings.ToLower(strings.TrimSpace(w.DataContentType))
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = strings.TrimSpace(ct[:i])
		}
		if ct != "application/json" && !strings.HasSuffix(ct, "+json") {
			return &EventError{Index: i, Field: "datacontenttype", Message: fmt.Sprintf("must be application/json, got %q", w.DataContentType)}
		}
	}
	data := bytes.TrimSpace(w.Data)
	if len(data) > lim.MaxDataBytes {
		return &EventError{Index: i, Field: "data", Message: fmt.Sprintf("longer than %d bytes", lim.MaxDataBytes), TooLarge: true}
	}
	if len(data) == 0 || string(data) == "null" {
		data = []byte("{}")
	}
	if data[0] != '{' {
		return &EventError{Index: i, Field: "data", Message: "must be a JSON object"}
	}
	if err := f.flatten(data, lim.MaxDepth, e); err != nil {
		return &EventError{Index: i, Field: "data", Message: err.Error()}
	}
	return nil
}

// flattener turns a data object into Event's Keys, Str and Num, and
// compacts it, in one pass. Its input is valid JSON (encoding/json checked
// it while decoding the event). The events of a batch share its buffers:
// each event's slices are windows of them, never written again.
type flattener struct {
	b     []byte // the data being read
	i     int
	out   []byte // compacted data of the batch so far
	path  []byte
	max   int
	keys  []string
	strs  []string
	nums  []float64
	first int // of this event's leaves in keys
	index map[string]int
}

var errDepth = errors.New("nested too deeply")

func (f *flattener) flatten(data []byte, maxDepth int, e *Event) error {
	f.b, f.i, f.max = data, 0, maxDepth
	f.path = f.path[:0]
	f.first = len(f.keys)
	clear(f.index)
	if f.index == nil {
		f.index = map[string]int{}
	}
	start := len(f.out)
	f.ws()
	if err := f.object(1, true); err != nil {
		if errors.Is(err, errDepth) {
			return fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
		return err
	}
	e.Data = f.out[start:len(f.out):len(f.out)]
	n := len(f.keys)
	e.Keys, e.Str, e.Num = f.keys[f.first:n:n], f.strs[f.first:n:n], f.nums[f.first:n:n]
	return nil
}

func (f *flattener) ws() {
	for f.i < len(f.b) {
		switch f.b[f.i] {
		case ' ', '\t', '\n', '\r':
			f.i++
		default:
			return
		}
	}
}

var errSyntax = errors.New("malformed JSON")

func (f *flattener) expect(c byte) error {
	f.ws()
	if f.i >= len(f.b) || f.b[f.i] != c {
		return errSyntax
	}
	f.out = append(f.out, c)
	f.i++
	f.ws()
	return nil
}

// object reads an object at f.i, its path in f.path; addressable says its
// members have paths in $.a.b.
func (f *flattener) object(depth int, addressable bool) error {
	if depth > f.max {
		return errDepth
	}
	if err := f.expect('{'); err != nil {
		return err
	}
	if f.i < len(f.b) && f.b[f.i] == '}' {
		f.out = append(f.out, '}')
		f.i++
		return nil
	}
	base := len(f.path)
	for {
		key, err := f.str()
		if err != nil {
			return err
		}
		if err := f.expect(':'); err != nil {
			return err
		}
		// A key with a dot cannot be told from a nested path in $.a.b
		// (the subset of JSONPath meters take): its value is kept in
		// Data but has no path.
		f.path = f.path[:base]
		if base > 0 {
			f.path = append(f.path, '.')
		}
		f.path = append(f.path, key...)
		if err := f.value(depth, addressable && !strings.Contains(key, ".")); err != nil {
			return err
		}
		f.ws()
		if f.i >= len(f.b) {
			return errSyntax
		}
		if f.b[f.i] == '}' {
			f.out = append(f.out, '}')
			f.i++
			f.path = f.path[:base]
			return nil
		}
		if err := f.expect(','); err != nil {
			return err
		}
	}
}

func (f *flattener) array(depth int) error {
	if depth > f.max {
		return errDepth
	}
	if err := f.expect('['); err != nil {
		return err
	}
	if f.i < len(f.b) && f.b[f.i] == ']' {
		f.out = append(f.out, ']')
		f.i++
		return nil
	}
	for {
		// Arrays have no path in $.a.b: their values are kept, not
		// flattened.
		if err := f.value(depth, false); err != nil {
			return err
		}
		f.ws()
		if f.i >= len(f.b) {
			return errSyntax
		}
		if f.b[f.i] == ']' {
			f.out = append(f.out, ']')
			f.i++
			return nil
		}
		if err := f.expect(','); err != nil {
			return err
		}
	}
}

// str reads a string token, copies it to out and returns its value.
func (f *flattener) str() (string, error) {
	if f.i >= len(f.b) || f.b[f.i] != '"' {
		return "", errSyntax
	}
	start, esc := f.i, false
	f.i++
	for f.i < len(f.b) {
		switch f.b[f.i] {
		case '\\':
			esc = true
			f.i += 2
			continue
		case '"':
			f.i++
			tok := f.b[start:f.i]
			f.out = append(f.out, tok...)
			if !esc {
				return string(tok[1 : len(tok)-1]), nil
			}
			var s string
			if err := json.Unmarshal(tok, &s); err != nil {
				return "", errSyntax
			}
			return s, nil
		}
		f.i++
	}
	return "", errSyntax
}

func (f *flattener) value(depth int, addressable bool) error {
	f.ws()
	if f.i >= len(f.b) {
		return errSyntax
	}
	switch c := f.b[f.i]; {
	case c == '{':
		return f.object(depth+1, addressable)
	case c == '[':
		return f.array(depth + 1)
	case c == '"':
		s, err := f.str()
		if err != nil {
			return err
		}
		if addressable {
			n := math.NaN()
			if isJSONNumber(s) {
				if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(v, 0) {
					n = v
				}
			}
			f.leaf(s, n)
		}
		return nil
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(f.b)-f.i >= len(lit) && string(f.b[f.i:f.i+len(lit)]) == lit {
				f.out = append(f.out, lit...)
				f.i += len(lit)
				if addressable && lit != "null" { // null: as if absent
					f.leaf(lit, math.NaN())
				}
				return nil
			}
		}
		return errSyntax
	default:
		start := f.i
		for f.i < len(f.b) && strings.IndexByte("-+.eE0123456789", f.b[f.i]) >= 0 {
			f.i++
		}
		tok := f.b[start:f.i]
		if len(tok) == 0 {
			return errSyntax
		}
		f.out = append(f.out, tok...)
		if addressable {
			n, err := strconv.ParseFloat(string(tok), 64)
			if err != nil || math.IsInf(n, 0) {
				n = math.NaN()
			}
			f.leaf(string(tok), n)
		}
		return nil
	}
}

// leaf records the value at f.path; a key repeated in an object keeps its
// last value, as JSON decoders do.
func (f *flattener) leaf(s string, n float64) {
	if i, ok := f.index[string(f.path)]; ok {
		f.strs[i], f.nums[i] = s, n
		return
	}
	p := string(f.path)
	f.index[p] = len(f.keys)
	f.keys = append(f.keys, p)
	f.strs = append(f.strs, s)
	f.nums = append(f.nums, n)
}

// isJSONNumber reports whether s is a number as JSON writes one: what a
// numeric string in data must look like to count as a value (OpenMeter
// takes numbers sent as strings too). "NaN", "Inf", "1e", "+1" and " 1"
// are not.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
