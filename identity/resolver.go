package identity

import (
	"context"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
)

// Config configures a Resolver. Every part is optional.
type Config struct {
	// Aliases is the alias table; nil means none.
	Aliases Aliases
	// JWT reads user ids (and company claims) from bearer tokens; nil
	// means tokens are not read.
	JWT *JWT
	// Company are the company rules, tried in order when neither the sender
	// nor the alias entry names the company.
	Company []CompanyRule
	// ClientIDHeaders are request headers carrying a client id to look up
	// in the alias table (after the API key and the bearer token).
	ClientIDHeaders []string
}

// Resolver decides who made each call. It implements apimeter.Identifier
// and runs before scrubbing, while credentials are still on the event. For
// the user, in order:
//
//  1. the user id the sender gave;
//  2. the alias-table entry (valid at the call's time) of the API key, the
//     bearer token, the session token or a client id, tried in that order;
//  3. the JWT's user claim (verified when keys are configured);
//  4. no one.
//
// The company is the sender's, else the alias entry's (when that entry's
// user is the call's user), else the first company rule that finds one.
// When a credential matched an alias and the event has no API key id, the
// key's fingerprint becomes the API key id. Lookups for a whole batch go to
// the alias table at once.
type Resolver struct {
	cfg Config
	// credential extraction reuses the scrubber's notion of an API key.
	scrub *scrub.Scrubber
}

// NewResolver returns a Resolver for cfg.
func NewResolver(cfg Config) *Resolver {
	return &Resolver{cfg: cfg, scrub: scrub.New(nil, nil, 0)}
}

// maxCreds is how many credentials per event are looked up.
const maxCreds = 4

type creds struct {
	raw   [maxCreds]string
	n     int
	first int // index of the first AliasRef of this event
}

func (c *creds) add(s string) {
	s = strings.TrimSpace(s)
	if s == "" || scrub.IsFingerprint(s) || c.n == maxCreds {
		return
	}
	for i := 0; i < c.n; i++ {
		if c.raw[i] == s {
			return
		}
	}
	c.raw[c.n] = s
	c.n++
}

// Identify implements apimeter.Identifier.
func (r *Resolver) Identify(ctx context.Context, events []apimeter.Event) error {
	cs := make([]creds, len(events))
	refs := make([]AliasRef, 0, 2*len(events))
	for i := range events {
		e := &events[i]
		c := &cs[i]
		if e.APIKeyID != "" {
			c.add(e.APIKeyID)
		}
		c.add(r.scrub.APIKey(e))
		bearer := scrub.BearerToken(e.RequestHeaders.Get("Authorization"))
		c.add(bearer)
		c.add(scrub.BearerToken(e.SessionToken))
		for _, h := range r.cfg.ClientIDHeaders {
			c.add(e.RequestHeaders.Get(h))
		}
		c.first = len(refs)
		if r.cfg.Aliases != nil && (e.UserID == "" || e.CompanyID == "") {
			for j := 0; j < c.n; j++ {
				refs = append(refs, AliasRef{Org: e.Org, Env: e.Env, KeyHash: scrub.KeyHash(c.raw[j])})
			}
		} else {
			c.n = 0 // nothing to look up
		}
	}
	found := make([]Alias, len(refs))
	if len(refs) > 0 {
		if err := r.cfg.Aliases.LookupAliases(ctx, refs, found); err != nil {
			return fmt.Errorf("identify: %w", err)
		}
	}
	for i := range events {
		r.resolve(&events[i], &cs[i], found)
	}
	return nil
}

func (r *Resolver) resolve(e *apimeter.Event, c *creds, found []Alias) {
	var hit *Alias
	for j := 0; j < c.n; j++ {
		a := &found[c.first+j]
		if a.UserID != "" && a.ValidAt(e.RequestTime) {
			hit = a
			break
		}
	}
	if hit != nil {
		if e.UserID == "" {
			e.UserID = hit.UserID
		}
		if e.CompanyID == "" && hit.UserID == e.UserID {
			e.CompanyID = hit.CompanyID
		}
		if e.APIKeyID == "" {
			// The fingerprint is a prefix of the hash already computed.
			e.APIKeyID = hit.KeyID()
		}
	}
	var claims jwt.MapClaims
	if r.cfg.JWT != nil && (e.UserID == "" || e.CompanyID == "") {
		claims = r.cfg.JWT.Claims(scrub.BearerToken(e.RequestHeaders.Get("Authorization")), e.RequestTime)
		if claims == nil && e.SessionToken != "" {
			claims = r.cfg.JWT.Claims(scrub.BearerToken(e.SessionToken), e.RequestTime)
		}
		if claims != nil && e.UserID == "" {
			e.UserID = ClaimString(claims, r.cfg.JWT.UserClaim())
		}
	}
	if e.CompanyID == "" {
		for _, rule := range r.cfg.Company {
			if id := rule.Company(e, claims); id != "" {
				e.CompanyID = id
				break
			}
		}
	}
}
