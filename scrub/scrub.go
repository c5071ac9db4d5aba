package scrub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/apimeter/apimeter"
)

// DefaultSecretHeaders are the headers whose values never reach storage,
// besides those the header rules of Scrubber.HeaderKind catch by name
// (…token, …secret…, …password…, …apikey…, …authorization…, …cookie,
// …credential…).
var DefaultSecretHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
	"X-Api-Key", "Api-Key", "X-Goog-Api-Key", "Private-Token", "Job-Token",
	"Ocp-Apim-Subscription-Key", "X-Moesif-Application-Id", "X-Functions-Key",
	"X-Auth-Token", "X-Auth-Key", "X-Access-Token", "X-Amz-Security-Token",
	"X-Vault-Token", "X-Csrf-Token", "X-Xsrf-Token", "X-Api-Secret",
}

// URLHeaders are the headers whose values are URLs; their query strings,
// fragments, user info and path parameters are scrubbed like the request
// URI's. Any other header whose value starts with a scheme ("https://") is
// scrubbed the same way.
var URLHeaders = []string{
	"Referer", "Location", "Content-Location", "Link", "Refresh", "Origin",
	"X-Original-Url", "X-Original-Uri", "X-Rewrite-Url", "X-Forwarded-Uri", "X-Forwarded-Url",
}

// DefaultSecretQueryParams are query parameters whose values never reach
// storage, besides the DefaultSecretFields (which apply to query strings
// too).
var DefaultSecretQueryParams = []string{
	"api_key", "apikey", "api-key", "key", "access_token", "token",
	"subscription-key", "client_secret", "password", "sig", "signature",
	"jsessionid", "phpsessid", "sid", "code",
}

// DefaultSecretFields are the names of fields whose values never reach
// storage, in JSON and form bodies, in metadata and in query strings.
// Names compare in lower case with '_' and '-' left out, so "accessToken",
// "access_token" and "Access-Token" are one name; besides these, any name
// that contains "password", "passwd" or "secret" is a secret field.
var DefaultSecretFields = []string{
	"password", "passwd", "pwd", "pin", "token", "access_token", "refresh_token", "id_token",
	"auth_token", "session_token", "bearer", "client_secret", "secret", "api_key", "apikey",
	"private_key", "card_number", "cardnumber", "cc_number", "pan", "cvv", "cvc", "cvv2",
	"security_code", "ssn", "otp", "assertion", "client_assertion", "authorization",
}

// secretFieldWords make any field name that contains one of them secret.
var secretFieldWords = []string{"password", "passwd", "secret"}

// secretHeaderWords make any header name that contains one of them secret
// (names normalised as for fields); secretHeaderSuffixes any header name
// that ends with one.
var (
	secretHeaderWords    = []string{"secret", "password", "passwd", "apikey", "authorization", "credential"}
	secretHeaderSuffixes = []string{"token", "cookie"}
)

// APIKeyHeaders are the headers an API key is read from, in order, when the
// sender does not name the key.
var APIKeyHeaders = []string{"X-Api-Key", "Ocp-Apim-Subscription-Key", "Api-Key"}

// DefaultBodyCap is the default number of body bytes kept, as in the
// gateway policy that cuts bodies at 1024 characters.
const DefaultBodyCap = 1024

// Config configures a Scrubber. The zero value scrubs the default
// secrets, keeps no body and makes unkeyed fingerprints.
type Config struct {
	// SecretHeaders, SecretParams and SecretFields are names of headers,
	// query parameters and body/metadata fields whose values are secrets,
	// besides the defaults.
	SecretHeaders, SecretParams, SecretFields []string
	// BodyCap is the number of bytes of each body kept; negative means
	// DefaultBodyCap.
	BodyCap int
	// Key is the installation's fingerprint key (LoadFingerprintKey). With
	// a key, every secret becomes its keyed fingerprint; without one, its
	// unkeyed fingerprint, the form a sender that does not hold the key
	// (the capture middleware) sends and a keyed Scrubber re-keys.
	Key []byte
}

