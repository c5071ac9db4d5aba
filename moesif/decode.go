package moesif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
)

// errNotFast says the fast decoder met something it leaves to
// encoding/json: malformed JSON, a value of an unexpected type, a key that
// only matches a field ignoring case.
var errNotFast = errors.New("fast decoder: input left to encoding/json")

// Limits bound the memory that decoding one batch may take, whatever its
// JSON holds: without them an array of millions of {} (3 bytes each, and
// a gzip body shrinks them a thousandfold) decodes to gigabytes.
type Limits struct {
	// MaxEvents is the most events a batch may hold; decoding stops at
	// the next one.
	MaxEvents int
	// MaxDecoded bounds the sum of DecodedSize over a batch's events.
	MaxDecoded int64
}

// LimitError says a batch passed one of its Limits. Decoding stopped at
// event Index.
type LimitError struct {
	Index int
	// Events is true when the batch holds more than MaxEvents events, false
	// when it passed MaxDecoded.
	Events bool
	Limit  int64
}

func (e *LimitError) Error() string {
	if e.Events {
		return fmt.Sprintf("a batch may hold at most %d events", e.Limit)
	}
	return fmt.Sprintf("event %d: the batch's events take more than %d bytes decoded", e.Index, e.Limit)
}

// Decoded sizes, as DecodedSize counts them: what an event and a header
// cost in memory beyond the text of their strings (which is no longer than
// the JSON it came from). eventOverhead covers the Event, the Event
// made from it and its row values in the store.
const (
	eventOverhead  = 1024
	headerOverhead = 48
)

// DecodedSize is what apimeter counts against Limits.MaxDecoded for m: a
// fixed cost per event and per header.
func DecodedSize(m *Event) int64 {
	n := len(m.Request.Headers)
	if m.Response != nil {
		n += len(m.Response.Headers)
	}
	return eventOverhead + headerOverhead*int64(n)
}

// Check counts event i of a batch, just decoded, against lim: used
// carries the decoded size of the events before it. It returns a
// *LimitError when the batch passes a limit. DecodeBatch calls it; so must
// any other decoder of batches (the collector's encoding/json path).
func (lim Limits) Check(i int, m *Event, used *int64) error {
	if lim.MaxEvents > 0 && i >= lim.MaxEvents {
		return &LimitError{Index: i, Events: true, Limit: int64(lim.MaxEvents)}
	}
	*used += DecodedSize(m)
	if lim.MaxDecoded > 0 && *used > lim.MaxDecoded {
		return &LimitError{Index: i, Limit: lim.MaxDecoded}
	}
	return nil
}

// DecodeBatch decodes a JSON array of collector events with a decoder
// written for the Moesif event schema: no reflection, one pass. A
// *LimitError means the batch passed lim (decoding stopped there); any
// other error means: decode the batch with encoding/json instead, which
// accepts exactly what the JSON standard and Go's rules accept and says
// what is wrong. When it succeeds, the result is what encoding/json would
// give (FuzzDecodeBatch checks this).
func DecodeBatch(b []byte, lim Limits) ([]Event, error) {
	d := decoder{b: b}
	d.ws()
	if !d.eat('[') {
		return nil, errNotFast
	}
	n := bytes.Count(b, []byte(`"request"`))
	if lim.MaxEvents > 0 && n > lim.MaxEvents {
		n = lim.MaxEvents
	}
	ms := make([]Event, 0, n)
	d.ws()
	if d.eat(']') {
		return ms, d.end()
	}
	var used int64
	for {
		if lim.MaxEvents > 0 && len(ms) >= lim.MaxEvents {
			return nil, &LimitError{Index: len(ms), Events: true, Limit: int64(lim.MaxEvents)}
		}
		ms = append(ms, Event{})
		if err := d.event(&ms[len(ms)-1]); err != nil {
			return nil, err
		}
		if err := lim.Check(len(ms)-1, &ms[len(ms)-1], &used); err != nil {
			return nil, err
		}
		d.ws()
		if d.eat(',') {
			d.ws()
			continue
		}
		if d.eat(']') {
			return ms, d.end()
		}
		return nil, errNotFast
	}
}

