package capture

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/apimeter/apimeter"
)

// appendBatch appends events as a JSON array in Moesif's collector schema
// (the same fields apimeter.FromEvent fills). It is written by hand because
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
	dst = e.RequestTime.UTC().AppendFormat(dst, wireTime)
	dst = append(dst, `",`...)
	dst = appendField(dst, "uri", e.URI)
	dst = append(dst, ',')
	dst = appendField(dst, "verb", e.Method)
	dst = appendOpt(dst, "api_version", e.APIVersion)
	dst = appendOpt(dst, "ip_address", e.ClientIP)
	dst = appendHeadersJSON(dst, e.RequestHeaders)
	dst = appendBody(dst, e.RequestBody)
	dst = append(dst, `},"response":{"time":"`...)
	dst = e.ResponseTime.UTC().AppendFormat(dst, wireTime)
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
	return append(dst, '}')
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return appendString(dst, value)
}

func appendOpt(dst []byte, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, ',')
	return appendField(dst, name, value)
}

func appendHeadersJSON(dst []byte, h apimeter.Headers) []byte {
	dst = append(dst, `,"headers":{`...)
	for i, kv := range h {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, kv.Name)
		dst = append(dst, ':')
		dst = appendString(dst, kv.Value)
	}
	return append(dst, '}')
}

// appendBody sends text bodies as JSON strings (the collector stores the
// text either way; checking that a body is valid JSON to inline it cost more
// than the rest of the encoding) and binary ones as base64.
func appendBody(dst []byte, b apimeter.Body) []byte {
	if b.Text == "" {
		return dst
	}
	dst = append(dst, `,"body":`...)
	dst = appendString(dst, b.Text)
	if b.Base64 {
		dst = append(dst, `,"transfer_encoding":"base64"`...)
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes that go into a JSON string as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether the 8 bytes at b[i:] need no escaping: none is
// below 0x20, a quote, a backslash or non-ASCII (SWAR: a byte-wise test on
// one 64-bit word).
func plain8(b []byte, i int) bool {
	x := binary.LittleEndian.Uint64(b[i:])
	q, bs := x^('"'*lsb), x^('\\'*lsb)
	return (x|((x-0x20*lsb)&^x)|((q-lsb)&^q)|((bs-lsb)&^bs))&msb == 0
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// A byte view of s for 64-bit loads; it is only read.
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	start := 0
	for i := 0; i < len(s); {
		// Skip eight plain ASCII bytes at a time.
		for i+8 <= len(s) && plain8(b, i) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but they end lines in JavaScript readers.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
