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
	SpecVersion     *string         `json:"specversion"`
	ID              *string         `json:"id"`
	Source          *string         `json:"source"`
	Type            *string         `json:"type"`
	Subject         *string         `json:"subject"`
	Time            *string         `json:"time"`
	DataContentType *string         `json:"datacontenttype"`
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
	var raws []json.RawMessage
	if isArray {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, &EventError{Message: "malformed JSON: " + jsonErr(err)}
		}
		if len(raws) == 0 {
			return nil, &EventError{Message: "the batch holds no events"}
		}
		if len(raws) > lim.MaxEvents {
			return nil, &EventError{Index: lim.MaxEvents, Message: fmt.Sprintf("a batch may hold at most %d events", lim.MaxEvents), TooLarge: true}
		}
	} else {
		raws = []json.RawMessage{body}
	}
	out := make([]Event, len(raws))
	var f flattener
	for i, raw := range raws {
		if err := decodeOne(raw, i, &out[i], &f, now, lim); err != nil {
			return nil, err
		}
		out[i].Org, out[i].Env = org, env
	}
	return out, nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	return err.Error()
}

func decodeOne(raw []byte, i int, e *Event, f *flattener, now time.Time, lim Limits) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return &EventError{Index: i, Message: "must be a JSON object (a CloudEvent)"}
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &EventError{Index: i, Field: te.Field, Message: "must be a string, got JSON " + te.Value}
		}
		return &EventError{Index: i, Message: "malformed JSON: " + jsonErr(err)}
	}
	str := func(field string, v *string, required bool) (string, error) {
		if v == nil || *v == "" {
			if required {
				return "", &EventError{Index: i, Field: field, Message: "required"}
			}
			return "", nil
		}
		if len(*v) > lim.MaxFieldBytes {
			return "", &EventError{Index: i, Field: field, Message: fmt.Sprintf("longer than %d bytes", lim.MaxFieldBytes), TooLarge: true}
		}
		if !utf8.ValidString(*v) {
			return "", &EventError{Index: i, Field: field, Message: "not valid UTF-8"}
		}
		return *v, nil
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
	if w.Time != nil {
		t, err := time.Parse(time.RFC3339Nano, *w.Time)
		if err != nil {
			return &EventError{Index: i, Field: "time", Message: fmt.Sprintf("must be an RFC 3339 time (2026-11-10T12:00:00Z), got %q", *w.Time)}
		}
		e.Time = t.UTC()
	}
	if e.Time.Before(minTime) || !e.Time.Before(maxTime) {
		return &EventError{Index: i, Field: "time", Message: "must be between 1970-01-02 and 9999-01-01"}
	}
	if w.DataContentType != nil && *w.DataContentType != "" {
		ct := strings.ToLower(strings.TrimSpace(*w.DataContentType))
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = strings.TrimSpace(ct[:i])
		}
		if ct != "application/json" && !strings.HasSuffix(ct, "+json") {
			return &EventError{Index: i, Field: "datacontenttype", Message: fmt.Sprintf("must be application/json, got %q", *w.DataContentType)}
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

// flattener turns a data object into Event's Keys, Str and Num.
type flattener struct {
	compact bytes.Buffer
	path    []byte
	index   map[string]int
}

var errDepth = errors.New("nested too deeply")

func (f *flattener) flatten(data []byte, maxDepth int, e *Event) error {
	f.compact.Reset()
	if err := json.Compact(&f.compact, data); err != nil {
		return errors.New("malformed JSON: " + jsonErr(err))
	}
	e.Data = bytes.Clone(f.compact.Bytes())
	e.Keys, e.Str, e.Num = nil, nil, nil
	clear(f.index)
	if f.index == nil {
		f.index = map[string]int{}
	}
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	f.path = f.path[:0]
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	if err := f.object(dec, 1, maxDepth, e); err != nil {
		if errors.Is(err, errDepth) {
			return fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
		return err
	}
	return nil
}

// object reads the members of an object whose '{' was read, the path of
// the object in f.path.
func (f *flattener) object(dec *json.Decoder, depth, maxDepth int, e *Event) error {
	if depth > maxDepth {
		return errDepth
	}
	base := len(f.path)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		// A key with a dot cannot be told from a nested path in $.a.b
		// (the subset of JSONPath meters take): its value is kept in
		// Data but has no path.
		addressable := !strings.Contains(key, ".")
		f.path = f.path[:base]
		if base > 0 {
			f.path = append(f.path, '.')
		}
		f.path = append(f.path, key...)
		if err := f.value(dec, depth, maxDepth, addressable, e); err != nil {
			return err
		}
	}
	f.path = f.path[:base]
	_, err := dec.Token() // }
	return err
}

func (f *flattener) value(dec *json.Decoder, depth, maxDepth int, addressable bool, e *Event) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			if !addressable {
				return f.skip(dec, depth+1, maxDepth)
			}
			return f.object(dec, depth+1, maxDepth, e)
		}
		// Arrays have no path in $.a.b: skipped.
		return f.skipArray(dec, depth+1, maxDepth)
	case string:
		if addressable {
			n := math.NaN()
			if isJSONNumber(v) {
				n, _ = strconv.ParseFloat(v, 64)
			}
			f.leaf(string(f.path), v, n, e)
		}
	case json.Number:
		if addressable {
			n, err := strconv.ParseFloat(string(v), 64)
			if err != nil || math.IsInf(n, 0) {
				n = math.NaN()
			}
			f.leaf(string(f.path), string(v), n, e)
		}
	case bool:
		if addressable {
			f.leaf(string(f.path), strconv.FormatBool(v), math.NaN(), e)
		}
	case nil:
		// null: as if absent.
	}
	return nil
}

// leaf records one path; a key repeated in an object keeps its last value,
// as JSON decoders do.
func (f *flattener) leaf(path, s string, n float64, e *Event) {
	if i, ok := f.index[path]; ok {
		e.Str[i], e.Num[i] = s, n
		return
	}
	f.index[path] = len(e.Keys)
	e.Keys = append(e.Keys, path)
	e.Str = append(e.Str, s)
	e.Num = append(e.Num, n)
}

func (f *flattener) skipArray(dec *json.Decoder, depth, maxDepth int) error {
	if depth > maxDepth {
		return errDepth
	}
	for dec.More() {
		if err := f.skipValue(dec, depth, maxDepth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // ]
	return err
}

func (f *flattener) skip(dec *json.Decoder, depth, maxDepth int) error {
	if depth > maxDepth {
		return errDepth
	}
	for dec.More() {
		if _, err := dec.Token(); err != nil { // key
			return err
		}
		if err := f.skipValue(dec, depth, maxDepth); err != nil {
			return err
		}
	}
	_, err := dec.Token() // }
	return err
}

func (f *flattener) skipValue(dec *json.Decoder, depth, maxDepth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); ok {
		if d == '{' {
			return f.skip(dec, depth+1, maxDepth)
		}
		return f.skipArray(dec, depth+1, maxDepth)
	}
	return nil
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
