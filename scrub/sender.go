package scrub

import (
	"strings"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
)

// Sender is a Scrubber's front for the one goroutine of a sender that
// passes events on (the capture middleware, the gateway): what a sender
// must scrub before an event leaves its process, with the header names it
// has seen in a plain map (no locks, no copy on write) beside their place
// among the APIKeyHeaders. The rules, and the caches of header kinds and
// fingerprints behind the map, are the Scrubber's: a Sender gives what
// Scrub gives for the parts it scrubs (TestSenderMatchesScrubber).
//
// Secret header values, the API key, the session token and URLs (the
// request URI's query and path parameters, URL-valued headers) are
// scrubbed; bodies and metadata leave as captured, as with every Moesif
// SDK, and the collector's Scrub cleans them before they reach disk.
// Fingerprints are those of the Scrubber (unkeyed for a sender, which does
// not hold the collector's key; the collector keys them, and stores the
// same fingerprint as for the raw secret). A Sender is not safe for
// concurrent use.
type Sender struct {
	full    *Scrubber
	names   map[string]senderName // header name, any spelling -> what it is
	keyHdrs []string
}

// NewSender returns a Sender that scrubs with s's rules.
func (s *Scrubber) NewSender() *Sender {
	return &Sender{full: s, names: map[string]senderName{}, keyHdrs: APIKeyHeaders}
}

// maxSenderNames bounds a Sender's map of header names.
const maxSenderNames = 1024

// senderName is what a Sender knows of a header name: its kind to the
// Scrubber, and its place in keyHdrs (-1: not an API key header).
type senderName struct {
	kind   HeaderKind
	secret bool
	key    int8
}

// Scrubber returns the Scrubber whose rules s applies.
func (s *Sender) Scrubber() *Scrubber { return s.full }

// name returns what a header name is, from a map of the few names a
// service sends again and again.
func (s *Sender) name(name string) senderName {
	if k, ok := s.names[name]; ok {
		return k
	}
	hk := s.full.HeaderKind(name)
	k := senderName{kind: hk, secret: hk&SecretHeader != 0, key: -1}
	for i, h := range s.keyHdrs {
		if strings.EqualFold(name, h) {
			k.key = int8(i)
			break
		}
	}
	if len(s.names) >= maxSenderNames {
		clear(s.names)
	}
	s.names[name] = k
	return k
}

// SecretHeader reports whether the named header's value is a secret.
func (s *Sender) SecretHeader(name string) bool { return s.name(name).secret }

// Fingerprint is the Scrubber's fingerprint of a secret, from its cache of
// recent ones.
func (s *Sender) Fingerprint(secret string) string { return s.full.Fingerprint(secret) }

// Header returns the value to send for a header, as Scrub keeps it: a
// secret one's fingerprint, a URL's scrubbed form, else the value itself.
func (s *Sender) Header(name, value string) string {
	return s.full.HeaderValue(s.name(name).kind, value)
}

// Scrub makes e safe to send: the sender's part of Scrubber.Scrub.
func (s *Sender) Scrub(e *apimeter.Event) {
	if e.APIKeyID == "" {
		key := s.APIKey(e.RequestHeaders)
		if key == "" {
			key = QueryAPIKey(e.Query)
		}
		if key != "" {
			e.APIKeyID = s.Fingerprint(key)
		}
	}
	if e.SessionToken != "" {
		e.SessionToken = s.Fingerprint(BearerToken(e.SessionToken))
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

// APIKey returns the value of the first of the APIKeyHeaders present with
// a value, as Scrubber.APIKey finds it, in one pass over the headers.
func (s *Sender) APIKey(h apimeter.Headers) string {
	best, key := len(s.keyHdrs), ""
	for _, kv := range h {
		if k := s.name(kv.Name); k.key >= 0 && int(k.key) < best && kv.Value != "" {
			best, key = int(k.key), kv.Value
		}
	}
	return key
}

func (s *Sender) headers(h apimeter.Headers) {
	for i := range h {
		h[i].Value = s.Header(h[i].Name, h[i].Value)
	}
}
