package capture

import (
	"strings"
	"unicode/utf8"

	"github.com/apimeter/apimeter/scrub"

	"github.com/apimeter/apimeter"
)

// scrubber removes secrets from captured events before they leave the
// process. The rules are scrub.Scrubber's, and so are its caches of
// header kinds and fingerprints: this is only the sender's front, a plain
// map of the names it has seen (one goroutine, no locks) with their place
// among the API key headers. Fingerprints are unkeyed (the middleware
// does not hold the collector's key); the collector keys them, and gets
// the same stored fingerprint as for the raw secret. Secret header values,
// the API key, the session token and URLs (the request URI's query, path
// parameters; URL-valued headers) are scrubbed here; bodies and metadata
// leave as captured, as with every Moesif SDK, and the collector scrubs
// them before they reach disk. Only the sending goroutine uses a scrubber.
type scrubber struct {
	full    *scrub.Scrubber
	names   map[string]nameKind // header name, any spelling -> what it is
	keyHdrs []string
}

func newScrubber(extraHeaders, extraParams []string, bodyCap int) *scrubber {
	return &scrubber{
		full:    scrub.New(extraHeaders, extraParams, bodyCap),
		names:   map[string]nameKind{},
		keyHdrs: scrub.APIKeyHeaders,
	}
}

// maxNames bounds the cache of header names.
const maxNames = 1024

// nameKind is what the scrubber knows of a header name: its kind to
// scrub.Scrubber, and its place in keyHdrs (-1: not an API key header).
type nameKind struct {
	kind   scrub.HeaderKind
	secret bool
	key    int8
}

// kind returns what a header name is, from a map of the few names a
// service sends again and again.
func (s *scrubber) kind(name string) nameKind {
	if k, ok := s.names[name]; ok {
		return k
	}
	hk := s.full.HeaderKind(name)
	k := nameKind{kind: hk, secret: hk&scrub.SecretHeader != 0, key: -1}
	for i, h := range s.keyHdrs {
		if strings.EqualFold(name, h) {
			k.key = int8(i)
			break
		}
	}
	if len(s.names) >= maxNames {
		clear(s.names)
	}
	s.names[name] = k
	return k
}

// fingerprint is the (unkeyed) fingerprint of a secret, from
// scrub.Scrubber's cache of recent ones.
func (s *scrubber) fingerprint(secret string) string { return s.full.Fingerprint(secret) }

// header returns the value to send for a header, as scrub.Scrubber
// keeps it: a secret one's fingerprint, a URL's scrubbed form, else the
// value itself.
func (s *scrubber) header(name, value string) string {
	return s.full.HeaderValue(s.kind(name).kind, value)
}

// scrub makes e safe to send, as appendRecord does for a record.
func (s *scrubber) scrub(e *apimeter.Event) {
	if e.APIKeyID == "" {
		key := s.apiKey(e.RequestHeaders)
		if key == "" {
			key = scrub.QueryAPIKey(e.Query)
		}
		if key != "" {
			e.APIKeyID = s.fingerprint(key)
		}
	}
	if e.SessionToken != "" {
		e.SessionToken = s.fingerprint(scrub.BearerToken(e.SessionToken))
	}
	s.headers(e.RequestHeaders)
	s.headers(e.ResponseHeaders)
	e.URI = s.full.ScrubURL(e.URI)
	if e.Query != "" {
		e.Query = s.full.ScrubQuery(e.Query)
		if !utf8.ValidString(e.URI) {
			e.URI = strings.ToValidUTF8(e.URI, "\uFFFD")
		}
	}
}

// apiKey returns the value of the first of keyHdrs present with a value,
// as scrub.Scrubber.APIKey, in one pass over the headers.
func (s *scrubber) apiKey(h apimeter.Headers) string {
	best, key := len(s.keyHdrs), ""
	for _, kv := range h {
		if k := s.kind(kv.Name); k.key >= 0 && int(k.key) < best && kv.Value != "" {
			best, key = int(k.key), kv.Value
		}
	}
	return key
}

func (s *scrubber) headers(h apimeter.Headers) {
	for i := range h {
		h[i].Value = s.header(h[i].Name, h[i].Value)
	}
}
