package auth_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/server"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// site is a server with the guard's routes and one read route per org.
type site struct {
	dir   string
	keys  *auth.Keys
	guard *auth.Guard
	clock *clock
	srv   *server.Server
}

func newSite(t testing.TB) *site {
	t.Helper()
	dir := t.TempDir()
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	g := auth.New(auth.Config{Keys: keys, Now: c.now,
		IsAppID: func(id string) bool { return id == "app-id-of-acme" },
		Envs:    func(org string) []string { return []string{"prod", "test"} }})
	srv := server.New(server.Config{Auth: g})
	g.Register(srv)
	srv.Handle("GET /v1/o/{org}/environments/{env}/things", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		server.WriteJSON(w, 200, map[string]string{"org": r.PathValue("org")})
	}))
	return &site{dir: dir, keys: keys, guard: g, clock: c, srv: srv}
}

func (s *site) key(t testing.TB, org, scope string, envs ...string) (auth.Key, string) {
	t.Helper()
	k, secret, err := auth.Create(s.dir, auth.Spec{Org: org, Scope: scope, Envs: envs, Name: "n-" + org})
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func TestCredentialForms(t *testing.T) {
	s := newSite(t)
	_, key := s.key(t, "acme", auth.ScopeRead)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		name, authz string
		want        int
	}{
		{"bearer", "Bearer " + key, 200},
		{"bearer, scheme in lower case", "bearer " + key, 200},
		{"basic, key as password", "Basic " + b64("me@acme.example:"+key), 200},
		{"basic, key as user name, no password", "Basic " + b64(key+":"), 200},
		{"basic, key alone", "Basic " + b64(key), 200},
		{"basic, password with a colon", "Basic " + b64("u:"+key+":x"), 401},
		{"basic, not base64", "Basic !!!", 401},
		{"basic, wrong password", "Basic " + b64("u:"+key+"x"), 401},
		{"other scheme", "Digest " + key, 401},
		{"empty bearer", "Bearer ", 401},
		{"app id as bearer", "Bearer app-id-of-acme", 403},
		{"app id as basic password", "Basic " + b64("x:app-id-of-acme"), 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/o/acme/environments/prod/things", nil)
			req.Header.Set("Authorization", c.authz)
			rec := httptest.NewRecorder()
			s.srv.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, c.want)
			}
		})
	}
}

// browser is an HTTP client with a cookie jar, as the dashboard's browser.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func call(t *testing.T, c *http.Client, method, u, ctype, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == auth.CookieName {
			return c
		}
	}
	return nil
}

