package identity_test

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
)

func TestCompanyRules(t *testing.T) {
	ev := func(path string, h ...string) *apimeter.Event {
		e := &apimeter.Event{Path: path}
		for i := 0; i+1 < len(h); i += 2 {
			e.RequestHeaders = append(e.RequestHeaders, apimeter.Header{Name: h[i], Value: h[i+1]})
		}
		return e
	}
	claims := jwt.MapClaims{"tenant_id": "t-42", "org_num": float64(7)}
	cases := []struct {
		name, rule string
		e          *apimeter.Event
		want       string
	}{
		{"seed URL", "url:/accounts/{id}", ev("/accounts/abcdef/message"), "abcdef"},
		{"seed URL numeric", "url:/accounts/{id}/", ev("/accounts/1234/items"), "1234"},
		{"anchored does not match deeper", "url:/accounts/{id}", ev("/v1/accounts/1234/items"), ""},
		{"unanchored matches deeper", "url:accounts/{id}", ev("/v1/accounts/1234/items"), "1234"},
		{"no id segment", "url:/accounts/{id}", ev("/accounts"), ""},
		{"wildcard", "url:/*/orgs/{org}", ev("/v2/orgs/o-9/x"), "o-9"},
		{"other path", "url:/accounts/{id}", ev("/users/1"), ""},
		{"header", "header:X-Company-Id", ev("/", "x-company-id", " c-1 "), "c-1"},
		{"header absent", "header:X-Company-Id", ev("/"), ""},
		{"claim", "claim:tenant_id", ev("/"), "t-42"},
		{"numeric claim", "claim:org_num", ev("/"), "7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := identity.ParseCompanyRule(c.rule)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Company(c.e, claims); got != c.want {
				t.Fatalf("%s on %q = %q, want %q", c.rule, c.e.Path, got, c.want)
			}
		})
	}
	for _, bad := range []string{"", "url", "url:/accounts", "url:/{a}/{b}", "cookie:x", "header:"} {
		if _, err := identity.ParseCompanyRule(bad); err == nil {
			t.Errorf("ParseCompanyRule(%q) succeeded, want an error", bad)
		}
	}
}
