// Command sdkapp is a net/http API instrumented with Moesif's own Go
// middleware (github.com/moesif/moesifmiddleware-go, unchanged), pointed at
// apimeter by its Api_Endpoint option. It identifies callers as the counting guide
// describes: the user is the JWT's sub, the company comes from the URL
// /accounts/{id}/..., the session token is the Authorization header.
//
// Environment:
//
//	PORT                    port to listen on, 127.0.0.1 only (0 = any free port)
//	MOESIF_APPLICATION_ID   an apimeter application id
//	MOESIF_BASE_URI         apimeter's base URL, e.g. http://127.0.0.1:7070
//	JWT_SECRET              HS256 secret the API checks bearer tokens with
//
// It prints {"listening":PORT} on stdout once it serves. Moesif's Go SDK
// never looks at the collector's answers, so the driving test checks them
// on apimeter's side.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/moesif/moesifapi-go/models"
	moesifmiddleware "github.com/moesif/moesifmiddleware-go"
)

type userKey struct{}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	secret := []byte(os.Getenv("JWT_SECRET"))
	options := map[string]interface{}{
		"Application_Id":        os.Getenv("MOESIF_APPLICATION_ID"),
		"Api_Endpoint":          os.Getenv("MOESIF_BASE_URI"),
		"Batch_Size":            50,
		"Timer_Wake_Up_Seconds": 1, // flush soon: the test waits for the events
		"Identify_User": func(r *http.Request, _ moesifmiddleware.MoesifResponseRecorder) string {
			sub, _ := r.Context().Value(userKey{}).(string)
			return sub
		},
		"Identify_Company": func(r *http.Request, _ moesifmiddleware.MoesifResponseRecorder) string {
			return companyOf(r.URL.Path)
		},
		"Get_Session_Token": func(r *http.Request, _ moesifmiddleware.MoesifResponseRecorder) string {
			return r.Header.Get("Authorization")
		},
		"Get_Metadata": func(*http.Request, moesifmiddleware.MoesifResponseRecorder) map[string]interface{} {
			return map[string]interface{}{"sdk": "moesifmiddleware-go"}
		},
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "go-set-cookie-secret"})
		writeJSON(w, http.StatusOK, map[string]any{"my_object": map[string]string{"my_message": "Hello World!"}})
	})
	mux.HandleFunc("POST /accounts/{id}/items", func(w http.ResponseWriter, r *http.Request) {
		var body any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"created": body})
	})
	mux.HandleFunc("GET /missing", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such thing"})
	})

	// Authentication outside the Moesif middleware, as in the blog post:
	// a valid bearer token names the user, an invalid one is refused.
	handler := authenticate(secret, moesifmiddleware.MoesifMiddleware(mux, options))

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", envOr("PORT", "0")))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	fmt.Printf("{\"listening\":%d}\n", ln.Addr().(*net.TCPAddr).Port)

	company := "abcdef"
	moesifmiddleware.UpdateUser(&models.UserModel{UserId: "513", CompanyId: &company,
		Metadata: map[string]any{"name": "John Doe", "plan": "pro"}}, options)
	domain := "acme.example"
	moesifmiddleware.UpdateCompany(&models.CompanyModel{CompanyId: company, CompanyDomain: &domain,
		Metadata: map[string]any{"tier": "gold"}}, options)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func authenticate(secret []byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			next.ServeHTTP(w, r)
			return
		}
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		var claims jwt.RegisteredClaims
		if ok {
			_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return secret, nil },
				jwt.WithValidMethods([]string{"HS256"}))
			ok = err == nil
		}
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid token"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, claims.Subject)))
	})
}

// companyOf returns the {id} of /accounts/{id}/..., or "".
func companyOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/accounts/")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
