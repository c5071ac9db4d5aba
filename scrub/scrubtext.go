package scrub

import (
	"encoding/base64"
	"encoding/json"
	"math/bits"
	"strings"

	"github.com/apimeter/apimeter"
)

// This file scrubs secrets out of text: URLs (query, fragment, user info,
// path parameters), JSON and form bodies, metadata. Every function returns
// its input unchanged, without allocating, when there is nothing to scrub:
// that is the common case on the collector's hot path.

// hasScheme reports whether v starts like an absolute URL ("https://...").
func hasScheme(v string) bool {
	i := strings.Index(v, "://")
	if i <= 0 || i > 16 {
		return false
	}
	for j := 0; j < i; j++ {
		c := v[j]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || j > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// ScrubURL returns u with its secrets replaced by fingerprints: the user
// info of an absolute URL ("user:pass@host" becomes "fp_…@host"), secret
// path parameters (";jsessionid=…"), the values of secret query
// parameters, and the same in a fragment ("#access_token=…&…", as OAuth's
// implicit flow sends it). u may be absolute or a path.
func (s *Scrubber) ScrubURL(u string) string {
	if u == "" || !strings.ContainsAny(u, "@;?#") {
		return u
	}
	// u is head (scheme://user@host), path, ?query, #fragment.
	head, rest, userinfo := "", u, ""
	if i := strings.Index(u, "://"); i > 0 && hasScheme(u) {
		auth := u[i+3:]
		end := strings.IndexAny(auth, "/?#")
		if end < 0 {
			end = len(auth)
		}
		if at := strings.LastIndexByte(auth[:end], '@'); at >= 0 {
			userinfo = auth[:at]
		}
		head, rest = u[:i+3+end], auth[end:]
	}
	path, query, frag := rest, "", ""
	hasQ, hasF := false, false
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, frag, hasF = path[:i], path[i+1:], true
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query, hasQ = path[:i], path[i+1:], true
	}
	ui, p2, q2, f2 := userinfo, s.scrubPathParams(path), s.ScrubQuery(query), frag
	if userinfo != "" {
		ui = s.fps.of(userinfo)
	}
	if strings.IndexByte(frag, '=') >= 0 {
		f2 = s.ScrubQuery(frag)
	}
	if ui == userinfo && p2 == path && q2 == query && f2 == frag {
		return u
	}
	var b strings.Builder
	b.Grow(len(u) + 32)
	if userinfo != "" {
		scheme := strings.Index(head, "://") + 3
		b.WriteString(head[:scheme])
		b.WriteString(ui)
		b.WriteString(head[scheme+len(userinfo):])
	} else {
		b.WriteString(head)
	}
	b.WriteString(p2)
	if hasQ {
		b.WriteByte('?')
		b.WriteString(q2)
	}
	if hasF {
		b.WriteByte('#')
		b.WriteString(f2)
	}
	return b.String()
}

// scrubHeaderURL scrubs a URL-valued header's value: the URL itself, or
// each <URL> of a Link-style list ("<https://…>; rel=next, <…>").
func (s *Scrubber) scrubHeaderURL(v string) string {
	if strings.IndexByte(v, '<') < 0 {
		return s.ScrubURL(v)
	}
	var b strings.Builder
	rest, changed := v, false
	for {
		i := strings.IndexByte(rest, '<')
		j := strings.IndexByte(rest[max(i, 0):], '>')
		if i < 0 || j < 0 {
			b.WriteString(rest)
			break
		}
		j += i
		u := rest[i+1 : j]
		su := s.ScrubURL(u)
		changed = changed || su != u
		b.WriteString(rest[:i+1])
		b.WriteString(su)
		rest = rest[j:]
	}
	if !changed {
		return v
	}
	return b.String()
}

// scrubPathParams returns path with the values of secret path parameters
// (";jsessionid=…", ";token=…": the names of secret query parameters)
// replaced by fingerprints.
func (s *Scrubber) scrubPathParams(path string) string {
	if strings.IndexByte(path, ';') < 0 {
		return path
	}
	var out []byte
	last := 0
	for i := 0; i < len(path); i++ {
		if path[i] != ';' {
			continue
		}
		end := i + 1
		for end < len(path) && path[end] != '/' && path[end] != ';' {
			end++
		}
		name, val, ok := strings.Cut(path[i+1:end], "=")
		if ok && val != "" && s.secretParam(name) {
			if fp := s.fps.of(val); fp != val {
				out = append(append(append(append(out, path[last:i+1]...), name...), '='), fp...)
				last = end
			}
		}
		i = end - 1
	}
	if out == nil {
		return path
	}
	return string(append(out, path[last:]...))
}

// ScrubBody replaces the values of secret fields in a JSON or form body
// (and in a base64 body whose bytes are JSON or a form) by fingerprints.
// contentType is the Content-Type sent with the body, or "". Other bodies
// are left as they are. Call it after CapBody: the cut body is what is
// scrubbed (a value cut at the end is fingerprinted as it is), and a body
// that grows past the cap is cut again.
func (s *Scrubber) ScrubBody(b *apimeter.Body, contentType string) {
	if b.Text == "" {
		return
	}
	if b.Base64 {
		raw, err := base64.StdEncoding.DecodeString(b.Text)
		if err != nil {
			return
		}
		if t, ok := s.scrubText(string(raw), contentType); ok {
			if len(t) > s.BodyCap && s.BodyCap > 0 {
				t, b.Truncated = t[:s.BodyCap], true
			}
			b.Text = base64.StdEncoding.EncodeToString([]byte(t))
		}
		return
	}
	if t, ok := s.scrubText(b.Text, contentType); ok {
		b.Text = t
		if len(t) > s.BodyCap && s.BodyCap > 0 {
			s.CapBody(b)
		}
	}
}

// scrubText scrubs a body's text: as JSON when it starts with '{' or '[',
// as a form (name=value&…) when it has an '=' in it.
func (s *Scrubber) scrubText(t, contentType string) (string, bool) {
	i := 0
	for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n') {
		i++
	}
	if i < len(t) && (t[i] == '{' || t[i] == '[') {
		return s.ScrubJSON(t)
	}
	if strings.IndexByte(t, '=') >= 0 || strings.Contains(strings.ToLower(contentType), "x-www-form-urlencoded") {
		if f := s.scrubForm(t); f != t {
			return f, true
		}
	}
	return t, false
}

