package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/apimeter/apimeter/moesif"
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

// newError builds an APIError.
func newError(status int, code, msg string) *APIError {
	return &APIError{Status: status, Code: code, Message: msg}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.metrics.rejected.WithLabelValues(errorCode(err)).Inc()
	WriteError(w, r, s.log, err)
}

// errorCode is the code WriteError answers err with.
func errorCode(err error) string {
	var ae *APIError
	var fe *moesif.FieldError
	switch {
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &fe):
		return "invalid_event"
	}
	return "internal"
}

// WriteError answers with err as JSON: every HTTP error of apimeter's own
// APIs is written here. Errors that are not an *APIError or
// *moesif.FieldError are reported as a 500 without their text, which is
// logged instead.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *APIError
	var fe *moesif.FieldError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		ae = &APIError{Status: http.StatusBadRequest, Code: "invalid_event", Message: fe.Error(), Field: fe.Field}
		if fe.Index >= 0 {
			i := fe.Index
			ae.Index = &i
		}
	default:
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = newError(http.StatusInternalServerError, "internal", "internal error; see the server log")
	}
	if ae.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}

	WriteJSON(w, ae.Status, map[string]*APIError{"error": ae})
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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
