package jsontext

import (
	"bytes"
	"unicode/utf8"
)

// The store keeps text only as valid UTF-8 (DuckDB turns anything else into
// NULL and fails the commit), and strict JSON readers refuse a lone UTF-16
// surrogate escape. Every value from outside is therefore normalised the
// way encoding/json decodes strings: each byte that is not part of a valid
// UTF-8 sequence becomes U+FFFD, and so does a \uD800-\uDFFF escape that is
// not half of a pair. Content ids are computed over the normalised values,
// so every decoder and entry point gives an event the same id.

// ValidString returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json decodes a string; s itself (no
// allocation) when it is valid.
func ValidString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// ValidJSON returns the JSON text raw with invalid UTF-8 and lone surrogate
// escapes inside its strings replaced by U+FFFD (\ufffd for an escape), or
// raw itself, unchanged and not copied, when it has neither. raw must be
// syntactically valid JSON (as a decoder hands it over); the result then is
// too, and decodes to what encoding/json decodes raw to.
func ValidJSON(raw []byte) []byte {
	if utf8.Valid(raw) && !hasSurrogateEscape(raw) {
		return raw
	}
	out := make([]byte, 0, len(raw)+16)
	for i := 0; i < len(raw); {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			if raw[i+1] != 'u' {
				out = append(out, c, raw[i+1])
				i += 2
				continue
			}
			r, ok := hex4(raw, i+2)
			if !ok {
				out = append(out, c)
				i++
				continue
			}
			if r < 0xD800 || r > 0xDFFF {
				out = append(out, raw[i:i+6]...)
				i += 6
				continue
			}
			// A high surrogate followed by an escaped low one is a pair.
			if r < 0xDC00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if r2, ok := hex4(raw, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
					out = append(out, raw[i:i+12]...)
					i += 12
					continue
				}
			}
			out = append(out, `\ufffd`...)
			i += 6
			continue
		}
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, raw[i:i+size]...)
		}
		i += size
	}
	return out
}

// hasSurrogateEscape reports whether raw may hold a \uD800-\uDFFF escape
// (a false positive, such as an escaped backslash before "ud", only costs
// the slow path).
func hasSurrogateEscape(raw []byte) bool {
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u`))
		if j < 0 {
			return false
		}
		i += j + 2
		if i < len(raw) && (raw[i] == 'd' || raw[i] == 'D') {
			return true
		}
	}
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