func TestSession(t *testing.T) {
	s := newSite(t)
	hs := httptest.NewServer(s.srv)
	defer hs.Close()
	k, key := s.key(t, "acme", auth.ScopeRead)
	_, other := s.key(t, "other", auth.ScopeAdmin)
	b := browser(t)

	if resp, body := call(t, b, "GET", hs.URL+"/v1/session", "", ""); resp.StatusCode != 401 {
		t.Fatalf("GET /v1/session signed out: %d %s", resp.StatusCode, body)
	}
	resp, body := call(t, b, "POST", hs.URL+"/v1/session", "application/json", `{"key":"`+key+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	want := `{"org":"acme","envs":["prod","test"],"scope":"read","name":"n-acme"}`
	if strings.TrimSpace(string(body)) != want {
		t.Errorf("sign in answered %s, want %s", body, want)
	}
	c := sessionCookie(resp)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.Value == "" || strings.Contains(c.Value, key) {
		t.Fatalf("session cookie %+v", c)
	}
	if resp, body := call(t, b, "GET", hs.URL+"/v1/session", "", ""); resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		t.Errorf("GET /v1/session: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, b, "GET", hs.URL+"/v1/o/acme/environments/prod/things", "", ""); resp.StatusCode != 200 {
		t.Errorf("read with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, b, "GET", hs.URL+"/v1/o/other/environments/prod/things", "", ""); resp.StatusCode != 403 {
		t.Errorf("other org with the cookie: %d %s", resp.StatusCode, body)
	}
	// A credential in the header wins over the cookie.
	if resp, body := call(t, b, "GET", hs.URL+"/v1/session", "", "", "Authorization", "Bearer "+other); resp.StatusCode != 200 || !strings.Contains(string(body), `"org":"other"`) {
		t.Errorf("GET /v1/session with a bearer: %d %s", resp.StatusCode, body)
	}
	// The session ends with its key.
	if _, err := s.keys.Revoke("", k.ID); err != nil {
		t.Fatal(err)
	}
	if resp, body := call(t, b, "GET", hs.URL+"/v1/o/acme/environments/prod/things", "", ""); resp.StatusCode != 401 {
		t.Errorf("cookie of a revoked key: %d %s", resp.StatusCode, body)
	}

	// Sign in with a form, sign out, and the old cookie is dead.
	_, key2 := s.key(t, "acme", auth.ScopeAdmin, "prod")
	resp, body = call(t, b, "POST", hs.URL+"/v1/session", "application/x-www-form-urlencoded", url.Values{"key": {key2}}.Encode())
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"envs":["prod"],"scope":"admin"`) {
		t.Fatalf("form sign in: %d %s", resp.StatusCode, body)
	}
	old := sessionCookie(resp)
	resp, _ = call(t, b, "DELETE", hs.URL+"/v1/session", "", "")
	if c := sessionCookie(resp); resp.StatusCode != 200 || c == nil || c.MaxAge >= 0 {
		t.Errorf("sign out: %d cookie %+v", resp.StatusCode, c)
	}
	if resp, _ := call(t, http.DefaultClient, "GET", hs.URL+"/v1/session", "", "", "Cookie", auth.CookieName+"="+old.Value); resp.StatusCode != 401 {
		t.Errorf("cookie after sign out: %d", resp.StatusCode)
	}

	// Refusals.
	for _, c := range []struct {
		name, ctype, body string
		hdr               []string
		want              int
	}{
		{"unknown key", "application/json", `{"key":"` + auth.NewKey() + `"}`, nil, 401},
		{"app id", "application/json", `{"key":"app-id-of-acme"}`, nil, 403},
		{"no key", "application/json", `{}`, nil, 400},
		{"not JSON", "application/json", `key=x`, nil, 400},
		{"from another site", "application/json", `{"key":"` + key2 + `"}`, []string{"Origin", "https://evil.example"}, 403},
		{"from another site, says the browser", "application/json", `{"key":"` + key2 + `"}`, []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"from a sibling site", "application/x-www-form-urlencoded", "key=" + key2, []string{"Sec-Fetch-Site", "same-site"}, 403},
	} {
		resp, body := call(t, http.DefaultClient, "POST", hs.URL+"/v1/session", c.ctype, c.body, c.hdr...)
		if resp.StatusCode != c.want || !json.Valid(body) || sessionCookie(resp) != nil {
			t.Errorf("sign in, %s: %d %s, want %d and no cookie", c.name, resp.StatusCode, body, c.want)
		}
	}

	// The dashboard's own page, directly or behind a proxy that rewrites
	// Host, signs in.
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "same-origin", "Origin", "https://apimeter.example.com"},
		{"Origin", "https://apimeter.example.com", "X-Forwarded-Host", "apimeter.example.com"},
		{"Origin", hs.URL},
	} {
		if resp, body := call(t, http.DefaultClient, "POST", hs.URL+"/v1/session", "application/json", `{"key":"`+key2+`"}`, hdr...); resp.StatusCode != 200 {
			t.Errorf("sign in with %v: %d %s", hdr, resp.StatusCode, body)
		}
	}

	// Sessions expire.
	if resp, _ := call(t, b, "POST", hs.URL+"/v1/session", "application/json", `{"key":"`+key2+`"}`); resp.StatusCode != 200 {
		t.Fatalf("sign in before the expiry check: %d", resp.StatusCode)
	}
	s.clock.add(auth.DefaultSessionTTL + time.Second)
	if resp, _ := call(t, b, "GET", hs.URL+"/v1/session", "", ""); resp.StatusCode != 401 {
		t.Errorf("expired session: %d", resp.StatusCode)
	}
}

func TestSessionCookieSecureOverTLS(t *testing.T) {
	s := newSite(t)
	_, key := s.key(t, "acme", auth.ScopeRead)
	hs := httptest.NewTLSServer(s.srv)
	defer hs.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, body := call(t, c, "POST", hs.URL+"/v1/session", "application/json", `{"key":"`+key+`"}`)
	if ck := sessionCookie(resp); resp.StatusCode != 200 || ck == nil || !ck.Secure {
		t.Errorf("over TLS: %d %s cookie %+v, want Secure", resp.StatusCode, body, ck)
	}
	plain := httptest.NewServer(s.srv)
	defer plain.Close()
	resp, _ = call(t, http.DefaultClient, "POST", plain.URL+"/v1/session", "application/json", `{"key":"`+key+`"}`, "X-Forwarded-Proto", "https")
	if ck := sessionCookie(resp); ck == nil || !ck.Secure {
		t.Errorf("behind a TLS proxy: cookie %+v, want Secure", ck)
	}
}

func TestSignInLink(t *testing.T) {
	s := newSite(t)
	hs := httptest.NewServer(s.srv)
	defer hs.Close()
	k, _ := s.key(t, "acme", auth.ScopeRead)
	b := browser(t)
	tok := s.guard.SignInToken(k.ID)
	resp, body := call(t, b, "GET", hs.URL+"/signin?token="+tok+"&next="+url.QueryEscape("/ui/events?env=prod"), "", "")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/ui/events?env=prod" || sessionCookie(resp) == nil {
		t.Fatalf("sign-in link: %d %s Location %q", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	if resp, body := call(t, b, "GET", hs.URL+"/v1/session", "", ""); resp.StatusCode != 200 || !strings.Contains(string(body), `"org":"acme"`) {
		t.Errorf("session after the link: %d %s", resp.StatusCode, body)
	}
	if resp, _ := call(t, browser(t), "GET", hs.URL+"/signin?token="+tok, "", ""); resp.StatusCode != 401 || sessionCookie(resp) != nil {
		t.Errorf("second use of a link: %d, want 401", resp.StatusCode)
	}
	// A browser that opens the used link again is sent to the sign-in
	// form, which says why.
	accept := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	if resp, body := call(t, browser(t), "GET", hs.URL+"/signin?token="+tok, "", "", "Accept", accept); resp.StatusCode != 303 ||
		resp.Header.Get("Location") != "/ui/?signin=invalid_token" || sessionCookie(resp) != nil {
		t.Errorf("second use of a link in a browser: %d %s Location %q, want 303 to /ui/?signin=invalid_token", resp.StatusCode, body, resp.Header.Get("Location"))
	}
	expired := s.guard.SignInToken(k.ID)
	s.clock.add(auth.DefaultSignInTTL + time.Second)
	if resp, _ := call(t, browser(t), "GET", hs.URL+"/signin?token="+expired, "", ""); resp.StatusCode != 401 {
		t.Errorf("expired link: %d, want 401", resp.StatusCode)
	}
	for next, want := range map[string]string{
		"":                        "/ui/",
		"/":                       "/",
		"//evil.example/x":        "/ui/",
		"https://evil.example/":   "/ui/",
		"/\\evil.example":         "/ui/",
		"javascript:alert(1)":     "/ui/",
		"ui/relative":             "/ui/",
		"/ui/#frag":               "/ui/#frag",
		"/%2F%2Fevil.example":     "/%2F%2Fevil.example",
		"/ui/\r\nSet-Cookie: x=1": "/ui/",
	} {
		tok := s.guard.SignInToken(k.ID)
		resp, _ := call(t, browser(t), "GET", hs.URL+"/signin?token="+tok+"&next="+url.QueryEscape(next), "", "")
		if got := resp.Header.Get("Location"); resp.StatusCode != 303 || got != want {
			t.Errorf("next=%q: %d Location %q, want %q", next, resp.StatusCode, got, want)
		}
	}
}

func TestKeyFile(t *testing.T) {
	s := newSite(t)
	k, key := s.key(t, "acme", auth.ScopeAdmin, "test", "prod", "test")
	if strings.Join(k.Envs, ",") != "prod,test" {
		t.Errorf("envs %v, want sorted and unique", k.Envs)
	}
	if len(key) < len(auth.Prefix)+22 { // 22 base64 characters hold 128 bits
		t.Errorf("key %q too short", key)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, auth.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), strings.TrimPrefix(key, auth.Prefix)) {
		t.Error("key file holds the key")
	}
	st, _ := os.Stat(filepath.Join(s.dir, auth.FileName))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if got, ok := s.keys.Lookup(key); !ok || got.ID != k.ID {
		t.Errorf("Lookup of a key created by another process: %+v %v", got, ok)
	}
	for _, spec := range []auth.Spec{{Org: "", Scope: "read"}, {Org: "acme", Scope: "write"}, {Org: "acme", Scope: "read", Envs: []string{"../x"}}} {
		if _, _, err := auth.Create(s.dir, spec); err == nil {
			t.Errorf("Create(%+v) accepted", spec)
		}
	}
	if _, err := auth.Revoke(s.dir, "other", k.ID); err == nil {
		t.Error("revoked a key of acme as org other")
	}
	if _, err := auth.Revoke(s.dir, "", "knope"); err == nil {
		t.Error("revoked an unknown key")
	}
	if _, err := auth.Revoke(s.dir, "", k.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // revoked by "another process": seen within a second
	if _, ok := s.keys.Lookup(key); ok {
		t.Error("revoked key still found")
	}
}
