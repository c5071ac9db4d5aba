package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/auth"
)

// TestSessionCookieChangesNeedSameOriginJSON: with an admin's session
// cookie, a page of the same site (another port, a sibling subdomain)
// posting text/plain or JSON to POST /v1/keys creates no key (before, it
// created admin keys); only the dashboard's own pages sending JSON do.
// The same calls with the key as Bearer are unaffected.
func TestSessionCookieChangesNeedSameOriginJSON(t *testing.T) {
	s := newSite(t)
	hs := httptest.NewServer(s.srv)
	defer hs.Close()
	_, admin := s.key(t, "acme", auth.ScopeAdmin)
	b := browser(t)
	if resp, body := call(t, b, "POST", hs.URL+"/v1/session", "application/json", `{"key":"`+admin+`"}`, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != 200 {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	keysOfAcme := func() int { return len(s.keys.List("acme")) }
	before := keysOfAcme()
	body := `{"scope":"admin","name":"attacker"}`
	for _, c := range []struct {
		name, ctype string
		hdr         []string
		want        int
	}{
		{"another port, text/plain", "text/plain", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:1"}, 403},
		{"sibling subdomain, JSON", "application/json", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"cross site, form", "application/x-www-form-urlencoded", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"old browser, another port", "text/plain", []string{"Origin", "http://127.0.0.1:1"}, 403},
		{"no Sec-Fetch-Site nor Origin", "application/json", nil, 403},
		{"same origin, text/plain", "text/plain", []string{"Sec-Fetch-Site", "same-origin"}, 415},
		{"same origin, no content type", "", []string{"Sec-Fetch-Site", "same-origin"}, 415},
	} {
		resp, out := call(t, b, "POST", hs.URL+"/v1/keys", c.ctype, body, c.hdr...)
		if resp.StatusCode != c.want || !strings.Contains(string(out), `"code"`) {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, out, c.want)
		}
	}
	if n := keysOfAcme(); n != before {
		t.Fatalf("refused posts created %d keys", n-before)
	}
	resp, out := call(t, b, "POST", hs.URL+"/v1/keys", "application/json", body, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the dashboard's own JSON post: %d %s, want 201", resp.StatusCode, out)
	}
	if resp, out := call(t, b, "POST", hs.URL+"/v1/keys", "application/json", body, "Origin", hs.URL); resp.StatusCode != http.StatusCreated {
		t.Errorf("old browser, same origin: %d %s, want 201", resp.StatusCode, out)
	}
	// A key in the header: no browser adds it by itself.
	if resp, out := call(t, http.DefaultClient, "POST", hs.URL+"/v1/keys", "text/plain", body, "Authorization", "Bearer "+admin, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusCreated {
		t.Errorf("Bearer key: %d %s, want 201", resp.StatusCode, out)
	}
	// DELETE with the cookie: same rule, no body needed.
	k := s.keys.List("acme")[0]
	if resp, out := call(t, b, "DELETE", hs.URL+"/v1/keys/"+k.ID, "", "", "Sec-Fetch-Site", "same-site"); resp.StatusCode != 403 {
		t.Errorf("DELETE from a sibling site: %d %s, want 403", resp.StatusCode, out)
	}
}