// Scrubber removes secrets from events and caps bodies. Its zero value is
// not usable; build one with New or NewWith. It is safe for
// concurrent use.
type Scrubber struct {
	headers map[string]bool // normalised names (normName)
	urlHdrs map[string]bool // normalised names
	params  map[string]bool // lower-case query parameter names
	fields  map[string]bool // normalised field names
	// fieldEnds[c] has bit d&63 set when a name in fields starts with c
	// and ends with d: most names are rejected without a map lookup.
	fieldEnds [256]uint64
	// BodyCap is the number of bytes of each body kept; longer bodies are
	// cut at a UTF-8 boundary and marked Truncated. Zero keeps no body.
	BodyCap int
	fps     *fingerprints
	names   atomic.Pointer[map[string]HeaderKind] // header name as sent -> kind
}

// Fingerprints are "fp_" and 16 hex digits. The unkeyed fingerprint of a
// secret is the first 8 bytes of its SHA-256; the keyed fingerprint, the
// only form stored, is the first 8 bytes of the HMAC-SHA-256, under the
// installation's key, of the unkeyed fingerprint's 8 bytes. So a collector
// that holds the key turns an unkeyed fingerprint (sent by a capture
// middleware, or computed from an alias's key hash) into the same keyed
// fingerprint as the secret itself, and a low-entropy secret cannot be
// found again from its stored fingerprint without the key.

// fingerprints remembers the fingerprints of recent secrets: a client sends
// the same API key and token with every call, and a SHA-256 per secret was
// about 5% of the collector's CPU per event. It is keyed by a 128-bit hash
// of the secret, so that it holds no secret, and safe for concurrent use.
// Its zero value makes unkeyed fingerprints.
type fingerprints struct {
	m   sync.Map // xxh3.Uint128 -> string
	n   atomic.Int64
	mac sync.Pool // of hash.Hash (HMAC-SHA-256 under the key); New nil when unkeyed
}

func newFingerprints(key []byte) *fingerprints {
	c := &fingerprints{}
	if len(key) > 0 {
		k := append([]byte(nil), key...)
		c.mac.New = func() any { return hmac.New(sha256.New, k) }
	}
	return c
}

// maxFingerprints bounds the cache; when full it starts again empty.
const maxFingerprints = 1 << 16

// of returns the stored form of a secret value: its fingerprint, or when
// the value is already an (unkeyed) fingerprint, that fingerprint keyed.
// An unkeyed cache returns fingerprints unchanged.
func (c *fingerprints) of(secret string) string {
	k := xxh3.HashString128(secret)
	if fp, ok := c.m.Load(k); ok {
		return fp.(string)
	}
	fp := c.compute(secret)
	if c.n.Add(1) > maxFingerprints {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, fp)
	return fp
}

func (c *fingerprints) compute(secret string) string {
	var d [8]byte
	if IsFingerprint(secret) {
		if c.mac.New == nil {
			return secret
		}
		hex.Decode(d[:], []byte(secret[len(fingerprintPrefix):]))
	} else {
		sum := sha256.Sum256([]byte(secret))
		copy(d[:], sum[:8])
	}
	return c.keyed(d)
}

// keyed returns the fingerprint of the digest d: keyed when the cache has a
// key, d itself in hex otherwise.
func (c *fingerprints) keyed(d [8]byte) string {
	if c.mac.New != nil {
		mac := c.mac.Get().(hash.Hash)
		mac.Reset()
		mac.Write(d[:])
		var sum [sha256.Size]byte
		copy(d[:], mac.Sum(sum[:0]))
		c.mac.Put(mac)
	}
	var out [len(fingerprintPrefix) + 16]byte
	copy(out[:], fingerprintPrefix)
	hex.Encode(out[len(fingerprintPrefix):], d[:])
	return string(out[:])
}

