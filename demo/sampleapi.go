// Package demo holds what `apimeter demo` runs beside the server: the
// counting guide's sample API (a JWT-protected GET /accounts/{id}/message
// and a few more routes), a traffic generator that calls it as many users
// would, and a backfill of generated history.
package demo

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SampleAPI is the guide's sample API: every route needs a bearer JWT
// signed with Secret (HS256), whose sub is the caller. The handlers sleep
// a little and fail now and then, so the dashboard has latencies and
// errors to show.
type SampleAPI struct {
	Secret []byte
	// Slow scales the simulated latencies; zero means 1.
	Slow float64
}

// Handler returns the API's routes behind the JWT check.
func (a *SampleAPI) Handler() http.Handler { return a.requireJWT(a.Routes()) }

// Routes returns the API's routes without the JWT check: what the capture
// middleware matches a call the check refused with (capture.Options.Routes),
// so that 401s are recorded under their route too.
func (a *SampleAPI) Routes() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range sampleRoutes {
		mux.HandleFunc(rt.pattern, a.handle(rt.medianMs, rt.errRate, rt.body))
	}
	return mux
}

// sampleRoutes are the sample API's routes: median latency, and the share
// of calls failed on purpose with one of FailStatuses.
var sampleRoutes = []struct {
	pattern           string
	medianMs, errRate float64
	body              func(*http.Request) any
}{
	{"GET /accounts/{id}/message", 30, 0.02, func(r *http.Request) any {
		return map[string]any{"my_object": map[string]string{"my_message": "Hello World!"}}
	}},
	{"POST /accounts/{id}/message", 60, 0.05, func(r *http.Request) any {
		return map[string]any{"id": rand.IntN(90000) + 10000, "status": "sent"}
	}},
	{"GET /accounts/{id}", 20, 0.01, func(r *http.Request) any {
		return map[string]any{"id": r.PathValue("id"), "plan": "pro"}
	}},
	{"GET /orders/{id}", 25, 0.03, func(r *http.Request) any {
		return map[string]any{"id": r.PathValue("id"), "status": "shipped"}
	}},
	{"POST /orders", 120, 0.08, func(r *http.Request) any {
		return map[string]any{"id": rand.IntN(90000) + 10000, "status": "created"}
	}},
	{"GET /search", 90, 0.04, func(r *http.Request) any {
		return map[string]any{"q": r.URL.Query().Get("q"), "results": []string{"widget", "gadget"}}
	}},
}

// FailStatuses are the statuses the sample API fails calls with on purpose.
var FailStatuses = []int{400, 404, 429, 500, 503}

// Faults says in words what the sample API and the demo traffic do wrong
// on purpose, for the demo's banner: the dashboard's errors are these.
func Faults() string {
	var b strings.Builder
	b.WriteString("The sample API fails some calls on purpose, with ")
	for i, c := range FailStatuses {
		switch {
		case i == len(FailStatuses)-1:
			b.WriteString(" or ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(c))
	}
	b.WriteString(":")
	for i, rt := range sampleRoutes {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %g %%", rt.pattern, rt.errRate*100)
	}
	fmt.Fprintf(&b, ".\nOf the live calls, %d %% send no token and %d %% a forged one: the API answers those 401.", NoTokenPercent, ForgedPercent)
	return b.String()
}

// requireJWT answers 401 unless the call carries a valid HS256 bearer JWT
// with a sub (express-jwt's role in the guide).
func (a *SampleAPI) requireJWT(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing bearer token"})
			return
		}
		tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return a.Secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid token: " + err.Error()})
			return
		}
		if sub, _ := tok.Claims.GetSubject(); sub == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "token has no sub"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *SampleAPI) handle(medianMs, errRate float64, body func(*http.Request) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		slow := a.Slow
		if slow == 0 {
			slow = 1
		}
		d := time.Duration(slow * medianMs * math.Exp(rand.NormFloat64()*0.5) * float64(time.Millisecond))
		select {
		case <-time.After(min(d, 2*time.Second)):
		case <-r.Context().Done():
			return
		}
		if rand.Float64() < errRate {
			code := FailStatuses[rand.IntN(len(FailStatuses))]
			writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": http.StatusText(code)}})
			return
		}
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		writeJSON(w, status, body(r))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// Token returns an HS256 JWT for user of company (claim tenant_id), valid
// for an hour.
func Token(secret []byte, u User) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": u.ID, "tenant_id": u.Company, "name": "user " + u.ID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		panic(err) // HS256 with a []byte key cannot fail
	}
	return s
}

// APIOf names the API a sample path belongs to (the first path segment).
func APIOf(path string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return seg
}
