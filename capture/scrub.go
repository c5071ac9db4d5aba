package capture

import (
	"net/http"
	"strings"

	"github.com/apimeter/apimeter"
)

// scrubber removes secrets from captured events before they leave the
// process, with the header list of apimeter.Scrubber. It is the sender's
// fast path: header names captured from net/http are canonical, so one map
// lookup decides. Fingerprints come from apimeter.Scrubber's cache of the
// few secrets a service sees again and again (tokens, keys), and query
// strings from its ScrubQuery; Events that carry a query string, or that
// Mask changed, go through the whole apimeter.Scrubber. Only the sending
// goroutine uses a scrubber.
type scrubber struct {
	full    *apimeter.Scrubber
	secret  map[string]bool     // canonical header names
	lower   []string            // the same names, lower case, for other spellings
	names   map[string]nameKind // header name, any spelling -> what it is
	keyHdrs []string
}

func newScrubber(extraHeaders, extraParams []string, bodyCap int) *scrubber {
	s := &scrubber{
		full:    apimeter.NewScrubber(extraHeaders, extraParams, bodyCap),
		secret:  map[string]bool{},
		names:   map[string]nameKind{},
		keyHdrs: apimeter.APIKeyHeaders,
	}
	for _, h := range append(append([]string{}, apimeter.DefaultSecretHeaders...), extraHeaders...) {
		s.secret[http.CanonicalHeaderKey(h)] = true
		s.lower = append(s.lower, strings.ToLower(h))
	}
	return s
}

// maxNames bounds the cache of header names.
const maxNames = 1024

// nameKind is what the scrubber knows of a header name: whether it is a
// secret one, and its place in keyHdrs (-1: not an API key header).
type nameKind struct {
	secret bool
	key    int8
}

// kind returns what a header name is. A service sees the same few names
// again and again, so answers are cached: comparing every name with each
// secret and API key header name, case-insensitively, was most of the
// scrubber's time.
func (s *scrubber) kind(name string) nameKind {
	if k, ok := s.names[name]; ok {
		return k
	}
	k := nameKind{secret: s.secret[name], key: -1}
	for _, l := range s.lower {
		if k.secret {
			break
		}
		k.secret = strings.EqualFold(name, l)
	}
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

// fingerprint is the fingerprint of a secret, from apimeter.Scrubber's
// cache of recent ones.
func (s *scrubber) fingerprint(secret string) string { return s.full.Fingerprint(secret) }

// scrub makes e safe to send, with the same result as apimeter.Scrubber.
func (s *scrubber) scrub(e *apimeter.Event) {
	if e.APIKeyID == "" {
		if key := s.apiKey(e.RequestHeaders); key != "" {
			e.APIKeyID = s.fingerprint(key)
		}
	}
	if e.SessionToken != "" && !apimeter.IsFingerprint(e.SessionToken) {
		e.SessionToken = s.fingerprint(apimeter.BearerToken(e.SessionToken))
	}
	s.headers(e.RequestHeaders)
	s.headers(e.ResponseHeaders)
	if e.Query != "" {
		s.full.Scrub(e)
	}
}

// apiKey returns the value of the first of keyHdrs present with a value,
// as apimeter.Scrubber.APIKey, in one pass over the headers.
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
		if s.kind(h[i].Name).secret && !apimeter.IsFingerprint(h[i].Value) {
			h[i].Value = s.fingerprint(h[i].Value)
		}
	}
}
