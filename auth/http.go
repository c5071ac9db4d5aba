package auth

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apimeter/apimeter/server"
)

// Mux is where the Guard's routes go: server.Server, whose Handle puts the
// key check in front of each route as RouteScope says and whose
// HandleScope sets the scope explicitly.
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandleScope(pattern string, need server.Scope, h http.Handler)
}

// Register adds the Guard's routes:
//
//	POST   /v1/session        public: {"key":"..."} or form key=... -> session cookie
//	GET    /v1/session        any key or session: who am I
//	DELETE /v1/session        public: sign out
//	GET    /signin?token=&next=  public: one-time sign-in link -> cookie, redirect
//	POST   /v1/keys           admin: create a key of the caller's org
//	GET    /v1/keys           admin: the org's keys (never a key itself)
//	DELETE /v1/keys/{id}      admin: revoke a key of the caller's org
func (g *Guard) Register(mux Mux) {
	mux.HandleScope("POST /v1/session", server.Public, http.HandlerFunc(g.signIn))
	mux.HandleScope("GET /v1/session", server.Read, http.HandlerFunc(g.whoAmI))
	mux.HandleScope("DELETE /v1/session", server.Public, http.HandlerFunc(g.signOut))
	mux.HandleScope("GET /signin", server.Public, http.HandlerFunc(g.signInLink))
	mux.Handle("POST /v1/keys", http.HandlerFunc(g.createKey))
	mux.Handle("GET /v1/keys", http.HandlerFunc(g.listKeys))
	mux.Handle("DELETE /v1/keys/{id}", http.HandlerFunc(g.revokeKey))
}

func (g *Guard) fail(w http.ResponseWriter, r *http.Request, err error) {
	server.WriteError(w, r, g.log, err)
}

func apiErr(status int, code, msg string) *server.APIError {
	return &server.APIError{Status: status, Code: code, Message: msg}
}

// SessionJSON is the answer of the session routes.
type SessionJSON struct {
	Org   string   `json:"org"`
	Envs  []string `json:"envs"`
	Scope string   `json:"scope"`
	Name  string   `json:"name"`
}

func (g *Guard) sessionJSON(gr server.Grant) SessionJSON {
	envs := gr.Envs
	if len(envs) == 0 && g.cfg.Envs != nil {
		envs = g.cfg.Envs(gr.Org)
	}
	if envs == nil {
		envs = []string{}
	}
	return SessionJSON{Org: gr.Org, Envs: envs, Scope: gr.Scope.String(), Name: gr.Name}
}

func (g *Guard) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		// Behind a TLS-terminating proxy the request arrives in plain HTTP;
		// trusting X-Forwarded-Proto here can only make the cookie stricter.
		Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	})
}

// sameOrigin refuses a sign-in posted by another site's page, which would
// sign the browser in under the other site's key. Browsers say where a
// request comes from in Sec-Fetch-Site; without it, Origin is compared with
// the host the browser asked for (X-Forwarded-Host behind a proxy that
// rewrites Host). A request with neither (curl, scripts) is no browser's.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		host, _, _ = strings.Cut(fh, ",")
		host = strings.TrimSpace(host)
	}
	return u.Host == host
}

