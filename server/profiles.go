package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/internal/jsontext"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// profileIn is what apimeter reads of Moesif's UserModel, CompanyModel,
// SubscriptionModel and ActionModel; the rest is kept as sent.
type profileIn struct {
	UserID         string          `json:"user_id"`
	CompanyID      string          `json:"company_id"`
	SubscriptionID string          `json:"subscription_id"`
	TransactionID  string          `json:"transaction_id"`
	ModifiedTime   string          `json:"modified_time"`
	SessionToken   string          `json:"session_token,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// profiles handles /v1/users, /v1/companies and their batch forms. Profiles
// are upserted by id; session tokens and secret fields in them are kept
// only as fingerprints.
func (s *Server) profiles(kind string, batch bool) http.HandlerFunc {
	idField := kind + "_id"
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.app(w, r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		rd, done, err := s.body(w, r)
		defer done()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		raws, err := s.decodeProfiles(rd, batch)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		now := time.Now().UTC()
		ps := make([]apimeter.Profile, 0, len(raws))
		for i, raw := range raws {
			index := i
			if !batch {
				index = -1
			}
			p, err := parseProfile(s.cfg.Scrubber, raw, kind, idField, index, now, s.cfg.MaxMetadataBytes)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			p.Org, p.Env = a.Org, a.Env
			ps = append(ps, p)
		}
		if err := s.cfg.Store.PutProfiles(r.Context(), ps); err != nil {
			// Every value is valid by now (parseProfile), so this is the
			// store failing, not the sender's data.
			if ok, held := s.logLimit.allow("profiles\x00"+a.Org+"\x00"+a.Env, time.Now()); ok {
				s.log.Error("store profiles", "org", a.Org, "env", a.Env, "kind", kind, "profiles", len(ps), "err", err, "similar_lines_held_back", held)
			}
			s.writeError(w, r, &APIError{Status: http.StatusServiceUnavailable, Code: "store_unavailable",
				Message: "the profiles could not be stored; retry later"})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]int{"stored": len(ps)})
	}
}

// decodeProfiles reads one profile, or a batch of them, from rd. A batch
// is read one profile at a time and refused at the first profile past
// MaxBatchEvents, so that an array of millions of {} is not held whole.
func (s *Server) decodeProfiles(rd io.Reader, batch bool) ([]json.RawMessage, error) {
	dec := json.NewDecoder(rd)
	if !batch {
		var one json.RawMessage
		if err := dec.Decode(&one); err != nil {
			return nil, s.decodeErr(err, -1)
		}
		return []json.RawMessage{one}, nil
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, s.decodeErr(err, -1)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		if tok == nil { // null: no profiles, as decoding into a slice gave
			return nil, nil
		}
		return nil, newError(http.StatusBadRequest, "invalid_batch", "a batch must be a JSON array of profiles")
	}
	var raws []json.RawMessage
	for i := 0; dec.More(); i++ {
		if i >= s.cfg.MaxBatchEvents {
			return nil, newError(http.StatusRequestEntityTooLarge, "batch_too_large", fmt.Sprintf("a batch may hold at most %d profiles", s.cfg.MaxBatchEvents))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, s.decodeErr(err, i)
		}
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, s.decodeErr(err, -1)
	}
	return raws, nil
}

// maxProfileKeys bounds the top-level keys of a profile, which are decoded
// into a map (about 100 bytes each for as few as 6 bytes of JSON).
const maxProfileKeys = 1000

// parseProfile reads one profile and makes it safe to store with scrub:
// the session token becomes its fingerprint, and so does the value of every
// secret field (metadata's included, at any depth).
func parseProfile(scrubber *scrub.Scrubber, raw json.RawMessage, kind, idField string, index int, now time.Time, maxMetadata int) (apimeter.Profile, error) {
	bad := func(field, msg string) error {
		return &moesif.FieldError{Index: index, Field: field, Msg: msg}
	}
	// Invalid UTF-8 and lone surrogates anywhere in the profile become
	// U+FFFD before anything is read from it: the store keeps only valid
	// text, and what is echoed back is valid JSON.
	raw = jsontext.ValidJSON(raw)
	if n := topLevelKeys(raw); n > maxProfileKeys {
		return apimeter.Profile{}, bad("(profile)", fmt.Sprintf("has %d keys; at most %d are kept", n, maxProfileKeys))
	}
	var in profileIn
	if err := json.Unmarshal(raw, &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return apimeter.Profile{}, bad(te.Field, "has the wrong JSON type ("+te.Value+")")
		}
		return apimeter.Profile{}, bad("(profile)", "must be a JSON object")
	}
	p := apimeter.Profile{Kind: kind, ModifiedTime: now}
	switch kind {
	case "user":
		p.ID, p.CompanyID = in.UserID, in.CompanyID
	case "company":
		p.ID = in.CompanyID
	case "subscription":
		p.ID, p.CompanyID = in.SubscriptionID, in.CompanyID
	case "action":
		// Actions have no id of their own: the transaction id when sent,
		// else a hash of the action, so a resent action is kept once.
		p.ID, p.CompanyID = in.TransactionID, in.CompanyID
		if p.ID == "" {
			sum := sha256.Sum256(raw)
			p.ID = "h-" + hex.EncodeToString(sum[:16])
		}
	}
	if p.ID == "" {
		return p, bad(idField, "is required")
	}
	if in.ModifiedTime != "" {
		t, err := moesif.ParseTime(in.ModifiedTime)
		if err != nil {
			return p, bad("modified_time", err.Error())
		}
		p.ModifiedTime = t
	}
	if len(in.Metadata) > 0 && in.Metadata[0] != '{' && string(in.Metadata) != "null" {
		return p, bad("metadata", "must be a JSON object")
	}
	if len(in.Metadata) > maxMetadata {
		return p, bad("metadata", fmt.Sprintf("is longer than %d bytes", maxMetadata))
	}
	// Keep the profile as sent, but never the session token itself.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return p, bad("(profile)", "must be a JSON object")
	}
	// Node and Go send modified_time null when the app gave none; keep the
	// time apimeter used instead, so the profile reads back complete.
	if v, ok := m["modified_time"]; !ok || string(v) == "null" {
		m["modified_time"], _ = json.Marshal(p.ModifiedTime.Format("2006-01-02T15:04:05.000Z"))
	}
	if in.SessionToken != "" {
		// session_token is a secret field: ScrubJSON fingerprints the bare
		// token, as Scrub does an event's.
		tok, _ := json.Marshal(scrub.BearerToken(in.SessionToken))
		m["session_token"] = tok
	}
	p.Body, _ = json.Marshal(m)
	if b, ok := scrubber.ScrubJSON(string(p.Body)); ok {
		p.Body = []byte(b)
	}
	return p, nil
}

// topLevelKeys counts the keys of the JSON object raw (valid JSON) without
// decoding it.
func topLevelKeys(raw []byte) int {
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '{' {
		return 0
	}
	depth, n := 0, 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			if depth == 1 && n == 0 {
				n = 1
			}
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 1 {
				n++
			}
		}
	}
	return n
}

func (s *Server) getProfile(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.cfg.Store.Profile(r.Context(), r.PathValue("org"), r.PathValue("env"), kind, r.PathValue("id"))
		if errors.Is(err, apimeter.ErrNotFound) {
			s.writeError(w, r, newError(http.StatusNotFound, "not_found", fmt.Sprintf("no %s %q", kind, r.PathValue("id"))))
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(p.Body)
	}
}

// listEvents serves recent events, newest first, in the collector schema
// with apimeter's fields (event_id, api_name, route, api_key_id) added.
// Filters: user_id, company_id, api_name, route, status (0: no response), errors=true (the
// calls apimeter.IsError counts, as the Metrics API and usage do), from, to
// (RFC 3339 or epoch milliseconds), limit (1..1000, default 100).
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := apimeter.EventFilter{Org: r.PathValue("org"), Env: r.PathValue("env"), UserID: q.Get("user_id"), CompanyID: q.Get("company_id"),
		APIName: q.Get("api_name"), Route: q.Get("route"), Limit: 100}
	bad := func(param, msg string) {
		s.writeError(w, r, &APIError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: param, Message: param + ": " + msg})
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			bad("limit", "must be a whole number from 1 to 1000")
			return
		}
		f.Limit = n
	}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 999 {
			bad("status", "must be an HTTP status code, or 0 for calls that got no response")
			return
		}
		f.Status = &n
	}
	if v := q.Get("errors"); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			bad("errors", "must be true or false")
			return
		}
		f.Errors = on
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := parseTimeParam(v)
		if err != nil {
			bad(p.name, "must be an RFC 3339 time or epoch milliseconds")
			return
		}
		*p.dst = t
	}
	events, err := s.cfg.Store.Events(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]moesif.Event, len(events))
	for i := range events {
		out[i] = moesif.FromEvent(&events[i])
	}
	WriteJSON(w, http.StatusOK, map[string]any{"events": out})
}

func parseTimeParam(v string) (time.Time, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	return moesif.ParseTime(strings.TrimSpace(v))
}

// config answers GET /v1/config in the form Moesif's SDKs parse: sample
// everything, no per-user or per-company rules.
func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	a, err := s.app(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{
		"org_id":                       a.Org,
		"app_id":                       a.Env,
		"sample_rate":                  100,
		"block_bot_traffic":            false,
		"user_sample_rate":             map[string]int{},
		"company_sample_rate":          map[string]int{},
		"user_rules":                   map[string]any{},
		"company_rules":                map[string]any{},
		"ip_addresses_blocked_by_name": map[string]any{},
		"regex_config":                 []any{},
		"billing_config_jsons":         map[string]any{},
	})
}

// rules answers GET /v1/rules: apimeter has no governance rules, so the
// list is empty.
func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	if _, err := s.app(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, []any{})
}
