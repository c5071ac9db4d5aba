package auth

import (
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/apimeter/apimeter/server"
)

// CookieName is the session cookie the dashboard signs in with.
const CookieName = "apimeter_session"

// Defaults of Config.
const (
	DefaultSessionTTL = 12 * time.Hour
	DefaultSignInTTL  = 5 * time.Minute
)

// Config configures a Guard. Keys is required.
type Config struct {
	Keys *Keys
	// IsAppID reports whether a credential is a collector application id,
	// so that it is answered 403 (it only writes) rather than 401.
	IsAppID func(id string) bool
	// Envs lists the envs of an org, for the session answer of a key that
	// covers every env.
	Envs func(org string) []string
	// SessionTTL is how long a session lasts; 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// SignInTTL is how long a sign-in token may wait to be used; 0 means
	// DefaultSignInTTL.
	SignInTTL time.Duration
	Logger    *slog.Logger
	// Now is the clock of sessions and tokens; nil means time.Now.
	Now func() time.Time
}

// Guard checks the credential of read and admin requests (it is the
// server's Authorizer) and serves keys, sessions and sign-in over HTTP.
// Sessions and sign-in tokens live in memory: a restart signs everyone
// out, and each server of several has its own.
type Guard struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]session // session token -> session
	tokens   map[string]session // sign-in token -> key, until used
}

type session struct {
	keyID   string
	expires time.Time
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.SignInTTL <= 0 {
		cfg.SignInTTL = DefaultSignInTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IsAppID == nil {
		cfg.IsAppID = func(string) bool { return false }
	}
	return &Guard{cfg: cfg, log: cfg.Logger, sessions: map[string]session{}, tokens: map[string]session{}}
}

// Authenticate returns the grant of r's credential, found in this order:
// Authorization: Bearer KEY; Authorization: Basic with the key as password
// (any user name; or the key as user name and no password); the session
// cookie. A collector application id sent in any of these places, or in
// X-Moesif-Application-Id, is server.ErrAppID.
func (g *Guard) Authenticate(r *http.Request) (server.Grant, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		cred, ok := credential(h)
		if !ok {
			return server.Grant{}, server.ErrBadCredential
		}
		return g.key(cred)
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return g.session(c.Value)
	}
	if id := r.Header.Get(server.AppIDHeader); id != "" && g.cfg.IsAppID(id) {
		return server.Grant{}, server.ErrAppID
	}
	return server.Grant{}, server.ErrNoCredential
}

// credential reads the key out of an Authorization header value.
func credential(h string) (string, bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		user, pass, _ := strings.Cut(string(b), ":")
		if pass == "" {
			pass = user
		}
		return pass, pass != ""
	}
	return "", false
}

func (g *Guard) key(cred string) (server.Grant, error) {
	if strings.HasPrefix(cred, Prefix) {
		if k, ok := g.cfg.Keys.Lookup(cred); ok {
			return k.Grant(), nil
		}
		return server.Grant{}, server.ErrBadCredential
	}
	if g.cfg.IsAppID(cred) {
		return server.Grant{}, server.ErrAppID
	}
	return server.Grant{}, server.ErrBadCredential
}

func (g *Guard) session(token string) (server.Grant, error) {
	now := g.cfg.Now()
	g.mu.Lock()
	s, ok := g.sessions[token]
	g.mu.Unlock()
	if !ok || !now.Before(s.expires) {
		return server.Grant{}, server.ErrBadCredential
	}
	k, ok := g.cfg.Keys.ByID(s.keyID)
	if !ok || k.Revoked != nil {
		return server.Grant{}, server.ErrBadCredential
	}
	return k.Grant(), nil
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// SignInToken returns a one-time token that signs a browser in as key
// keyID at GET /signin?token=T&next=/ui/. It works once, within SignInTTL,
// in this process only.
func (g *Guard) SignInToken(keyID string) (token string) {
	token = randomToken()
	now := g.cfg.Now()
	g.mu.Lock()
	g.sweepLocked(now)
	g.tokens[token] = session{keyID: keyID, expires: now.Add(g.cfg.SignInTTL)}
	g.mu.Unlock()
	return token
}

// redeem uses a sign-in token up and returns its key id.
func (g *Guard) redeem(token string) (string, bool) {
	now := g.cfg.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.tokens[token]
	delete(g.tokens, token)
	if !ok || !now.Before(s.expires) {
		return "", false
	}
	return s.keyID, true
}

// newSession starts a session for keyID and returns its token.
func (g *Guard) newSession(keyID string) string {
	token := randomToken()
	now := g.cfg.Now()
	g.mu.Lock()
	g.sweepLocked(now)
	g.sessions[token] = session{keyID: keyID, expires: now.Add(g.cfg.SessionTTL)}
	g.mu.Unlock()
	return token
}

func (g *Guard) endSession(token string) {
	g.mu.Lock()
	delete(g.sessions, token)
	g.mu.Unlock()
}

// sweepLocked drops expired sessions and tokens; it runs on every sign-in,
// which keeps both maps as small as the live sessions.
func (g *Guard) sweepLocked(now time.Time) {
	for t, s := range g.sessions {
		if !now.Before(s.expires) {
			delete(g.sessions, t)
		}
	}
	for t, s := range g.tokens {
		if !now.Before(s.expires) {
			delete(g.tokens, t)
		}
	}
}
