package apimeter

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/zeebo/xxh3"
)

// DefaultSecretHeaders are the headers whose values never reach storage.
var DefaultSecretHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
	"X-Api-Key", "Ocp-Apim-Subscription-Key", "X-Moesif-Application-Id",
	"X-Auth-Token", "X-Access-Token", "X-Amz-Security-Token",
}

// DefaultSecretQueryParams are query parameters whose values never reach
// storage.
var DefaultSecretQueryParams = []string{
	"api_key", "apikey", "api-key", "key", "access_token", "token",
	"subscription-key", "client_secret", "password", "sig", "signature",
}

// APIKeyHeaders are the headers an API key is read from, in order, when the
// sender does not name the key.
var APIKeyHeaders = []string{"X-Api-Key", "Ocp-Apim-Subscription-Key", "Api-Key"}

// DefaultBodyCap is the default number of body bytes kept, as in the
// gateway policy that cuts bodies at 1024 characters.
const DefaultBodyCap = 1024

// Scrubber removes secrets from events and caps bodies. Its zero value is
// not usable; build one with NewScrubber.
type Scrubber struct {
	headers []string // compared ignoring case, without allocating
	params  map[string]bool
	// BodyCap is the number of bytes of each body kept; longer bodies are
	// cut at a UTF-8 boundary and marked Truncated. Zero keeps no body.
	BodyCap int
	fps     *fingerprints
}

// fingerprints remembers the fingerprints of recent secrets: a client sends
// the same API key and token with every call, and a SHA-256 per secret was
// about 5% of the collector's CPU per event. It is keyed by a 128-bit hash
// of the secret, so that it holds no secret, and safe for concurrent use.
type fingerprints struct {
	m sync.Map // xxh3.Uint128 -> string
	n atomic.Int64
}

// maxFingerprints bounds the cache; when full it starts again empty.
const maxFingerprints = 1 << 16

func (c *fingerprints) of(secret string) string {
	k := xxh3.HashString128(secret)
	if fp, ok := c.m.Load(k); ok {
		return fp.(string)
	}
	fp := Fingerprint(secret)
	if c.n.Add(1) > maxFingerprints {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, fp)
	return fp
}

// NewScrubber returns a Scrubber that drops DefaultSecretHeaders and
// DefaultSecretQueryParams plus the extra names given, and keeps bodyCap
// bytes of each body (a negative bodyCap means DefaultBodyCap).
func NewScrubber(extraHeaders, extraParams []string, bodyCap int) *Scrubber {
	s := &Scrubber{params: map[string]bool{}, BodyCap: bodyCap, fps: &fingerprints{}}
	if bodyCap < 0 {
		s.BodyCap = DefaultBodyCap
	}
	for _, h := range append(append([]string{}, DefaultSecretHeaders...), extraHeaders...) {
		s.headers = append(s.headers, h)
	}
	for _, p := range append(append([]string{}, DefaultSecretQueryParams...), extraParams...) {
		s.params[strings.ToLower(p)] = true
	}
	return s
}

// fingerprintPrefix starts every fingerprint.
const fingerprintPrefix = "fp_"

// Fingerprint is the short, non-reversible form in which a secret may be
// stored: "fp_" and the first 16 hex digits of its SHA-256.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return fingerprintPrefix + hex.EncodeToString(sum[:8])
}

// FingerprintOfHash is Fingerprint of a key whose KeyHash is keyHash,
// without the key: the alias table knows keys only by their hash.
func FingerprintOfHash(keyHash string) string {
	if len(keyHash) < 16 {
		return ""
	}
	return fingerprintPrefix + keyHash[:16]
}

// IsFingerprint reports whether s is already a fingerprint, so that
// scrubbing twice changes nothing.
func IsFingerprint(s string) bool { return strings.HasPrefix(s, fingerprintPrefix) }

// KeyHash is the full SHA-256 of a key, hex-encoded: the form the alias
// table stores keys in.
func KeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// BearerToken returns the token of an "Authorization: Bearer x" value, or
// the value itself when it has no scheme.
func BearerToken(auth string) string {
	auth = strings.TrimSpace(auth)
	if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return auth
}

