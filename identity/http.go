package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
)

// API is the admin HTTP API for aliases and usage:
//
//	PUT    /v1/aliases                     upsert; body {"org","env","key" or "key_hash","user_id","company_id","expires_at"}
//	GET    /v1/aliases?org=&env=&user_id=  a user's aliases
//	GET    /v1/aliases/{key_hash}?org=&env=
//	DELETE /v1/aliases/{key_hash}?org=&env=
//	GET    /v1/usage?org=&env=&period=2026-11&group=user_id
//
// env defaults to "prod"; org to the org of the caller's key. Every route
// needs a key covering the org and env: admin for aliases, read for usage
// (see server.RouteScope). Answers never hold a key, only
// its hash and fingerprint id. Errors have the collector's shape:
// {"error":{"code","message","field"}}.
type API struct {
	Aliases Aliases
	Meter   *Meter
	Logger  *slog.Logger
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
	// KeyID returns the fingerprint events store for the key whose hash is
	// given: the collector's Scrubber.FingerprintOfHash, keyed with the
	// installation's key. nil means the unkeyed Alias.KeyID.
	KeyID func(keyHash string) string
}

// Register adds the API's routes to mux.
func (a *API) Register(mux interface {
	Handle(pattern string, h http.Handler)
}) {
	mux.Handle("PUT /v1/aliases", http.HandlerFunc(a.putAlias))
	mux.Handle("GET /v1/aliases", http.HandlerFunc(a.listAliases))
	mux.Handle("GET /v1/aliases/{key_hash}", http.HandlerFunc(a.getAlias))
	mux.Handle("DELETE /v1/aliases/{key_hash}", http.HandlerFunc(a.deleteAlias))
	mux.Handle("GET /v1/usage", http.HandlerFunc(a.usage))
}

// AliasJSON is an alias as the API reads and writes it.
type AliasJSON struct {
	Org       string     `json:"org"`
	Env       string     `json:"env"`
	Key       string     `json:"key,omitempty"` // input only, never answered
	KeyHash   string     `json:"key_hash"`
	KeyID     string     `json:"key_id"`
	UserID    string     `json:"user_id"`
	CompanyID string     `json:"company_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	Expired   bool       `json:"expired,omitempty"`
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) toJSON(al Alias) AliasJSON {
	keyID := al.KeyID()
	if a.KeyID != nil {
		keyID = a.KeyID(al.KeyHash)
	}
	out := AliasJSON{Org: al.Org, Env: al.Env, KeyHash: al.KeyHash, KeyID: keyID, UserID: al.UserID, CompanyID: al.CompanyID, CreatedAt: al.CreatedAt.UTC()}
	if !al.ExpiresAt.IsZero() {
		t := al.ExpiresAt.UTC()
		out.ExpiresAt = &t
		out.Expired = !al.ValidAt(a.now())
	}
	return out
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		err = &server.APIError{Status: http.StatusBadRequest, Code: "invalid_" + fe.Field, Message: fe.Error(), Field: fe.Field}
	case errors.Is(err, apimeter.ErrNotFound):
		err = &server.APIError{Status: http.StatusNotFound, Code: "not_found", Message: "no alias for that key hash in this org and env"}
	}
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	server.WriteError(w, r, log, err)
}

// scope reads org and env from the query string; org defaults to the org
// of the caller's key. The key must cover both (the server's key check saw
// the org but not the default env).
func scope(r *http.Request) (org, env string, err error) {
	org, env = r.URL.Query().Get("org"), r.URL.Query().Get("env")
	if env == "" {
		env = "prod"
	}
	if g, ok := server.GrantFrom(r.Context()); ok && org == "" {
		org = g.Org
	}
	if org == "" {
		return "", "", fieldErr("org", "the org query parameter is required")
	}
	if err := server.CheckAccess(r, org, env); err != nil {
		return "", "", err
	}
	return org, env, nil
}

func (a *API) putAlias(w http.ResponseWriter, r *http.Request) {
	var in AliasJSON
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		a.fail(w, r, &server.APIError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "body must be a JSON alias: " + err.Error()})
		return
	}
	if in.Env == "" {
		in.Env = "prod"
	}
	if g, ok := server.GrantFrom(r.Context()); ok && in.Org == "" {
		in.Org = g.Org
	}
	// The org and env of the body are the ones changed: the key must cover
	// them, whatever the query string said.
	if err := server.CheckAccess(r, in.Org, in.Env); err != nil {
		a.fail(w, r, err)
		return
	}
	switch {
	case in.Key != "" && in.KeyHash != "" && scrub.KeyHash(in.Key) != in.KeyHash:
		a.fail(w, r, fieldErr("key_hash", "does not match key; send one of them"))
		return
	case in.Key != "":
		in.KeyHash = scrub.KeyHash(in.Key)
	case in.KeyHash == "":
		a.fail(w, r, fieldErr("key", "key or key_hash is required"))
		return
	}
	al := Alias{Org: in.Org, Env: in.Env, KeyHash: in.KeyHash, UserID: in.UserID, CompanyID: in.CompanyID, CreatedAt: a.now()}
	if in.ExpiresAt != nil {
		al.ExpiresAt = in.ExpiresAt.UTC()
	}
	if err := a.Aliases.PutAlias(r.Context(), al); err != nil {
		a.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, a.toJSON(al))
}

func (a *API) keyHash(r *http.Request) (string, error) {
	h := r.PathValue("key_hash")
	if !ValidKeyHash(h) {
		return "", fieldErr("key_hash", fmt.Sprintf("%q is not the 64 lower-case hex digits of a key's SHA-256", h))
	}
	return h, nil
}

func (a *API) getAlias(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err == nil {
		var h string
		if h, err = a.keyHash(r); err == nil {
			var al Alias
			if al, err = a.Aliases.GetAlias(r.Context(), org, env, h); err == nil {
				server.WriteJSON(w, http.StatusOK, a.toJSON(al))
				return
			}
		}
	}
	a.fail(w, r, err)
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err == nil {
		var h string
		if h, err = a.keyHash(r); err == nil {
			if err = a.Aliases.DeleteAlias(r.Context(), org, env, h); err == nil {
				server.WriteJSON(w, http.StatusOK, map[string]string{"deleted": h})
				return
			}
		}
	}
	a.fail(w, r, err)
}

func (a *API) listAliases(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	user := r.URL.Query().Get("user_id")
	if user == "" {
		a.fail(w, r, fieldErr("user_id", "the user_id query parameter is required"))
		return
	}
	as, err := a.Aliases.UserAliases(r.Context(), org, env, user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]AliasJSON, 0, len(as))
	for _, al := range as {
		out = append(out, a.toJSON(al))
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"org": org, "env": env, "user_id": user, "aliases": out})
}

func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	org, env, err := scope(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	dim, err := ParseDimension(r.URL.Query().Get("group"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := a.Meter.Report(r.Context(), org, env, r.URL.Query().Get("period"), dim, a.now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, rep)
}