// Fingerprint returns the stored form of a secret value: its fingerprint
// (keyed when the Scrubber has a key), from the cache of recent secrets. A
// value that is already a fingerprint is keyed like any other secret (an
// unkeyed Scrubber returns it unchanged).
func (s *Scrubber) Fingerprint(secret string) string { return s.fps.of(secret) }

// FingerprintOfHash is Fingerprint of the key whose KeyHash is keyHash,
// without the key: the alias table knows keys only by their hash. It
// returns "" when keyHash is not a hex SHA-256.
func (s *Scrubber) FingerprintOfHash(keyHash string) string {
	fp := FingerprintOfHash(keyHash)
	if fp == "" {
		return ""
	}
	return s.fps.of(fp)
}

// New returns an unkeyed Scrubber that scrubs the default secrets
// plus the extra header and query parameter names given, and keeps bodyCap
// bytes of each body (a negative bodyCap means DefaultBodyCap).
func New(extraHeaders, extraParams []string, bodyCap int) *Scrubber {
	return NewWith(Config{SecretHeaders: extraHeaders, SecretParams: extraParams, BodyCap: bodyCap})
}

// NewWith returns a Scrubber for cfg.
func NewWith(cfg Config) *Scrubber {
	s := &Scrubber{
		headers: map[string]bool{}, urlHdrs: map[string]bool{}, params: map[string]bool{}, fields: map[string]bool{},
		BodyCap: cfg.BodyCap, fps: newFingerprints(cfg.Key),
	}
	if cfg.BodyCap < 0 {
		s.BodyCap = DefaultBodyCap
	}
	for _, h := range append(append([]string{}, DefaultSecretHeaders...), cfg.SecretHeaders...) {
		s.headers[normName(h)] = true
	}
	for _, h := range URLHeaders {
		s.urlHdrs[normName(h)] = true
	}
	for _, p := range append(append([]string{}, DefaultSecretQueryParams...), cfg.SecretParams...) {
		s.params[strings.ToLower(p)] = true
	}
	for _, f := range append(append([]string{}, DefaultSecretFields...), cfg.SecretFields...) {
		n := normName(f)
		if n == "" {
			continue
		}
		s.fields[n] = true
		s.fieldEnds[n[0]] |= 1 << (n[len(n)-1] & 63)
	}
	return s
}

// fingerprintPrefix starts every fingerprint.
const fingerprintPrefix = "fp_"

// Fingerprint is the unkeyed fingerprint of a secret: "fp_" and the first
// 16 hex digits of its SHA-256. Senders that do not hold the installation
// key send secrets in this form; the collector's keyed Scrubber turns it
// into the stored form (Scrubber.Fingerprint).
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return fingerprintPrefix + hex.EncodeToString(sum[:8])
}

// FingerprintOfHash is the unkeyed Fingerprint of a key whose KeyHash is
// keyHash, without the key, or "" when keyHash is not hex.
func FingerprintOfHash(keyHash string) string {
	if len(keyHash) < 16 || !isLowerHex(keyHash[:16]) {
		return ""
	}
	return fingerprintPrefix + keyHash[:16]
}

