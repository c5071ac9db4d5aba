package capture

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/scrub"
)

// appendBatch appends events as a JSON array in Moesif's collector schema
// (the same fields moesif.FromEvent fills). It is written by hand because
// encoding/json spent most of the sender's time on reflection and on
// re-validating bodies; the round-trip test checks it against the
// collector's decoder.
func appendBatch(dst []byte, events []apimeter.Event) []byte {
	dst = append(dst, '[')
	for i := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendEvent(dst, &events[i])
	}
	return append(dst, ']')
}

// AppendEvent appends e to dst as one JSON object in Moesif's collector
// schema, as HTTPSink sends it and moesif.DecodeBatch reads it. Sinks that
// carry events elsewhere (the kafka package's) write them with it.
func AppendEvent(dst []byte, e *apimeter.Event) []byte { return appendEvent(dst, e) }

// wireTime is the time format sent: UTC with microseconds, so latencies
// below a millisecond survive.
const wireTime = "2006-01-02T15:04:05.000000Z"

func appendEvent(dst []byte, e *apimeter.Event) []byte {
	dst = append(dst, '{')
	if e.ID != "" {
		dst = appendField(dst, "event_id", e.ID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"request":{"time":"`...)
	dst = appendWireTime(dst, e.RequestTime)
	dst = append(dst, `",`...)
	dst = appendField(dst, "uri", e.URI)
	dst = append(dst, ',')
	dst = appendField(dst, "verb", e.Method)
	dst = appendOpt(dst, "api_version", e.APIVersion)
	dst = appendOpt(dst, "ip_address", e.ClientIP)
	dst = appendHeadersJSON(dst, e.RequestHeaders)
	dst = appendBody(dst, e.RequestBody)
	dst = append(dst, `},"response":{"time":"`...)
	dst = appendWireTime(dst, e.ResponseTime)
	dst = append(dst, `","status":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = appendHeadersJSON(dst, e.ResponseHeaders)
	dst = appendBody(dst, e.ResponseBody)
	dst = append(dst, '}')
	dst = appendOpt(dst, "user_id", e.UserID)
	dst = appendOpt(dst, "company_id", e.CompanyID)
	dst = appendOpt(dst, "session_token", e.SessionToken)
	dst = appendOpt(dst, "tags", e.Tags)
	if len(e.Metadata) > 0 && json.Valid(e.Metadata) {
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, e.Metadata...)
	}
	dst = appendOpt(dst, "direction", e.Direction)
	if e.Weight > 1 {
		dst = append(dst, `,"weight":`...)
		dst = strconv.AppendInt(dst, e.Weight, 10)
	}
	dst = appendOpt(dst, "api_name", e.APIName)
	dst = appendOpt(dst, "route", e.Route)
	dst = appendOpt(dst, "api_key_id", e.APIKeyID)
	return appendTarget(dst, e.TargetURL, e.TargetLatencyMs)
}

// appendTarget appends the gateway's target_url and target_latency_ms,
// when there are any, and closes the event.
func appendTarget(dst []byte, url string, ms float64) []byte {
	dst = appendOpt(dst, "target_url", url)
	if ms > 0 {
		dst = append(dst, `,"target_latency_ms":`...)
		dst = strconv.AppendFloat(dst, ms, 'f', -1, 64)
	}
	return append(dst, '}')
}

// appendWireTime appends t in UTC as wireTime formats it. time.AppendFormat
// took about 0.2 µs per time, 8% of the HTTP sink's CPU; this takes a tenth
// of that. Years outside 1..9999 go through AppendFormat.
func appendWireTime(dst []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), t.Nanosecond()
	days, rem := sec/86400, sec%86400
	if rem < 0 {
		days, rem = days-1, rem+86400
	}
	// Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil,
	// inverted), in 400-year eras starting on March 1st.
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if month > 12 {
		month -= 12
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	if year < 1 || year > 9999 {
		return t.UTC().AppendFormat(dst, wireTime)
	}
	us := nsec / 1000
	var b [27]byte
	put2 := func(i int, v int64) { b[i], b[i+1] = byte('0'+v/10), byte('0'+v%10) }
	put2(0, year/100)
	put2(2, year%100)
	b[4] = '-'
	put2(5, month)
	b[7] = '-'
	put2(8, day)
	b[10] = 'T'
	put2(11, rem/3600)
	b[13] = ':'
	put2(14, rem/60%60)
	b[16] = ':'
	put2(17, rem%60)
	b[19] = '.'
	put2(20, int64(us/10000))
	put2(22, int64(us/100%100))
	put2(24, int64(us%100))
	b[26] = 'Z'
	return append(dst, b[:]...)
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return jsontext.AppendString(dst, value)
}

func appendOpt(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',')
	return appendField(dst, name, value)
}

func appendHeadersJSON(dst []byte, h apimeter.Headers) []byte {
	dst = append(dst, `,"headers":`...)
	return jsontext.AppendHeaders(dst, h)
}

// appendBody sends text bodies as JSON strings (the collector stores the
// text either way; checking that a body is valid JSON to inline it cost more
// than the rest of the encoding) and binary ones as base64.
func appendBody(dst []byte, b apimeter.Body) []byte {
	if b.Text == "" {
		return dst
	}
	dst = append(dst, `,"body":`...)
	dst = jsontext.AppendString(dst, b.Text)
	if b.Base64 {
		dst = append(dst, `,"transfer_encoding":"base64"`...)
	}
	return dst
}

// appendRecord appends the wire JSON of a record, scrubbed: the bytes
// fillEvent and then appendEvent give, without building the Event in
// between. Without Mask nothing needs the Event, and building it cost the
// sender about a third of its time besides compression: copying the URI
// and the added Content-Length into the record's scratch buffer, and
// checking each body's UTF-8 before escaping it, now one pass
// (jsontext.AppendText). Records with a query string go through the
// Event, whose scrubber rewrites secret parameters. Only the sending
// goroutine calls it. TestAppendRecordMatchesEvent checks the two paths
// byte for byte.
func (c *Capture) appendRecord(dst []byte, rec *record) []byte {
	dst = append(dst, '{')
	dst = appendField(dst, "event_id", rec.id)
	dst = append(dst, `,"request":{"time":"`...)
	dst = appendWireTime(dst, rec.start)
	dst = append(dst, `",`...)
	c.uri = append(c.uri[:0], "http"...)
	if rec.tls {
		c.uri = append(c.uri, 's')
	}
	c.uri = append(append(append(c.uri, "://"...), rec.host...), rec.requestURI...)
	// Secret query and path parameters become fingerprints in the URI, as
	// the Event path's scrubber makes them. ScrubURL returns its argument
	// itself when it finds nothing; otherwise a new string, copied back.
	if v := c.scrub.Scrubber().ScrubURL(unsafe.String(&c.uri[0], len(c.uri))); unsafe.StringData(v) != &c.uri[0] {
		c.uri = append(c.uri[:0], v...)
	}
	if rec.query != "" {
		if !utf8.Valid(c.uri) {
			// As scrub.Scrubber leaves it, so that both paths agree.
			c.uri = append(c.uri[:0], bytes.ToValidUTF8(c.uri, []byte("\uFFFD"))...)
		}
	}
	dst = append(dst, `"uri":`...)
	dst = jsontext.AppendString(dst, unsafe.String(&c.uri[0], len(c.uri)))
	dst = append(dst, ',')
	dst = appendField(dst, "verb", rec.method)
	dst = appendOpt(dst, "ip_address", hostOnly(rec.remoteAddr))
	dst = c.appendScrubbedHeaders(dst, rec.reqHeaders, false, 0)
	if c.opts.LogBody {
		dst = appendRecordBody(dst, rec.reqBody, rec.reqRead > int64(len(rec.reqBody)))
	}
	dst = append(dst, `},"response":{"time":"`...)
	dst = appendWireTime(dst, rec.end)
	dst = append(dst, `","status":`...)
	dst = strconv.AppendInt(dst, int64(rec.status), 10)
	// The collector schema carries sizes only as Content-Length, added when
	// the handler did not set it (as fillEvent does).
	addLen := !rec.hijacked && rec.respHeaders.Get("Content-Length") == ""
	dst = c.appendScrubbedHeaders(dst, rec.respHeaders, addLen, rec.respSize)
	if c.opts.LogBody {
		dst = appendRecordBody(dst, rec.respBody, rec.respSize > int64(len(rec.respBody)))
	}
	dst = append(dst, '}')
	user := rec.user
	if user == "" && rec.auth != "" {
		user = c.subject(rec.auth)
	}
	dst = appendOpt(dst, "user_id", user)
	dst = appendOpt(dst, "company_id", rec.company)
	if rec.session != "" {
		session := rec.session
		session = c.scrub.Fingerprint(scrub.BearerToken(session))
		dst = appendField(append(dst, ','), "session_token", session)
	}
	if rec.metadata != nil {
		if b, err := json.Marshal(rec.metadata); err == nil {
			dst = append(dst, `,"metadata":`...)
			dst = append(dst, b...)
		} else {
			c.log.Warn("capture: metadata is not JSON", "err", err)
		}
	}
	dst = append(dst, `,"direction":"`+apimeter.Incoming+`"`...)
	if c.weight > 1 {
		dst = append(dst, `,"weight":`...)
		dst = strconv.AppendInt(dst, c.weight, 10)
	}
	if c.opts.APIName != "" {
		dst = appendOpt(dst, "api_name", c.opts.APIName)
	} else {
		dst = appendOpt(dst, "api_name", hostOnly(rec.host))
	}
	dst = appendOpt(dst, "route", rec.route)
	key := c.scrub.APIKey(rec.reqHeaders)
	if key == "" {
		key = scrub.QueryAPIKey(rec.query)
	}
	if key != "" {
		dst = appendOpt(dst, "api_key_id", c.scrub.Fingerprint(key))
	}
	return appendTarget(dst, rec.target.URL, targetMs(rec.target.Latency))
}

// appendScrubbedHeaders appends `,"headers":{...}` with secret values
// replaced by their fingerprints, and a Content-Length of size at the end
// when addLen is set.
func (c *Capture) appendScrubbedHeaders(dst []byte, h apimeter.Headers, addLen bool, size int64) []byte {
	dst = append(dst, `,"headers":{`...)
	for i, kv := range h {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = c.appendScrubbedHeader(dst, kv.Name, kv.Value)
	}
	if addLen {
		if len(h) > 0 {
			dst = append(dst, ',')
		}
		if c.scrub.SecretHeader("Content-Length") {
			// Only a SecretHeaders entry makes it so; not worth a buffer.
			dst = c.appendScrubbedHeader(dst, "Content-Length", strconv.FormatInt(size, 10))
		} else {
			dst = append(dst, `"Content-Length":"`...)
			dst = append(strconv.AppendInt(dst, size, 10), '"')
		}
	}
	return append(dst, '}')
}

func (c *Capture) appendScrubbedHeader(dst []byte, name, value string) []byte {
	value = c.scrub.Header(name, value)
	dst = jsontext.AppendString(dst, name)
	dst = append(dst, ':')
	return jsontext.AppendString(dst, value)
}

// appendRecordBody appends a captured body as body gives it and appendBody
// sends it: text when valid UTF-8 (a cut multi-byte character at the end
// of a truncated body dropped), base64 otherwise; nothing when empty.
func appendRecordBody(dst, b []byte, truncated bool) []byte {
	if len(b) == 0 {
		return dst
	}
	text := b
	if truncated {
		text = trimCutRune(text)
	}
	if len(text) == 0 {
		return dst
	}
	at := len(dst)
	dst = append(dst, `,"body":`...)
	dst, ok := jsontext.AppendText(dst, unsafe.String(&text[0], len(text)))
	if ok {
		return dst
	}
	dst = append(dst[:at], `,"body":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, `","transfer_encoding":"base64"`...)
}