type decoder struct {
	b    []byte
	i    int
	strs map[string]string
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\n', '\r', '\t':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return errNotFast
	}
	return nil
}

// object calls field for each key of an object; field reads the value.
func (d *decoder) object(field func(key []byte) error) error {
	d.ws()
	if d.literal("null") {
		return nil
	}
	if !d.eat('{') {
		return errNotFast
	}
	d.ws()
	if d.eat('}') {
		return nil
	}
	for {
		key, err := d.rawKey()
		if err != nil {
			return err
		}
		d.ws()
		if !d.eat(':') {
			return errNotFast
		}
		d.ws()
		if err := field(key); err != nil {
			return err
		}
		d.ws()
		if d.eat(',') {
			d.ws()
			continue
		}
		if d.eat('}') {
			return nil
		}
		return errNotFast
	}
}

// rawKey reads an object key without escapes (keys with escapes go to
// encoding/json).
func (d *decoder) rawKey() ([]byte, error) {
	if !d.eat('"') {
		return nil, errNotFast
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			key := d.b[start:d.i]
			d.i++
			return key, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return nil, errNotFast
		}
		d.i++
	}
	return nil, errNotFast
}

func (d *decoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// str reads a string value into dst; null leaves dst unchanged, as
// encoding/json does.
func (d *decoder) str(dst *string) error {
	if d.literal("null") {
		return nil
	}
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return errNotFast
	}
	start := d.i + 1
	j := start
	plain := true
	for j < len(d.b) {
		// Straight to the next quote, backslash, control or non-ASCII
		// byte, a word or a block at a time.
		if j+8 <= len(d.b) {
			j = jsontext.PlainRun(d.b, j)
		}
		if j >= len(d.b) {
			break
		}
		c := d.b[j]
		if c == '"' {
			break
		}
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			if c == '\\' {
				j++
			}
		} else if c < 0x20 {
			return errNotFast
		}
		j++
	}
	if j >= len(d.b) {
		return errNotFast
	}
	if plain {
		*dst = string(d.b[start:j])
	} else if raw := d.b[start:j]; bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		*dst = string(raw)
	} else if err := json.Unmarshal(d.b[d.i:j+1], dst); err != nil {
		return errNotFast
	}
	d.i = j + 1
	return nil
}

// raw reads any value and returns a copy of its bytes (for RawMessage).
func (d *decoder) raw() (json.RawMessage, error) {
	start := d.i
	if err := d.skip(0); err != nil {
		return nil, err
	}
	return bytes.Clone(d.b[start:d.i]), nil
}

// skip moves past one value, checking its syntax.
func (d *decoder) skip(depth int) error {
	if depth > 1000 {
		return errNotFast
	}
	if d.i >= len(d.b) {
		return errNotFast
	}
	switch c := d.b[d.i]; {
	case c == '"':
		var s string
		return d.str(&s)
	case c == '{':
		return d.object(func([]byte) error { return d.skip(depth + 1) })
	case c == '[':
		d.i++
		d.ws()
		if d.eat(']') {
			return nil
		}
		for {
			d.ws()
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.ws()
			if d.eat(',') {
				continue
			}
			if d.eat(']') {
				return nil
			}
			return errNotFast
		}
	case c == '-' || ('0' <= c && c <= '9'):
		return d.number()
	case d.literal("true"), d.literal("false"), d.literal("null"):
		return nil
	}
	return errNotFast
}

// number moves past a JSON number, checking its grammar.
func (d *decoder) number() error {
	start := d.i
	d.eat('-')
	if d.eat('0') {
	} else if d.digits() == 0 {
		return errNotFast
	}
	if d.eat('.') && d.digits() == 0 {
		return errNotFast
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if d.digits() == 0 {
			return errNotFast
		}
	}
	if d.i == start {
		return errNotFast
	}
	return nil
}

