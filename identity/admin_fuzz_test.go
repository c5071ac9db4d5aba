package identity_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// FuzzAdminAPI: alias bodies, key hashes and query parameters come from
// outside; every answer is JSON, and nothing but a 2xx or a 4xx.
func FuzzAdminAPI(f *testing.F) {
	files, _ := filepath.Glob("testdata/admin/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "4173a669ea176cef21d48fe4cbff4dc2c29ec2959563fab76f41271110d825f5", "org=acme&period=2026-11&group=user_id&user_id=513")
	}
	f.Add([]byte(`[]`), "zz", "org=&period=13")
	st, err := duckdb.Open(context.Background(), filepath.Join(f.TempDir(), "events.duckdb"), duckdb.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	emb, err := identity.OpenEmbedded(context.Background(), st.DB(), identity.EmbeddedOptions{})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	(&identity.API{Aliases: emb, Meter: &identity.Meter{Counters: emb}}).Register(mux)
	// As the server routes: a path no route takes gets its JSON 404 (not
	// ServeMux's text: GET /v1/aliases/ with no hash), and a path that is
	// not canonical a 400, not ServeMux's redirect.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		server.WriteError(w, r, nil, &server.APIError{Status: http.StatusNotFound, Code: "not_found", Message: "no route for " + r.Method + " " + r.URL.Path})
	})
	h := server.CanonicalPaths(mux)
	f.Fuzz(func(t *testing.T, body []byte, hash, query string) {
		hash = url.PathEscape(hash)
		for _, req := range []*http.Request{
			httptest.NewRequest("PUT", "/v1/aliases", strings.NewReader(string(body))),
			httptest.NewRequest("GET", "/v1/aliases/"+hash+"?"+url.PathEscape(query), nil),
			httptest.NewRequest("DELETE", "/v1/aliases/"+hash+"?org=acme", nil),
			httptest.NewRequest("GET", "/v1/aliases?"+url.PathEscape(query), nil),
			httptest.NewRequest("GET", "/v1/usage?"+url.PathEscape(query), nil),
		} {
			rec := httptest.NewRecorder()
			// As the server's key check leaves it: an admin key of acme.
			h.ServeHTTP(rec, server.WithGrant(req, server.Grant{Org: "acme", Scope: server.Admin}))
			if rec.Code >= 500 || (rec.Code >= 300 && rec.Code < 400) {
				t.Fatalf("%s %s: status %d: %s", req.Method, req.URL, rec.Code, rec.Body)
			}
			if rec.Code != 404 || rec.Header().Get("Content-Type") != "" {
				if !json.Valid(rec.Body.Bytes()) {
					t.Fatalf("%s %s: answer is not JSON: %q", req.Method, req.URL, rec.Body)
				}
			}
		}
	})
}
