package alerts

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter/server"
)

// Handler serves the alerts API under /v1/o/{org}/environments/{env}/alerts
// (docs/alerts.md): rules (admin keys change them, read keys read them,
// webhook secrets left out), the state of their instances and recent
// notifications.
type Handler struct {
	Eval   *Evaluator
	Store  Store
	Logger *slog.Logger
	// Now stamps rules written; nil means time.Now.
	Now func() time.Time
}

// Mux is where routes are registered (server.Server is one).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register adds the routes to mux.
func (h *Handler) Register(mux Mux) {
	for _, base := range []string{"/v1/o/{org}/environments/{env}/alerts", "/v1/o/{org}/e/{env}/alerts"} {
		mux.Handle("GET "+base+"/rules", http.HandlerFunc(h.list))
		mux.Handle("POST "+base+"/rules", http.HandlerFunc(h.create))
		mux.Handle("GET "+base+"/rules/{id}", http.HandlerFunc(h.get))
		mux.Handle("PUT "+base+"/rules/{id}", http.HandlerFunc(h.put))
		mux.Handle("DELETE "+base+"/rules/{id}", http.HandlerFunc(h.delete))
		mux.Handle("GET "+base+"/state", http.HandlerFunc(h.state))
		mux.Handle("GET "+base+"/notifications", http.HandlerFunc(h.notifications))
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now().UTC()
	}
	return h.Now().UTC()
}

func apiErr(status int, code, field, format string, args ...any) *server.APIError {
	msg := format
	if len(args) > 0 {
		msg = sprintf(format, args...)
	}
	return &server.APIError{Status: status, Code: code, Message: msg, Field: field}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		err = apiErr(http.StatusBadRequest, "invalid_rule", fe.Field, "%s", fe.Error())
	}
	server.WriteError(w, r, h.log(), err)
}

// redact leaves webhook secrets out of an answer.
func redact(r Rule) Rule {
	chs := make([]Channel, len(r.Channels))
	for i, c := range r.Channels {
		c.Secret = ""
		chs[i] = c
	}
	r.Channels = chs
	return r
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	sts := h.Eval.Rules(r.PathValue("org"), r.PathValue("env"))
	for i := range sts {
		sts[i].Rule = redact(sts[i].Rule)
	}
	if sts == nil {
		sts = []RuleStatus{}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"rules": sts})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	org, env, id := r.PathValue("org"), r.PathValue("env"), r.PathValue("id")
	for _, st := range h.Eval.Rules(org, env) {
		if st.ID == id {
			st.Rule = redact(st.Rule)
			server.WriteJSON(w, http.StatusOK, st)
			return
		}
	}
	h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "id", "no alert rule %q in %s/%s", id, org, env))
}

// maxRuleBytes bounds a rule's JSON body.
const maxRuleBytes = 64 << 10

func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (Rule, error) {
	var rule Rule
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRuleBytes))
	if err != nil {
		return rule, apiErr(http.StatusRequestEntityTooLarge, "too_large", "", "a rule's body is at most %d bytes", maxRuleBytes)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rule); err != nil {
		return rule, apiErr(http.StatusBadRequest, "invalid_json", "", "the body is not a rule: %v", err)
	}
	org, env := r.PathValue("org"), r.PathValue("env")
	if rule.Org != "" && rule.Org != org {
		return rule, apiErr(http.StatusBadRequest, "invalid_rule", "org", "org %q differs from the path's %q; leave it out", rule.Org, org)
	}
	if rule.Env != "" && rule.Env != env {
		return rule, apiErr(http.StatusBadRequest, "invalid_rule", "env", "env %q differs from the path's %q; leave it out", rule.Env, env)
	}
	rule.Org, rule.Env = org, env
	rule.Source, rule.Updated = "api", h.now()
	return rule, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	rule, err := h.decode(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if rule.ID == "" {
		rule.ID = "rule-" + newID()[24:]
	}
	if _, exists := h.Eval.Rule(rule.Org, rule.Env, rule.ID); exists {
		h.fail(w, r, apiErr(http.StatusConflict, "conflict", "id", "alert rule %q exists; PUT it to change it", rule.ID))
		return
	}
	h.write(w, r, rule, http.StatusCreated)
}

func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	rule, err := h.decode(w, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if rule.ID != "" && rule.ID != id {
		h.fail(w, r, apiErr(http.StatusBadRequest, "invalid_rule", "id", "id %q differs from the path's %q", rule.ID, id))
		return
	}
	rule.ID = id
	status := http.StatusCreated
	if old, exists := h.Eval.Rule(rule.Org, rule.Env, id); exists {
		if old.Source == "file" {
			h.fail(w, r, apiErr(http.StatusConflict, "conflict", "id", "alert rule %q is defined in the config file; change it there", id))
			return
		}
		// A webhook sent back without its secret (answers leave it out)
		// keeps the one it had.
		for i, c := range rule.Channels {
			if c.Type != Webhook || c.Secret != "" {
				continue
			}
			for _, oc := range old.Channels {
				if oc.Type == Webhook && oc.URL == c.URL {
					rule.Channels[i].Secret = oc.Secret
				}
			}
		}
		status = http.StatusOK
	}
	h.write(w, r, rule, status)
}

func (h *Handler) write(w http.ResponseWriter, r *http.Request, rule Rule, status int) {
	if err := h.Eval.CheckRule(&rule); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.Store.PutRule(r.Context(), rule); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.Eval.Refresh(r.Context()); err != nil {
		h.log().Warn("alerts: reload rules", "err", err)
	}
	server.WriteJSON(w, status, redact(rule))
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	org, env, id := r.PathValue("org"), r.PathValue("env"), r.PathValue("id")
	old, exists := h.Eval.Rule(org, env, id)
	if !exists {
		h.fail(w, r, apiErr(http.StatusNotFound, "not_found", "id", "no alert rule %q in %s/%s", id, org, env))
		return
	}
	if old.Source == "file" {
		h.fail(w, r, apiErr(http.StatusConflict, "conflict", "id", "alert rule %q is defined in the config file; remove it there", id))
		return
	}
	if err := h.Store.DeleteRule(r.Context(), org, env, id); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.Eval.Refresh(r.Context()); err != nil {
		h.log().Warn("alerts: reload rules", "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// state answers the instances not OK of the env's rules, from the store:
// the same on every process whichever evaluates them.
func (h *Handler) state(w http.ResponseWriter, r *http.Request) {
	org, env := r.PathValue("org"), r.PathValue("env")
	cur, err := h.Store.Current(r.Context(), org, env)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := []Transition{}
	for _, t := range cur {
		if _, ok := h.Eval.Rule(org, env, t.RuleID); ok {
			out = append(out, t)
		}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"instances": out})
}

// notifications answers the env's latest notifications and delivery
// attempts, newest first.
func (h *Handler) notifications(w http.ResponseWriter, r *http.Request) {
	org, env := r.PathValue("org"), r.PathValue("env")
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			h.fail(w, r, apiErr(http.StatusBadRequest, "invalid_parameter", "limit", "%q is not a whole number from 1 to 1000", v))
			return
		}
		limit = n
	}
	ts, err := h.Store.RecentTransitions(r.Context(), org, env, limit*4)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	notes := []Transition{}
	for _, t := range ts {
		if t.Event != "" && len(notes) < limit {
			notes = append(notes, t)
		}
	}
	ds, err := h.Store.RecentDeliveries(r.Context(), org, env, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if ds == nil {
		ds = []Delivery{}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"notifications": notes, "deliveries": ds})
}
