package portal_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/server"
)

// TestPage: the page and its files carry a policy that loads nothing from
// elsewhere and lets only the org's configured origins frame it.
func TestPage(t *testing.T) {
	toks, err := token.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	origins, err := portal.ParseFrameOrigins([]string{"acme=https://www.acme.example, http://localhost:8080", "acme=https://www.acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{})
	portal.New(portal.Config{Tokens: toks, FrameOrigins: origins}).Register(srv)
	for _, c := range []struct {
		path, ctype, ancestors string
		code                   int
	}{
		{"/portal/acme/", "text/html", "frame-ancestors https://www.acme.example http://localhost:8080", 200},
		{"/portal/acme/portal.js", "text/javascript", "frame-ancestors https://www.acme.example http://localhost:8080", 200},
		{"/portal/acme/portal.css", "text/css", "frame-ancestors https://www.acme.example http://localhost:8080", 200},
		{"/portal/other/", "text/html", "frame-ancestors 'none'", 200},
		{"/portal/acme/secret.txt", "application/json", "", 404},
		{"/portal/acme/../../v1/keys", "application/json", "", 400}, // not routed: a path with ".." segments
		{"/portal/bad%20org/", "application/json", "", 404},
		{"/portal/acme", "", "", 301},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		if rec.Code != c.code {
			t.Errorf("%s: %d, want %d", c.path, rec.Code, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		h := rec.Header()
		if !strings.HasPrefix(h.Get("Content-Type"), c.ctype) {
			t.Errorf("%s: Content-Type %q", c.path, h.Get("Content-Type"))
		}
		csp := h.Get("Content-Security-Policy")
		if !strings.HasSuffix(csp, c.ancestors) || !strings.HasPrefix(csp, "default-src 'none'; script-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", c.path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", c.path, h)
		}
	}
	for _, bad := range []string{"acme", "acme=", "acme=https://x.example/path", "acme=javascript:alert(1)", "acme=https://*.example", "acme=https://a.example;script-src *", "=https://a.example"} {
		if _, err := portal.ParseFrameOrigins([]string{bad}); err == nil {
			t.Errorf("ParseFrameOrigins(%q): no error", bad)
		}
	}
}

// TestPageInline: the page carries its style and script inside it, and its
// policy lets exactly those two blocks run (by their SHA-256), nothing
// else inline.
func TestPageInline(t *testing.T) {
	toks, err := token.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{})
	portal.New(portal.Config{Tokens: toks}).Register(srv)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/portal/acme/", nil))
	page, csp := rec.Body.String(), rec.Header().Get("Content-Security-Policy")
	if strings.Contains(page, `src="portal.js"`) || strings.Contains(page, `href="portal.css"`) {
		t.Fatalf("the page still loads its script or style: %.300s", page)
	}
	for _, b := range []struct{ open, close, directive string }{{"<script>", "</script>", "script-src"}, {"<style>", "</style>", "style-src"}} {
		if strings.Count(page, b.open) != 1 {
			t.Fatalf("want one %s in the page", b.open)
		}
		_, rest, _ := strings.Cut(page, b.open)
		body, _, ok := strings.Cut(rest, b.close)
		if !ok || len(body) < 100 {
			t.Fatalf("%s: no content", b.open)
		}
		sum := sha256.Sum256([]byte(body))
		want := b.directive + " 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "';"
		if !strings.Contains(csp, want) {
			t.Errorf("policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("policy %q", csp)
	}
}