func (d *decoder) digits() int {
	n := 0
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

// float64p reads a number into a new float64 at *dst (null leaves it nil);
// anything else goes to encoding/json, which says what is wrong.
func (d *decoder) float64p(dst **float64) error {
	if d.literal("null") {
		*dst = nil
		return nil
	}
	start := d.i
	if err := d.number(); err != nil {
		return err
	}
	v, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	if err != nil {
		return errNotFast
	}
	*dst = &v
	return nil
}

// int reads an integer into dst (null leaves it unchanged); fractions and
// exponents go to encoding/json, which refuses them for an int.
func (d *decoder) int(dst *int) error {
	if d.literal("null") {
		return nil
	}
	neg := d.eat('-')
	v, n := 0, 0
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		if n > 15 {
			return errNotFast
		}
		v = v*10 + int(d.b[d.i]-'0')
		d.i++
		n++
	}
	if n == 0 || (n > 1 && d.b[d.i-n] == '0') {
		return errNotFast
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return errNotFast
	}
	if neg {
		v = -v
	}
	*dst = v
	return nil
}

func (d *decoder) int64p(dst **int64) error {
	if d.literal("null") {
		*dst = nil
		return nil
	}
	var v int
	if err := d.int(&v); err != nil {
		return err
	}
	x := int64(v)
	*dst = &x
	return nil
}

// headers reads an object of header names to values (strings, numbers,
// booleans, null or arrays of those, as jsontext.ScanHeaders accepts). Names and
// short values repeat from event to event, so they are interned for the
// batch: one string allocation per distinct text instead of per header.
func (d *decoder) headers(dst *Headers) error {
	if d.literal("null") {
		*dst = nil
		return nil
	}
	h := (*dst)[:0]
	err := d.object(func(key []byte) error {
		if len(h) == jsontext.MaxHeaders {
			// encoding/json (jsontext.ScanHeaders) says what is wrong.
			return errNotFast
		}
		name := d.intern(key)
		var val string
		if d.eat('[') {
			// An array of values is joined with ", ", as jsontext.ScanHeaders does,
			// as it is read.
			var joined strings.Builder // String() without a copy
			d.ws()
			for k := 0; !d.eat(']'); k++ {
				if k > 0 && !d.eat(',') {
					return errNotFast
				}
				d.ws()
				var v string
				if err := d.headerValue(&v); err != nil {
					return err
				}
				if k > 0 {
					joined.WriteString(", ")
				}
				joined.WriteString(v)
				d.ws()
			}
			val = joined.String()
		} else if err := d.headerValue(&val); err != nil {
			return err
		}
		h = append(h, apimeter.Header{Name: name, Value: val})
		return nil
	})
	if err != nil {
		return err
	}
	*dst = h
	return nil
}

// headerValue reads a scalar header value.
func (d *decoder) headerValue(dst *string) error {
	if d.i >= len(d.b) {
		return errNotFast
	}
	switch c := d.b[d.i]; {
	case c == '"':
		if end := bytes.IndexByte(d.b[d.i+1:], '"'); end >= 0 && end <= 48 && plainASCII(d.b[d.i+1:d.i+1+end]) {
			*dst = d.intern(d.b[d.i+1 : d.i+1+end])
			d.i += end + 2
			return nil
		}
		return d.str(dst)
	case c == '-' || ('0' <= c && c <= '9'):
		start := d.i
		if err := d.number(); err != nil {
			return err
		}
		*dst = string(d.b[start:d.i])
		return nil
	case d.literal("true"):
		*dst = "true"
	case d.literal("false"):
		*dst = "false"
	case d.literal("null"):
		*dst = ""
	default:
		return errNotFast
	}
	return nil
}

// intern returns b as a string, shared with earlier equal texts of the
// batch.
func (d *decoder) intern(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil {
		d.strs = make(map[string]string, 64)
	}
	s := string(b)
	if len(d.strs) < 4096 {
		d.strs[s] = s
	}
	return s
}

// unknown skips the value of a key that is not a field, unless the key
// names a field ignoring case (encoding/json would fill that field).
func (d *decoder) unknown(key []byte, fields ...string) error {
	for _, f := range fields {
		if len(f) == len(key) && bytes.EqualFold([]byte(f), key) {
			return errNotFast
		}
	}
	return d.skip(0)
}