// IsFingerprint reports whether s has the form of a fingerprint: "fp_" and
// exactly 16 lower-case hex digits. Anything else that merely starts with
// "fp_" is an ordinary value (and, where a secret belongs, a secret).
func IsFingerprint(s string) bool {
	return len(s) == len(fingerprintPrefix)+16 && strings.HasPrefix(s, fingerprintPrefix) && isLowerHex(s[len(fingerprintPrefix):])
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

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
func (s *Scrubber) APIKey(e *apimeter.Event) string {
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

// Scrub makes e safe to store. Secret header values, the values of secret
// query parameters (in the URI, in URL-valued headers, in fragments), URI
// user info and path parameters such as ;jsessionid=, the values of secret
// fields in JSON and form bodies (base64 ones included) and in metadata,
// the session token and the API key all become fingerprints (keyed when the
// Scrubber has a key); bodies are capped. It fills APIKeyID from the key
// headers when the event has none. A value that already has the form of a
// fingerprint is keyed like any other: nothing a sender sends reaches
// storage unkeyed. An unkeyed Scrubber is idempotent; a keyed one runs once
// per event, in the collector.
func (s *Scrubber) Scrub(e *apimeter.Event) {
	if e.APIKeyID == "" {
		if k := s.APIKey(e); k != "" {
			e.APIKeyID = s.fps.of(k)
		}
	} else {
		e.APIKeyID = s.fps.of(e.APIKeyID)
	}
	if e.SessionToken != "" {
		e.SessionToken = s.fps.of(BearerToken(e.SessionToken))
	}
	reqCT := s.scrubHeaders(e.RequestHeaders)
	respCT := s.scrubHeaders(e.ResponseHeaders)
	e.URI = s.ScrubURL(e.URI)
	e.Path = s.scrubPathParams(e.Path)
	e.Query = s.ScrubQuery(e.Query)
	e.TargetURL = s.ScrubURL(e.TargetURL)
	s.CapBody(&e.RequestBody)
	s.CapBody(&e.ResponseBody)
	s.ScrubBody(&e.RequestBody, reqCT)
	s.ScrubBody(&e.ResponseBody, respCT)
	if len(e.Metadata) > 0 {
		if m, ok := s.ScrubJSON(unsafe.String(&e.Metadata[0], len(e.Metadata))); ok {
			e.Metadata = []byte(m)
		}
	}
	for _, f := range []*string{&e.ID, &e.Org, &e.Env, &e.APIName, &e.Method, &e.URI, &e.Path, &e.Route, &e.Query,
		&e.UserID, &e.CompanyID, &e.APIKeyID, &e.ClientIP, &e.UserAgent, &e.TargetURL, &e.Tags} {
		if !utf8.ValidString(*f) {
			*f = strings.ToValidUTF8(*f, "\uFFFD")
		}
	}
}

// scrubHeaders scrubs h in place and returns its Content-Type, which says
// how to read the body that goes with it.
func (s *Scrubber) scrubHeaders(h apimeter.Headers) (contentType string) {
	for i := range h {
		k := s.HeaderKind(h[i].Name)
		if k&ContentTypeHeader != 0 {
			contentType = h[i].Value
		}
		h[i].Value = s.HeaderValue(k, h[i].Value)
	}
	return contentType
}

// HeaderValue returns the value to keep of a header of kind k: a secret
// one's fingerprint, a URL's scrubbed form (also for a header of no kind
// whose value starts with a scheme), else value itself.
func (s *Scrubber) HeaderValue(k HeaderKind, value string) string {
	switch {
	case k&SecretHeader != 0:
		if value != "" {
			return s.fps.of(value)
		}
	case k&URLHeader != 0 || hasScheme(value):
		return s.scrubHeaderURL(value)
	}
	return value
}

// HeaderKind says what a header's value is to the Scrubber.
type HeaderKind uint8

const (
	// SecretHeader values are replaced by their fingerprints.
	SecretHeader HeaderKind = 1 << iota
	// URLHeader values are URLs, scrubbed as the request URI.
	URLHeader
	// ContentTypeHeader is Content-Type.
	ContentTypeHeader
)

// HeaderKind returns what the named header is: a secret one (in
// DefaultSecretHeaders or the configured ones, or caught by the name rules),
// a URL-valued one, or neither. A service sends the same few names again
// and again, so answers are cached.
func (s *Scrubber) HeaderKind(name string) HeaderKind {
	known := s.names.Load()
	if known != nil {
		if k, ok := (*known)[name]; ok {
			return k
		}
	}
	k := s.headerKind(name)
	// Copy on write: readers take the map without a lock. Past maxNames
	// (a sender making up names) answers are computed each time instead.
	var old map[string]HeaderKind
	if known != nil {
		old = *known
	}
	if len(old) < maxNames {
		next := make(map[string]HeaderKind, len(old)+1)
		for n, v := range old {
			next[n] = v
		}
		next[strings.Clone(name)] = k
		s.names.CompareAndSwap(known, &next)
	}
	return k
}

func (s *Scrubber) headerKind(name string) HeaderKind {
	n := normName(name)
	switch {
	case s.headers[n]:
		return SecretHeader
	case s.urlHdrs[n]:
		return URLHeader
	case n == "contenttype":
		return ContentTypeHeader
	}
	for _, w := range secretHeaderWords {
		if strings.Contains(n, w) {
			return SecretHeader
		}
	}
	for _, w := range secretHeaderSuffixes {
		if strings.HasSuffix(n, w) {
			return SecretHeader
		}
	}
	return 0
}

// maxNames bounds the header names whose kinds are remembered.
const maxNames = 512

// normName is a header or field name in lower case with '-' and '_' left
// out, the form the name lists are compared in.
func normName(name string) string {
	var buf [64]byte
	n := buf[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		n = append(n, c)
	}
	return string(n)
}

// secretField reports whether a JSON or form field name is a secret one.
// It does not allocate for names of up to 64 bytes.
func (s *Scrubber) secretField(name string) bool {
	if len(name) < 2 {
		return false
	}
	// Most names are rejected here, without normalising: no listed name
	// starts and ends with their letters, and they hold no secret word.
	if first, last := lowerASCII(name[0]), lowerASCII(name[len(name)-1]); len(name) <= 64 &&
		first != '-' && first != '_' && last != '-' && last != '_' && s.fieldEnds[first]&(1<<(last&63)) == 0 {
		if len(name) < 6 {
			return false
		}
		// The words start with 'p' or 's'.
		cand := false
		for i := 0; i < len(name) && !cand; i++ {
			switch name[i] {
			case 'p', 'P', 's', 'S':
				cand = true
			}
		}
		if !cand {
			return false
		}
	}
	if len(name) > 64 {
		n := normName(name)
		for _, w := range secretFieldWords {
			if strings.Contains(n, w) {
				return true
			}
		}
		return s.fields[n]
	}
	var buf [64]byte
	n := buf[:0]
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-' || c == '_':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		n = append(n, c)
	}
	if len(n) == 0 {
		return false
	}
	if s.fieldEnds[n[0]]&(1<<(n[len(n)-1]&63)) != 0 && s.fields[string(n)] {
		return true
	}
	// secretFieldWords.
	for i := 0; i+6 <= len(n); i++ {
		switch n[i] {
		case 'p':
			if string(n[i:i+6]) == "passwd" || i+8 <= len(n) && string(n[i:i+8]) == "password" {
				return true
			}
		case 's':
			if i+6 <= len(n) && string(n[i:i+6]) == "secret" {
				return true
			}
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// secretParam reports whether a query or form parameter, unescaped, is a
// secret one: a secret query parameter or a secret field.
func (s *Scrubber) secretParam(name string) bool {
	n := paramName(name)
	return s.params[n] || s.secretField(n)
}

// ScrubQuery returns the raw query string q with the values of secret
// parameters replaced by their fingerprints, and q itself when it has none.
func (s *Scrubber) ScrubQuery(q string) string {
	var out []byte // nil until a parameter changes
	for rest, start := q, 0; rest != ""; {
		p, next, more := strings.Cut(rest, "&")
		end := start + len(p)
		if name, raw, ok := strings.Cut(p, "="); ok && raw != "" && s.secretParam(name) {
			val := raw
			if strings.ContainsAny(val, "%+") {
				if v, err := url.QueryUnescape(val); err == nil {
					val = v
				}
			}
			// An unkeyed Scrubber leaves a fingerprint as it is: no copy.
			if fp := s.fps.of(val); fp != raw || out != nil {
				if out == nil {
					out = append(make([]byte, 0, len(q)+64), q[:start]...)
				}
				out = append(append(append(out, name...), '='), fp...)
			}
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

// CapBody cuts b to the Scrubber's BodyCap, at a UTF-8 boundary (of the
// decoded bytes for a base64 body), and marks it Truncated.
func (s *Scrubber) CapBody(b *apimeter.Body) {
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
