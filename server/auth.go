package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Scope is what a route asks of the caller's key.
type Scope uint8

// Scopes, each including the one before it.
const (
	// Public routes answer anyone: the collector (which checks its
	// application id itself), health, sign-in.
	Public Scope = iota
	// Read routes need a read or admin key of the org: Metrics API, events,
	// profiles, usage, dashboard reads.
	Read
	// Admin routes need an admin key of the org: aliases, keys.
	Admin
)

func (s Scope) String() string {
	switch s {
	case Read:
		return "read"
	case Admin:
		return "admin"
	}
	return "public"
}

// Grant is what a credential allows: one org, optionally only some of its
// envs, with a scope.
type Grant struct {
	KeyID string
	Name  string
	Org   string
	// Envs, when not empty, are the only envs the key may read or change.
	Envs  []string
	Scope Scope
	// Session is true when the credential is the dashboard's session
	// cookie (a person signed in), not a key sent by a client.
	Session bool
}

// AllowsEnv reports whether the grant covers env.
func (g Grant) AllowsEnv(env string) bool {
	return len(g.Envs) == 0 || slices.Contains(g.Envs, env)
}

// Errors an Authorizer returns; the guard turns them into 401 and 403.
var (
	// ErrNoCredential: the request carries no key, session or token (401).
	ErrNoCredential = errors.New("no credential")
	// ErrBadCredential: the credential is no valid key: unknown, revoked or
	// malformed (401).
	ErrBadCredential = errors.New("the key is not valid (unknown or revoked)")
	// ErrAppID: the credential is a collector application id, which only
	// writes (403).
	ErrAppID = errors.New("collector application ids only send events; read and admin routes need a key (`apimeter keys create`)")
)

// Authorizer finds what the credential of a request allows. Errors other
// than the ones above are answered 500.
// The Grant returned is shared and must not be changed.
type Authorizer interface {
	Authenticate(r *http.Request) (*Grant, error)
}

// AuthErrorWriter is implemented by handlers whose API has its own error
// shape (the Metrics API answers as Apigee does); the guard then writes its
// 401 and 403 through it instead of WriteError.
type AuthErrorWriter interface {
	WriteAuthError(w http.ResponseWriter, r *http.Request, e *APIError)
}

type grantKey struct{}

// grantCtx carries the (shared, unchanging) Grant of a request.
type grantCtx struct {
	context.Context
	g *Grant
}

func (c *grantCtx) Value(key any) any {
	if _, ok := key.(grantKey); ok {
		return c.g
	}
	return c.Context.Value(key)
}

func withGrant(r *http.Request, g *Grant) *http.Request {
	return r.WithContext(&grantCtx{Context: r.Context(), g: g})
}

// GrantFrom returns the grant a guarded route was called with. It is
// there on every route without {org} in its pattern (the handler learns
// the caller's org from it), wherever the key is bound to some envs and
// for a dashboard session (its reads have a quota of their own). On a
// route with {org} called with a key of every env it is not (ok false):
// the guard has checked the path's org and env, nothing more is to be
// known, and leaving it out saves the request copy that carrying it costs
// (about half of the key check's time).
func GrantFrom(ctx context.Context) (Grant, bool) {
	g, ok := ctx.Value(grantKey{}).(*Grant)
	if !ok {
		return Grant{}, false
	}
	return *g, true
}

// WithGrant returns r carrying g, as the key check leaves it, for handlers
// served outside a Server's routes (tests, fuzzing).
func WithGrant(r *http.Request, g Grant) *http.Request { return withGrant(r, &g) }

// CheckAccess returns a 403 *APIError unless the grant of r covers org and
// env. Handlers of routes without {org} that read the org or env from
// somewhere the guard does not look (a JSON body, a default env) call it
// once they know them; the guard already checked the org and env of the
// path and of the query string. Without a grant (see GrantFrom) it is a
// 401.
func CheckAccess(r *http.Request, org, env string) error {
	g, ok := GrantFrom(r.Context())
	if !ok {
		return newError(http.StatusUnauthorized, "unauthorized", "this route needs a key")
	}
	if org != g.Org {
		return newError(http.StatusForbidden, "forbidden", "the key belongs to another org")
	}
	if env != "" && !g.AllowsEnv(env) {
		return newError(http.StatusForbidden, "forbidden", "the key does not cover env "+env)
	}
	return nil
}

// RouteScope is the scope a route pattern gets when it is registered with
// Handle:
//
//   - paths outside /v1/ (health, /metrics, the dashboard's files, /signin)
//     and the collector's paths are Public;
//   - /v1/aliases..., /v1/keys... and /v1/apps... are Admin;
//   - every other /v1/ path (/v1/o/{org}/..., /v1/organizations/{org}/...,
//     /v1/usage, ...) is Read for GET and HEAD and Admin for other methods;
//     a pattern without a method decides per request.
//
// So a new route under /v1/o/{org}/... is protected without anything more.
func RouteScope(pattern string) Scope {
	method, path := splitPattern(pattern)
	if !strings.HasPrefix(path, "/v1/") || collectorPaths[path] {
		return Public
	}
	for _, p := range []string{"/v1/aliases", "/v1/keys", "/v1/apps"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return Admin
		}
	}
	switch method {
	case "GET", "HEAD", "":
		return Read
	}
	return Admin
}

