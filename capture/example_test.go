package capture_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// requireJWT is the Go counterpart of express-jwt in the counting guide: it lets a
// call through only with a Bearer token signed with secret.
func requireJWT(secret []byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := jwt.Parse(scrub.BearerToken(r.Header.Get("Authorization")),
			func(*jwt.Token) (any, error) { return secret, nil },
			jwt.WithValidMethods([]string{"HS256"}))
		if err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// This is the counting guide's Express app in Go: a JWT-protected
// GET /accounts/{id}/message, wrapped by the capture middleware, which
// identifies the user by the JWT's sub and the company by the account in the
// URL, and sends the calls to an apimeter collector.
func Example() {
	// An apimeter collector on loopback (what `apimeter serve` runs).
	dir, _ := os.MkdirTemp("", "capture-example-")
	defer os.RemoveAll(dir)
	app, _ := apps.Create(dir, "acme", "prod")
	reg, _ := apps.Open(dir)
	store, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	collector := httptest.NewServer(server.New(server.Config{Store: store, Apps: reg, Scrubber: scrub.New(nil, nil, -1)}))
	defer collector.Close()

	// The API.
	secret := []byte("my_super_secret")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /accounts/{id}/message", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"my_object":{"my_message":"Hello World!"}}`)
	})

	sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: collector.URL, ApplicationID: app.ID})
	if err != nil {
		log.Fatal(err)
	}
	meter, err := capture.New(capture.Options{
		Sink:    sink,
		LogBody: true,
		JWTKey:  secret, // the user is the verified JWT's sub
		IdentifyCompany: func(r *http.Request, _ capture.Response) string {
			return r.PathValue("id") // GET /accounts/{id}/message
		},
		SessionToken: func(r *http.Request, _ capture.Response) string {
			return r.Header.Get("Authorization") // leaves the process as a fingerprint
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	api := httptest.NewServer(meter.Middleware(requireJWT(secret, mux)))
	defer api.Close()

	// curl -H 'Authorization: Bearer <seed token, sub 513>' .../accounts/abcdef/message
	const guideToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1MTMiLCJuYW1lIjoiSm9obiBEb2UiLCJpYXQiOjE1MTYyMzkwMjJ9.FPN2Bj5b6OUzeTJ7lrNQPWUkZnnBnhMFYeyMjJ_-tN0"
	for _, tok := range []string{guideToken, "not-a-jwt"} {
		req, _ := http.NewRequest("GET", api.URL+"/accounts/abcdef/message", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}

	// On shutdown, Close sends what is queued. The refused call never reached
	// the router, so it has no route and no account.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := meter.Close(ctx); err != nil {
		log.Fatal(err)
	}
	events, _ := store.Events(ctx, apimeter.EventFilter{Org: "acme", Env: "prod"})
	slices.SortFunc(events, func(a, b apimeter.Event) int { return a.Status - b.Status })
	for _, e := range events {
		fmt.Printf("user=%q company=%q route=%q status=%d authorization=%.3s...\n",
			e.UserID, e.CompanyID, e.Route, e.Status, e.RequestHeaders.Get("Authorization"))
	}
	// Output:
	// 200 {"my_object":{"my_message":"Hello World!"}}
	// 401 unauthorized
	// user="513" company="abcdef" route="/accounts/{id}/message" status=200 authorization=fp_...
	// user="" company="" route="" status=401 authorization=fp_...
}