func (g *Guard) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		g.fail(w, r, apiErr(http.StatusForbidden, "cross_origin", "sign-in must come from apimeter's own pages"))
		return
	}
	if lim := g.cfg.Limiter; lim != nil {
		if err := lim.Check(r); err != nil {
			g.fail(w, r, err)
			return
		}
	}
	var key string
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		if err := r.ParseForm(); err != nil {
			g.fail(w, r, apiErr(http.StatusBadRequest, "invalid_form", "body must be a form with a key field: "+err.Error()))
			return
		}
		key = r.PostForm.Get("key")
	default:
		var in struct {
			Key string `json:"key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			g.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_json", Field: "key", Message: `body must be JSON {"key":"..."} or a form with a key field: ` + err.Error()})
			return
		}
		key = in.Key
	}
	key = strings.TrimSpace(key)
	if key == "" {
		g.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "missing_key", Field: "key", Message: "key is required"})
		return
	}
	gr, err := g.key(key)
	switch {
	case errors.Is(err, server.ErrAppID):
		g.fail(w, r, apiErr(http.StatusForbidden, "forbidden", err.Error()))
		return
	case err != nil:
		if g.cfg.Limiter != nil {
			g.cfg.Limiter.Failed(r)
		}
		g.fail(w, r, apiErr(http.StatusUnauthorized, "invalid_key", err.Error()))
		return
	}
	g.setCookie(w, r, g.newSession(gr.KeyID), int(g.cfg.SessionTTL/time.Second))
	server.WriteJSON(w, http.StatusOK, g.sessionJSON(*gr))
}

func (g *Guard) whoAmI(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	server.WriteJSON(w, http.StatusOK, g.sessionJSON(gr))
}

func (g *Guard) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		g.endSession(c.Value)
	}
	g.setCookie(w, r, "", -1)
	server.WriteJSON(w, http.StatusOK, map[string]bool{"signed_out": true})
}

// safeNext returns next when it is a path on this site ("/ui/..."), else
// "/ui/": a sign-in link must not send the browser anywhere else.
func safeNext(next string) string {
	const def = "/ui/"
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return def
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return def
	}
	return next
}

func (g *Guard) signInLink(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, ok := g.redeem(q.Get("token"))
	if !ok {
		g.failLink(w, r, apiErr(http.StatusUnauthorized, "invalid_token", "the sign-in link is unknown, used or expired; ask for a new one"))
		return
	}
	if k, ok := g.cfg.Keys.ByID(id); !ok || k.Revoked != nil {
		g.failLink(w, r, apiErr(http.StatusUnauthorized, "invalid_key", "the key of this sign-in link is not valid (unknown or revoked)"))
		return
	}
	g.setCookie(w, r, g.newSession(id), int(g.cfg.SessionTTL/time.Second))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, safeNext(q.Get("next")), http.StatusSeeOther)
}

// failLink answers a sign-in link that cannot sign in. A browser (it asks
// for HTML) is sent to the dashboard's sign-in form with the error's code
// in signin=, which the page says in words: a person who opens a used link
// again sees the form, not a JSON error. Other clients get the JSON error.
func (g *Guard) failLink(w http.ResponseWriter, r *http.Request, e *server.APIError) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		g.fail(w, r, e)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/ui/?signin="+url.QueryEscape(e.Code), http.StatusSeeOther)
}

// KeyJSON is a key as the HTTP API shows it: never the key itself, except
// once in the answer of its creation.
type KeyJSON struct {
	ID      string     `json:"id"`
	Org     string     `json:"org"`
	Envs    []string   `json:"envs"`
	Scope   string     `json:"scope"`
	Name    string     `json:"name,omitempty"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
	Key     string     `json:"key,omitempty"`
}

func keyJSON(k Key) KeyJSON {
	envs := k.Envs
	if envs == nil {
		envs = []string{}
	}
	return KeyJSON{ID: k.ID, Org: k.Org, Envs: envs, Scope: k.Scope, Name: k.Name, Created: k.Created, Revoked: k.Revoked}
}

func (g *Guard) createKey(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	var in struct {
		Org   string   `json:"org"`
		Envs  []string `json:"envs"`
		Env   string   `json:"env"`
		Scope string   `json:"scope"`
		Name  string   `json:"name"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		g.fail(w, r, apiErr(http.StatusBadRequest, "invalid_json", `body must be JSON {"scope":"read"|"admin","envs":[...],"name":"..."}: `+err.Error()))
		return
	}
	if in.Org == "" {
		in.Org = gr.Org
	}
	if in.Env != "" {
		in.Envs = append(in.Envs, in.Env)
	}
	if err := server.CheckAccess(r, in.Org, ""); err != nil {
		g.fail(w, r, err)
		return
	}
	// An admin key bound to some envs makes keys for those envs only.
	if len(gr.Envs) > 0 {
		if len(in.Envs) == 0 {
			in.Envs = gr.Envs
		}
		for _, e := range in.Envs {
			if !gr.AllowsEnv(e) {
				g.fail(w, r, apiErr(http.StatusForbidden, "forbidden", "the key does not cover env "+e))
				return
			}
		}
	}
	k, secret, err := g.cfg.Keys.Create(Spec{Org: in.Org, Envs: in.Envs, Scope: in.Scope, Name: in.Name})
	if err != nil {
		g.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_key_spec", Message: err.Error()})
		return
	}
	out := keyJSON(k)
	out.Key = secret
	w.Header().Set("Cache-Control", "no-store")
	server.WriteJSON(w, http.StatusCreated, out)
}

func (g *Guard) listKeys(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	out := []KeyJSON{}
	for _, k := range g.cfg.Keys.List(gr.Org) {
		out = append(out, keyJSON(k))
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"org": gr.Org, "keys": out})
}

func (g *Guard) revokeKey(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	k, err := g.cfg.Keys.Revoke(gr.Org, r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		g.fail(w, r, apiErr(http.StatusNotFound, "not_found", "no key with that id in org "+gr.Org))
		return
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, keyJSON(k))
}