// scrubForm scrubs a form body, tolerating line breaks around it.
func (s *Scrubber) scrubForm(t string) string {
	trimmed := strings.TrimRight(t, "\r\n")
	if f := s.ScrubQuery(trimmed); f != trimmed {
		return f + t[len(trimmed):]
	}
	return t
}

// ScrubJSON returns the JSON text t with the value of every secret field,
// at any depth, replaced by the value's fingerprint as a JSON string, and
// whether it changed anything. null, booleans and empty strings are kept.
// It reads t as a tokenizer does, without building anything, so that cut
// or malformed JSON (a capped body) is scrubbed too: a value cut by the
// end of t is fingerprinted as far as it goes.
func (s *Scrubber) ScrubJSON(t string) (string, bool) {
	var out []byte
	last := 0
	for i := 0; i < len(t); {
		// Between strings there are only a few structural bytes.
		for i < len(t) && t[i] != '"' {
			i++
		}
		if i >= len(t) {
			break
		}
		start := i
		end := stringEnd(t, start)
		// A string followed by ':' is a field name.
		k := skipSpace(t, end)
		if k >= len(t) || t[k] != ':' {
			i = end
			continue
		}
		i = k + 1
		name := t[start+1 : max(end-1, start+1)]
		if !s.secretJSONName(name) {
			continue
		}
		v := skipSpace(t, k+1)
		vend := valueEnd(t, v)
		fp, ok := s.jsonSecret(t[v:vend])
		if !ok {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(t)+32)
		}
		out = append(out, t[last:v]...)
		out = append(append(append(out, '"'), fp...), '"')
		last, i = vend, vend
	}
	if out == nil {
		return t, false
	}
	return string(append(out, t[last:]...)), true
}

