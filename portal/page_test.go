package portal_test

import (
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
		{"/portal/acme/../../v1/keys", "", "", 307}, // ServeMux cleans the path
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