var eventFields = []string{"event_id", "request", "response", "user_id", "company_id", "session_token", "tags",
	"metadata", "direction", "weight", "blocked_by", "api_name", "route", "api_key_id",
	"target_url", "target_latency_ms"}

func (d *decoder) event(m *Event) error {
	return d.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "event_id":
			return d.str(&m.EventID)
		case "request":
			return d.request(&m.Request)
		case "response":
			if d.literal("null") {
				m.Response = nil
				return nil
			}
			if m.Response == nil {
				m.Response = new(Response)
			}
			return d.response(m.Response)
		case "user_id":
			return d.str(&m.UserID)
		case "company_id":
			return d.str(&m.CompanyID)
		case "session_token":
			return d.str(&m.SessionToken)
		case "tags":
			return d.str(&m.Tags)
		case "metadata":
			m.Metadata, err = d.raw()
		case "direction":
			return d.str(&m.Direction)
		case "weight":
			m.Weight, err = d.raw()
		case "blocked_by":
			return d.str(&m.BlockedBy)
		case "api_name":
			return d.str(&m.APIName)
		case "route":
			return d.str(&m.Route)
		case "api_key_id":
			return d.str(&m.APIKeyID)
		case "target_url":
			return d.str(&m.TargetURL)
		case "target_latency_ms":
			return d.float64p(&m.TargetLatencyMs)
		default:
			return d.unknown(key, eventFields...)
		}
		return err
	})
}

// message points at the fields requests and responses share.
type message struct {
	time, ip, encoding *string
	headers            *Headers
	body               *json.RawMessage
	length             **int64
}

// messageField reads key into m when it is one of the shared fields.
func (d *decoder) messageField(key []byte, m message) (bool, error) {
	var err error
	switch string(key) {
	case "time":
		err = d.str(m.time)
	case "ip_address":
		err = d.str(m.ip)
	case "headers":
		err = d.headers(m.headers)
	case "body":
		*m.body, err = d.raw()
	case "transfer_encoding":
		err = d.str(m.encoding)
	case "content_length":
		err = d.int64p(m.length)
	default:
		return false, nil
	}
	return true, err
}

// requestFields and responseFields are the fields the fast decoder knows;
// body_truncated, rare, is left to encoding/json.
var requestFields = []string{"time", "uri", "verb", "api_version", "ip_address", "headers", "body", "transfer_encoding", "content_length", "body_truncated"}

func (d *decoder) request(r *Request) error {
	if d.i < len(d.b) && d.b[d.i] != '{' && d.b[d.i] != 'n' {
		return errNotFast
	}
	m := message{&r.Time, &r.IPAddress, &r.TransferEncoding, &r.Headers, &r.Body, &r.ContentLength}
	return d.object(func(key []byte) error {
		switch string(key) {
		case "uri":
			return d.str(&r.URI)
		case "verb":
			return d.str(&r.Verb)
		case "api_version":
			return d.str(&r.APIVersion)
		}
		if ok, err := d.messageField(key, m); ok {
			return err
		}
		return d.unknown(key, requestFields...)
	})
}

var responseFields = []string{"time", "status", "ip_address", "headers", "body", "transfer_encoding", "content_length", "body_truncated"}

func (d *decoder) response(r *Response) error {
	if d.i < len(d.b) && d.b[d.i] != '{' {
		return errNotFast
	}
	m := message{&r.Time, &r.IPAddress, &r.TransferEncoding, &r.Headers, &r.Body, &r.ContentLength}
	return d.object(func(key []byte) error {
		if string(key) == "status" {
			// null is kept apart from a missing status (see Response).
			r.statusNull = d.literal("null")
			if r.statusNull {
				return nil
			}
			return d.int(&r.Status)
		}
		if ok, err := d.messageField(key, m); ok {
			return err
		}
		return d.unknown(key, responseFields...)
	})
}

// plainASCII reports whether b is printable ASCII without a backslash: a
// JSON string body that means itself.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}
