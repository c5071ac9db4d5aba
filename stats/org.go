package stats

import (
	"net/http"
	"slices"
	"strings"

	"github.com/apimeter/apimeter/server"
)

// orgHandler answers the organization reads Apigee's clients make before
// they ask for stats (apigee-edge-js reads the org's properties when it
// signs in with Basic credentials): the org, its envs, one env.
type orgHandler struct{ h *Handler }

// Org is an organization in the shape of Apigee's management API.
type Org struct {
	Name         string     `json:"name"`
	DisplayName  string     `json:"displayName"`
	Type         string     `json:"type"`
	Environments []string   `json:"environments"`
	Properties   Properties `json:"properties"`
}

// Properties is Apigee's list of name/value properties.
type Properties struct {
	Property []Property `json:"property"`
}

// Property is one name/value property.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// envs lists the envs of org that the caller's key covers.
func (o orgHandler) envs(r *http.Request, org string) []string {
	var all []string
	if o.h.cfg.Envs != nil {
		all = slices.Clone(o.h.cfg.Envs(org))
	}
	if g, ok := server.GrantFrom(r.Context()); ok {
		all = slices.DeleteFunc(all, func(e string) bool { return !g.AllowsEnv(e) })
	}
	if all == nil {
		all = []string{}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

func (o orgHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	org, env := r.PathValue("org"), r.PathValue("env")
	envs := o.envs(r, org)
	switch {
	case env != "":
		if !slices.Contains(envs, env) {
			writeJSON(w, http.StatusNotFound, ErrorBody{Code: "messaging.config.beans.EnvironmentDoesNotExist",
				Message: "environment " + env + " does not exist in organization " + org + " (no application id names it)", Contexts: []string{}})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": env, "properties": Properties{Property: []Property{}}})
	case strings.HasSuffix(r.URL.Path, "/environments"):
		writeJSON(w, http.StatusOK, envs)
	default:
		writeJSON(w, http.StatusOK, Org{Name: org, DisplayName: org, Type: "paid", Environments: envs,
			Properties: Properties{Property: []Property{}}})
	}
}

// WriteAuthError answers the key check's 401 and 403 in Apigee's shape.
func (o orgHandler) WriteAuthError(w http.ResponseWriter, r *http.Request, e *server.APIError) {
	writeAuthError(w, e)
}
