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

// Fingerprint is Fingerprint(secret) from the Scrubber's cache of recent
// secrets.
func (s *Scrubber) Fingerprint(secret string) string { return s.fps.of(secret) }

// NewScrubber returns a Scrubber that drops DefaultSecretHeaders and
// DefaultSecretQueryParams plus the extra names given, and keeps bodyCap
// bytes of each body (a negative bodyCap means DefaultBodyCap).
func NewScrubber(extraHeaders, extraParams []string, bodyCap int) *Scrubber {
	s := &Scrubber{params: map[string]bool{}, BodyCap: bodyCap, fps: &fingerprints{}}
	if bodyCap < 0 {
		s.BodyCap = DefaultBodyCap
	}
	s.headers = append(append(s.headers, DefaultSecretHeaders...), extraHeaders...)
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
	return QueryAPIKey(e.Query)
}

// QueryAPIKey returns the API key a raw query string carries in one of the
// usual parameters (api_key, apikey, api-key, key, subscription-key, the
// first of these present), unescaped, or "".
func QueryAPIKey(q string) string {
	if q == "" {
		return ""
	}
	return queryValue(q, apiKeyParams)
}

// apiKeyParams are the query parameters that carry an API key, the
// likeliest first.
var apiKeyParams = []string{"api_key", "apikey", "api-key", "key", "subscription-key"}

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
		q := s.ScrubQuery(e.Query)
		if q != e.Query {
			// The query ends the URI; an earlier copy of its text (in the
			// path, say) is not the query.
			if i := strings.LastIndex(e.URI, e.Query); i >= 0 {
				e.URI = e.URI[:i] + q + e.URI[i+len(e.Query):]
			}
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

// ScrubQuery returns the raw query string q with the values of secret
// parameters replaced by their fingerprints, and q itself when it has none.
func (s *Scrubber) ScrubQuery(q string) string {
	var out []byte // nil until a parameter changes
	for rest, start := q, 0; rest != ""; {
		p, next, more := strings.Cut(rest, "&")
		end := start + len(p)
		if name, val, ok := strings.Cut(p, "="); ok && val != "" && !IsFingerprint(val) && s.params[paramName(name)] {
			if strings.ContainsAny(val, "%+") {
				if v, err := url.QueryUnescape(val); err == nil {
					val = v
				}
			}
			if out == nil {
				out = append(make([]byte, 0, len(q)+64), q[:start]...)
			}
			out = append(append(append(out, name...), '='), s.fps.of(val)...)
		} else if out != nil {
			out = append(out, p...)
		}
		if more && out != nil {
			out = append(out, '&')
		}
		rest, start = next, end+1
	}
	if out == nil {
		return q
	}
	return string(out)
}

// paramName is a query parameter's name unescaped and in lower case, as
// Scrubber.params holds them; it allocates only when it has to change name.
func paramName(name string) string {
	if strings.ContainsAny(name, "%+") {
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// queryValue returns the unescaped value of the first parameter of the raw
// query q whose name is names[0], or failing that names[1], and so on
// (names compared without case), or "" if none has a value. It reads q
// once and allocates only to unescape.
func queryValue(q string, names []string) string {
	best, bestRank := "", len(names)
	for q != "" && bestRank > 0 {
		var p string
		p, q, _ = strings.Cut(q, "&")
		n, v, ok := strings.Cut(p, "=")
		if !ok || v == "" {
			continue
		}
		for rank, name := range names[:bestRank] {
			if len(n) == len(name) && strings.EqualFold(n, name) {
				best, bestRank = v, rank
				break
			}
		}
	}
	if best == "" {
		return ""
	}
	if strings.ContainsAny(best, "%+") {
		if u, err := url.QueryUnescape(best); err == nil {
			return u
		}
	}
	return best
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
