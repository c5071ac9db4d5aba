package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/apimeter/apimeter/server"
)

// TokenJSON is a token as the admin API shows it: never the token itself,
// except once in the answer of its creation.
type TokenJSON struct {
	ID       string     `json:"id"`
	Org      string     `json:"org"`
	Env      string     `json:"env"`
	Customer Customer   `json:"customer"`
	Name     string     `json:"name,omitempty"`
	Pages    []string   `json:"pages"`
	Meters   []string   `json:"meters"`
	Created  time.Time  `json:"created"`
	Expires  time.Time  `json:"expires"`
	Revoked  *time.Time `json:"revoked,omitempty"`
	Token    string     `json:"token,omitempty"`
	// URL is the page's address for this token (creation only), relative
	// to the server: /portal/{org}/#token=....
	URL string `json:"url,omitempty"`
}

func tokenJSON(t Token) TokenJSON {
	out := TokenJSON{ID: t.ID, Org: t.Org, Env: t.Env, Customer: t.Customer, Name: t.Name, Pages: t.Pages, Meters: t.Meters,
		Created: t.Created, Expires: t.Expires, Revoked: t.Revoked}
	if out.Pages == nil {
		out.Pages = []string{}
	}
	if out.Meters == nil {
		out.Meters = []string{}
	}
	return out
}

// CreateRequest is the body of POST /v1/portal/tokens.
type CreateRequest struct {
	Org string `json:"org"`
	Env string `json:"env"`
	// UserID or CompanyID (exactly one) is the customer.
	UserID    string `json:"user_id"`
	CompanyID string `json:"company_id"`
	Name      string `json:"name"`
	// TTL is a Go duration ("1h", "30m"); empty means an hour.
	TTL    string   `json:"ttl"`
	Pages  []string `json:"pages"`
	Meters []string `json:"meters"`
}

// SpecOf checks a CreateRequest and turns it into a Spec (org and env
// defaulted by the caller).
func SpecOf(in CreateRequest) (Spec, error) {
	s := Spec{Org: in.Org, Env: in.Env, Name: in.Name, Pages: in.Pages, Meters: in.Meters}
	switch {
	case in.UserID != "" && in.CompanyID != "":
		return s, &SpecError{Field: "customer", Msg: "give user_id or company_id, not both"}
	case in.UserID != "":
		s.Customer = Customer{Kind: KindUser, ID: in.UserID}
	case in.CompanyID != "":
		s.Customer = Customer{Kind: KindCompany, ID: in.CompanyID}
	default:
		return s, &SpecError{Field: "customer", Msg: "user_id or company_id is required"}
	}
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			return s, &SpecError{Field: "ttl", Msg: in.TTL + ` is not a duration such as "1h" or "30m"`}
		}
		s.TTL = d
	}
	return s, nil
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	var in CreateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		h.fail(w, r, apiErr(http.StatusBadRequest, "invalid_json", `body must be JSON {"user_id" or "company_id","env","ttl","pages":[...],"meters":[...],"name"}: `+err.Error()))
		return
	}
	if in.Org == "" {
		in.Org = gr.Org
	}
	if in.Env == "" {
		if len(gr.Envs) == 1 {
			in.Env = gr.Envs[0]
		} else {
			in.Env = "prod"
		}
	}
	if err := server.CheckAccess(r, in.Org, in.Env); err != nil {
		h.fail(w, r, err)
		return
	}
	spec, err := SpecOf(in)
	if err == nil {
		var tok Token
		var secret string
		if tok, secret, err = h.cfg.Tokens.Create(r.Context(), spec); err == nil {
			out := tokenJSON(tok)
			out.Token, out.URL = secret, "/portal/"+tok.Org+"/#token="+secret
			w.Header().Set("Cache-Control", "no-store")
			server.WriteJSON(w, http.StatusCreated, out)
			return
		}
	}
	var se *SpecError
	if errors.As(err, &se) {
		err = &server.APIError{Status: http.StatusBadRequest, Code: "invalid_token_spec", Field: se.Field, Message: se.Error()}
	}
	h.fail(w, r, err)
}

func (h *Handler) listTokens(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	toks, err := h.cfg.Tokens.List(gr.Org)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := []TokenJSON{}
	for _, t := range toks {
		if gr.AllowsEnv(t.Env) {
			out = append(out, tokenJSON(t))
		}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"org": gr.Org, "tokens": out})
}

func (h *Handler) revokeToken(w http.ResponseWriter, r *http.Request) {
	gr, _ := server.GrantFrom(r.Context())
	id := r.PathValue("id")
	toks, err := h.cfg.Tokens.List(gr.Org)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	found := false
	for _, t := range toks {
		if t.ID == id && gr.AllowsEnv(t.Env) {
			found = true
		}
	}
	if !found {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "no portal token with that id in org "+gr.Org))
		return
	}
	t, err := h.cfg.Tokens.Revoke(r.Context(), gr.Org, id)
	if errors.Is(err, ErrNotFound) {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "no portal token with that id in org "+gr.Org))
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	server.WriteJSON(w, http.StatusOK, tokenJSON(t))
}
