package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/apimeter/apimeter"
)

// APIError is the body of every error answer:
// {"error": {"code": ..., "message": ..., "index": ..., "field": ...}}.
type APIError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Index is the position of the bad event in a batch, when there is one.
	Index *int `json:"index,omitempty"`
	// Field names the bad field or parameter, when there is one.
	Field string `json:"field,omitempty"`
}

func (e *APIError) Error() string { return e.Message }

// Errorf builds an APIError.
func newError(status int, code, msg string) *APIError {
	return &APIError{Status: status, Code: code, Message: msg}
}

// WriteError answers with err as JSON. Errors that are not an *APIError or
// *apimeter.FieldError are reported as a 500 without their text, which is
// logged instead.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *APIError
	var fe *apimeter.FieldError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		ae = &APIError{Status: http.StatusBadRequest, Code: "invalid_event", Message: fe.Error(), Field: fe.Field}
		if fe.Index >= 0 {
			i := fe.Index
			ae.Index = &i
		}
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = newError(http.StatusInternalServerError, "internal", "internal error; see the server log")
	}
	if ae.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, ae.Status, map[string]*APIError{"error": ae})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encode response"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}