// APIKey returns the raw API key an event was sent with, from the key
// headers or the secret query parameters, or "".
func (s *Scrubber) APIKey(e *Event) string {
	for _, h := range APIKeyHeaders {
		if v := e.RequestHeaders.Get(h); v != "" {
			return v
		}
	}
	if e.Query != "" {
		for _, p := range []string{"api_key", "apikey", "api-key", "key", "subscription-key"} {
			if v := queryValue(e.Query, p); v != "" {
				return v
			}
		}
	}
	return ""
}

// Scrub makes e safe to store: secret header values and query parameters
// become fingerprints, the session token and API key are kept only as
// fingerprint ids, and bodies are capped. It fills APIKeyID from the key
// headers when the event has none. Scrub is idempotent.
func (s *Scrubber) Scrub(e *Event) {
	if e.APIKeyID == "" {
		if k := s.APIKey(e); k != "" {
			e.APIKeyID = s.fps.of(k)
		}
	} else if !IsFingerprint(e.APIKeyID) {
		e.APIKeyID = s.fps.of(e.APIKeyID)
	}
	if e.SessionToken != "" && !IsFingerprint(e.SessionToken) {
		e.SessionToken = s.fps.of(BearerToken(e.SessionToken))
	}
	s.scrubHeaders(e.RequestHeaders)
	s.scrubHeaders(e.ResponseHeaders)
	if e.Query != "" {
		q := s.scrubQuery(e.Query)
		if q != e.Query {
			e.URI = strings.Replace(e.URI, e.Query, q, 1)
			e.Query = q
		}
	}
	s.capBody(&e.RequestBody)
	s.capBody(&e.ResponseBody)
	for _, f := range []*string{&e.ID, &e.Org, &e.Env, &e.APIName, &e.Method, &e.URI, &e.Path, &e.Route, &e.Query,
		&e.UserID, &e.CompanyID, &e.APIKeyID, &e.ClientIP, &e.UserAgent, &e.TargetURL, &e.Tags} {
		if !utf8.ValidString(*f) {
			*f = strings.ToValidUTF8(*f, "\uFFFD")
		}
	}
}

func (s *Scrubber) scrubHeaders(h Headers) {
	for i := range h {
		if s.secretHeader(h[i].Name) && !IsFingerprint(h[i].Value) {
			h[i].Value = s.fps.of(h[i].Value)
		}
	}
}

func (s *Scrubber) secretHeader(name string) bool {
	for _, h := range s.headers {
		if len(h) == len(name) && equalFold(h, name) {
			return true
		}
	}
	return false
}

func (s *Scrubber) scrubQuery(q string) string {
	parts := strings.Split(q, "&")
	changed := false
	for i, p := range parts {
		name, val, ok := strings.Cut(p, "=")
		if !ok || val == "" || IsFingerprint(val) {
			continue
		}
		n, err := url.QueryUnescape(name)
		if err != nil {
			n = name
		}
		if s.params[strings.ToLower(n)] {
			v, err := url.QueryUnescape(val)
			if err != nil {
				v = val
			}
			parts[i] = name + "=" + s.fps.of(v)
			changed = true
		}
	}
	if !changed {
		return q
	}
	return strings.Join(parts, "&")
}

func queryValue(q, name string) string {
	for _, p := range strings.Split(q, "&") {
		n, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(n, name) {
			continue
		}
		if u, err := url.QueryUnescape(v); err == nil {
			return u
		}
		return v
	}
	return ""
}

func (s *Scrubber) capBody(b *Body) {
	if len(b.Text) <= s.BodyCap && !b.Base64 {
		return
	}
	if b.Base64 {
		raw, err := base64.StdEncoding.DecodeString(b.Text)
		if err != nil || len(raw) <= s.BodyCap {
			return
		}
		b.Text = base64.StdEncoding.EncodeToString(raw[:s.BodyCap])
		b.Truncated = true
		return
	}
	cut := s.BodyCap
	for cut > 0 && !utf8.RuneStart(b.Text[cut]) {
		cut--
	}
	b.Text = b.Text[:cut]
	b.Truncated = true
}
