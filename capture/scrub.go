package capture

import (
	"net/http"
	"strings"

	"github.com/apimeter/apimeter"
)

// scrubber removes secrets from captured events before they leave the
// process, with the header list of apimeter.Scrubber. It is the sender's
// fast path: header names captured from net/http are canonical, so one map
// lookup decides, and the fingerprints of the few secrets a service sees
// again and again (tokens, keys) are cached. Events that carry a query
// string, or that Mask changed, also go through apimeter.Scrubber, which
// handles query parameters. Only the sending goroutine uses a scrubber.
type scrubber struct {
	full    *apimeter.Scrubber
	secret  map[string]bool   // canonical header names
	lower   []string          // the same names, lower case, for other spellings
	fps     map[string]string // secret -> fingerprint
	keyHdrs []string
}

// maxFingerprints bounds the fingerprint cache.
const maxFingerprints = 4096

func newScrubber(extraHeaders, extraParams []string, bodyCap int) *scrubber {
	s := &scrubber{
		full:    apimeter.NewScrubber(extraHeaders, extraParams, bodyCap),
		secret:  map[string]bool{},
		fps:     map[string]string{},
		keyHdrs: apimeter.APIKeyHeaders,
	}
	for _, h := range append(append([]string{}, apimeter.DefaultSecretHeaders...), extraHeaders...) {
		s.secret[http.CanonicalHeaderKey(h)] = true
		s.lower = append(s.lower, strings.ToLower(h))
	}
	return s
}

func (s *scrubber) isSecret(name string) bool {
	if s.secret[name] {
		return true
	}
	for _, l := range s.lower {
		if strings.EqualFold(name, l) {
			return true
		}
	}
	return false
}

func (s *scrubber) fingerprint(secret string) string {
	if fp, ok := s.fps[secret]; ok {
		return fp
	}
	if len(s.fps) >= maxFingerprints {
		clear(s.fps)
	}
	fp := apimeter.Fingerprint(secret)
	s.fps[secret] = fp
	return fp
}

// scrub makes e safe to send, with the same result as apimeter.Scrubber.
func (s *scrubber) scrub(e *apimeter.Event) {
	if e.APIKeyID == "" {
		for _, h := range s.keyHdrs {
			if v := e.RequestHeaders.Get(h); v != "" {
				e.APIKeyID = s.fingerprint(v)
				break
			}
		}
	}
	if e.SessionToken != "" && !strings.HasPrefix(e.SessionToken, "fp_") {
		e.SessionToken = s.fingerprint(apimeter.BearerToken(e.SessionToken))
	}
	s.headers(e.RequestHeaders)
	s.headers(e.ResponseHeaders)
	if e.Query != "" {
		s.full.Scrub(e)
	}
}

func (s *scrubber) headers(h apimeter.Headers) {
	for i := range h {
		if s.isSecret(h[i].Name) && !strings.HasPrefix(h[i].Value, "fp_") {
			h[i].Value = s.fingerprint(h[i].Value)
		}
	}
}
