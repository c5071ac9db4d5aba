package auth

import (
	"bytes"
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
	// Limiter, when set, throttles failed sign-ins per client address (the
	// server's, which throttles every other use of a wrong key).
	Limiter *server.AuthLimiter
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
func (g *Guard) Authenticate(r *http.Request) (*server.Grant, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		var buf [192]byte
		cred, ok := credentialBytes(h, buf[:0])
		if !ok {
			return nil, server.ErrBadCredential
		}
		return g.keyBytes(cred)
	}
	if c := cookie(r.Header, CookieName); c != "" {
		return g.session(c)
	}
	if id := r.Header.Get(server.AppIDHeader); id != "" && g.cfg.IsAppID(id) {
		return nil, server.ErrAppID
	}
	return nil, server.ErrNoCredential
}

// credential reads the key out of an Authorization header value.
func credential(h string) (string, bool) {
	b, ok := credentialBytes(h, nil)
	return string(b), ok
}

// credentialBytes reads the key out of an Authorization header value,
// decoding Basic credentials into buf when it is large enough (the check
// then allocates nothing).
func credentialBytes(h string, buf []byte) ([]byte, bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return append(buf, rest...), rest != ""
	case strings.EqualFold(scheme, "Basic"):
		n := base64.StdEncoding.DecodedLen(len(rest))
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		n, err := base64.StdEncoding.Decode(buf[:n], []byte(rest))
		if err != nil {
			return nil, false
		}
		b := buf[:n]
		user, pass, _ := bytes.Cut(b, []byte(":"))
		if len(pass) == 0 {
			pass = user
		}
		return pass, len(pass) > 0
	}
	return nil, false
}

// cookie returns the value of the named cookie, without parsing the
// others.
func cookie(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if v, ok := strings.CutPrefix(part, name+"="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

func (g *Guard) key(cred string) (*server.Grant, error) { return g.keyBytes([]byte(cred)) }

func (g *Guard) keyBytes(cred []byte) (*server.Grant, error) {
	if bytes.HasPrefix(cred, []byte(Prefix)) {
		if k := g.cfg.Keys.lookupBytes(cred); k != nil {
			return k.grant, nil
		}
		return nil, server.ErrBadCredential
	}
	if g.cfg.IsAppID(string(cred)) {
		return nil, server.ErrAppID
	}
	return nil, server.ErrBadCredential
}

func (g *Guard) session(token string) (*server.Grant, error) {
	now := g.cfg.Now()
	g.mu.Lock()
	s, ok := g.sessions[token]
	g.mu.Unlock()
	if !ok || !now.Before(s.expires) {
		return nil, server.ErrBadCredential
	}
	gr := g.cfg.Keys.grantOf(s.keyID)
	if gr == nil {
		return nil, server.ErrBadCredential
	}
	// A copy: the key's grant is shared by every request it signs.
	sg := *gr
	sg.Session = true
	return &sg, nil
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