// collectorPaths are the /v1/ paths that senders reach with an application
// id (or nothing): they stay Public.
var collectorPaths = map[string]bool{
	"/v1/events": true, "/v1/events/batch": true,
	"/v1/users": true, "/v1/users/batch": true,
	"/v1/companies": true, "/v1/companies/batch": true,
	"/v1/subscriptions": true, "/v1/subscriptions/batch": true,
	"/v1/actions": true, "/v1/actions/batch": true,
	"/v1/config": true, "/v1/rules": true,
	// OTLP/HTTP (package otlp), wired in by cmd/.
	"/v1/traces": true, "/v1/logs": true,
}

// splitPattern splits a ServeMux pattern into its method and path (the host,
// if any, dropped).
func splitPattern(p string) (method, path string) {
	p = strings.TrimSpace(p)
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		method, p = p[:i], strings.TrimSpace(p[i+1:])
	}
	if i := strings.IndexByte(p, '/'); i > 0 {
		p = p[i:]
	}
	return method, p
}

// guard wraps h so that it runs only for a credential of need's scope (or
// higher) that covers the org and env of the request: the {org} and {env}
// path values, else the org and env query parameters. need Read on a
// pattern without a method means Admin for methods other than GET and HEAD.
func (s *Server) guard(need Scope, methodless, hasOrg bool, h http.Handler) http.Handler {
	aw, _ := h.(AuthErrorWriter)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := need
		if methodless && n == Read && r.Method != http.MethodGet && r.Method != http.MethodHead {
			n = Admin
		}
		if err := checkCrossSite(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		lim := s.cfg.AuthLimiter
		if lim != nil {
			if err := lim.Check(r); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		g, err := s.authorize(r, n)
		if err != nil {
			var ae *APIError
			if !errors.As(err, &ae) {
				s.writeError(w, r, err)
				return
			}
			if lim != nil && ae.Code == "invalid_key" {
				lim.Failed(r)
			}
			if ae.Status == http.StatusUnauthorized {
				challenge(w, r)
			}
			if aw != nil {
				aw.WriteAuthError(w, r, ae)
				return
			}
			s.writeError(w, r, ae)
			return
		}
		if !hasOrg || len(g.Envs) > 0 || g.Session {
			r = withGrant(r, g)
		}
		h.ServeHTTP(w, r)
	})
}

// challenge asks for credentials. Basic is offered only where a browser
// would show its own sign-in dialog usefully (a navigation, or no browser
// at all): a dashboard's fetch whose session ran out must not pop one up.
func challenge(w http.ResponseWriter, r *http.Request) {
	if m := r.Header.Get("Sec-Fetch-Mode"); m == "" || m == "navigate" {
		w.Header().Add("WWW-Authenticate", `Basic realm="apimeter", charset="UTF-8"`)
	}
	w.Header().Add("WWW-Authenticate", `Bearer realm="apimeter"`)
}

func (s *Server) authorize(r *http.Request, need Scope) (*Grant, error) {
	if s.cfg.Auth == nil {
		return nil, newError(http.StatusUnauthorized, "unauthorized", "this server has no keys configured; read and admin routes are closed")
	}
	g, err := s.cfg.Auth.Authenticate(r)
	switch {
	case err == nil && g == nil:
		return nil, errors.New("authorizer returned no grant and no error")
	case err == nil:
	case errors.Is(err, ErrNoCredential):
		return g, newError(http.StatusUnauthorized, "unauthorized", "a key is required: send Authorization: Bearer KEY, or Basic with the key as password (create one with `apimeter keys create`)")
	case errors.Is(err, ErrBadCredential):
		return g, newError(http.StatusUnauthorized, "invalid_key", err.Error())
	case errors.Is(err, ErrAppID):
		return g, newError(http.StatusForbidden, "forbidden", err.Error())
	default:
		return g, err
	}
	if g.Scope < need {
		return g, newError(http.StatusForbidden, "forbidden", "this route needs an "+need.String()+" key; the key is "+g.Scope.String())
	}
	org, env := r.PathValue("org"), r.PathValue("env")
	if org == "" {
		q := r.URL.Query()
		org = q.Get("org")
		if env == "" {
			env = q.Get("env")
		}
	}
	if org != "" && org != g.Org {
		return g, newError(http.StatusForbidden, "forbidden", "the key belongs to another org")
	}
	if env != "" && !g.AllowsEnv(env) {
		return g, newError(http.StatusForbidden, "forbidden", "the key does not cover env "+env)
	}
	return g, nil
}