// secretJSONName reports whether a field name, as it appears between its
// quotes, names a secret.
func (s *Scrubber) secretJSONName(raw string) bool {
	if strings.IndexByte(raw, '\\') >= 0 {
		var n string
		if json.Unmarshal([]byte(`"`+raw+`"`), &n) != nil {
			return false
		}
		raw = n
	}
	return s.secretField(raw)
}

// jsonSecret returns the fingerprint of a secret field's JSON value v, and
// false when v is to be kept (null, true, false, "", nothing).
func (s *Scrubber) jsonSecret(v string) (string, bool) {
	switch v {
	case "", "null", "true", "false", `""`:
		return "", false
	}
	if v[0] == '"' {
		inner := v[1:]
		if closedString(v) {
			inner = inner[:len(inner)-1]
		}
		if strings.IndexByte(inner, '\\') >= 0 {
			var u string
			if json.Unmarshal([]byte(`"`+inner+`"`), &u) == nil {
				inner = u
			}
		}
		if inner == "" {
			return "", false
		}
		fp := s.fps.of(inner)
		return fp, fp != inner
	}
	// Numbers (a card number, a PIN), objects and arrays: the text.
	return s.fps.of(v), true
}

// stringEnd returns the index just past the JSON string that starts at
// t[start] ('"'), or len(t) when it is not closed. It steps a 64-bit word
// at a time to the next quote or backslash.
func stringEnd(t string, start int) int {
	i := start + 1
	for {
		for i+8 <= len(t) {
			w := le64(t, i)
			if m := zeroBytes(w^quotes8) | zeroBytes(w^backslashes8); m != 0 {
				// The lowest marked byte is exact.
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(t) && t[i] != '"' && t[i] != '\\' {
			i++
		}
		if i >= len(t) {
			return len(t)
		}
		if t[i] == '"' {
			return i + 1
		}
		i += 2 // a backslash and the character it escapes
	}
}

const (
	ones8        = 0x0101010101010101
	highs8       = 0x8080808080808080
	quotes8      = '"' * ones8
	backslashes8 = '\\' * ones8
)

// zeroBytes marks the bytes of w that are zero (their high bits set); the
// lowest mark is exact, higher ones may be false.
func zeroBytes(w uint64) uint64 { return (w - ones8) &^ w & highs8 }

// le64 reads the 8 bytes of t at i as a little-endian word.
func le64(t string, i int) uint64 {
	_ = t[i+7]
	return uint64(t[i]) | uint64(t[i+1])<<8 | uint64(t[i+2])<<16 | uint64(t[i+3])<<24 |
		uint64(t[i+4])<<32 | uint64(t[i+5])<<40 | uint64(t[i+6])<<48 | uint64(t[i+7])<<56
}

// closedString reports whether v, a JSON string as far as valueEnd took
// it, has its closing quote (and was not cut by the end of the text).
func closedString(v string) bool {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return false
	}
	n := 0
	for i := len(v) - 2; i > 0 && v[i] == '\\'; i-- {
		n++
	}
	return n%2 == 0
}

func skipSpace(t string, i int) int {
	for i < len(t) && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at t[i]:
// a string, an object or array (to its matching bracket), or a literal or
// number (to the next delimiter); len(t) when t ends first.
func valueEnd(t string, i int) int {
	if i >= len(t) {
		return i
	}
	switch t[i] {
	case '"':
		return stringEnd(t, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(t); j++ {
			switch t[j] {
			case '"':
				j = stringEnd(t, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(t)
	}
	j := i
	for j < len(t) && !strings.ContainsRune(",}] \t\r\n", rune(t[j])) {
		j++
	}
	return j
}
