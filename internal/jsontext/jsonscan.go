package jsontext

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
)

// MaxHeaders is the most headers a request or a response of an event may
// carry (a value sent as an array counts once). It bounds the memory one
// event's headers take whatever its JSON holds: a header costs 32 bytes
// decoded for as few as 5 bytes of JSON.
const MaxHeaders = 1000

// ErrTooManyHeaders says a request or response carries more than
// MaxHeaders headers.
var ErrTooManyHeaders = fmt.Errorf("headers: more than %d headers", MaxHeaders)

// ScanHeaders parses a JSON object of header names to values. A value may
// be a string, a number, a boolean, null or an array of those (joined with
// ", "), as the various SDKs send them. Strings are decoded as
// encoding/json decodes them: invalid UTF-8 becomes U+FFFD.
func ScanHeaders(b []byte, out apimeter.Headers) (apimeter.Headers, error) {
	i := skipWS(b, 0)
	if i < len(b) && b[i] == 'n' && strings.HasPrefix(string(b[i:]), "null") {
		return nil, nil
	}
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("headers: must be an object of header names to values")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return out, nil
	}
	for n := 0; ; n++ {
		if n == MaxHeaders {
			return nil, ErrTooManyHeaders
		}
		if i >= len(b) || b[i] != '"' {
			return nil, errors.New("headers: malformed object: expected a header name")
		}
		name, n, err := scanString(b, i)
		if err != nil {
			return nil, err
		}
		i = skipWS(b, n)
		if i >= len(b) || b[i] != ':' {
			return nil, errors.New("headers: malformed object: expected ':'")
		}
		i = skipWS(b, i+1)
		var val string
		if i < len(b) && b[i] == '[' {
			// Joined as read: a slice of the parts would take 16 bytes for
			// each 2-byte element.
			var joined strings.Builder // String() without a copy
			i = skipWS(b, i+1)
			if i < len(b) && b[i] == ']' {
				i++
			} else {
				for k := 0; ; k++ {
					var v string
					if v, i, err = scanScalar(b, i, name); err != nil {
						return nil, err
					}
					if k > 0 {
						joined.WriteString(", ")
					}
					joined.WriteString(v)
					i = skipWS(b, i)
					if i < len(b) && b[i] == ',' {
						i = skipWS(b, i+1)
						continue
					}
					if i < len(b) && b[i] == ']' {
						i++
						break
					}
					return nil, fmt.Errorf("headers: %q: malformed array", name)
				}
			}
			val = joined.String()
		} else if val, i, err = scanScalar(b, i, name); err != nil {
			return nil, err
		}
		out = append(out, apimeter.Header{Name: name, Value: val})
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return out, nil
		}
		return nil, errors.New("headers: malformed object: expected ',' or '}'")
	}
}

// scanScalar reads a string, number, boolean or null at b[i:].
func scanScalar(b []byte, i int, name string) (string, int, error) {
	if i >= len(b) {
		return "", i, fmt.Errorf("headers: %q: missing value", name)
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '-' || (c >= '0' && c <= '9'):
		j := i + 1
		for j < len(b) && strings.IndexByte("0123456789.eE+-", b[j]) >= 0 {
			j++
		}
		return string(b[i:j]), j, nil
	case strings.HasPrefix(string(b[i:min(i+5, len(b))]), "true"):
		return "true", i + 4, nil
	case strings.HasPrefix(string(b[i:min(i+5, len(b))]), "false"):
		return "false", i + 5, nil
	case strings.HasPrefix(string(b[i:min(i+4, len(b))]), "null"):
		return "", i + 4, nil
	}
	return "", i, fmt.Errorf("headers: %q: value must be a string or an array of strings", name)
}

// scanString reads the JSON string starting at b[i] == '"' and returns it
// with the index just past its closing quote.
func scanString(b []byte, i int) (string, int, error) {
	j := i + 1
	escaped := false
	for j < len(b) {
		c := b[j]
		if c == '\\' {
			escaped = true
			j += 2
			continue
		}
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", j, errors.New("control character in string")
		}
		j++
	}
	if j >= len(b) {
		return "", j, errors.New("unterminated string")
	}
	if !escaped && utf8.Valid(b[i+1:j]) {
		return string(b[i+1 : j]), j + 1, nil
	}
	var s string
	if err := json.Unmarshal(b[i:j+1], &s); err != nil {
		return "", j, err
	}
	return s, j + 1, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}
