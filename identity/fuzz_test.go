package identity_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/identity"
)

func seedLines(f *testing.F, path string) []string {
	fh, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// FuzzParseJWKS: a JWKS file is outside input; parsing never panics and
// yields only key types the verifier understands.
func FuzzParseJWKS(f *testing.F) {
	b, err := os.ReadFile("testdata/jwks.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		ks, err := identity.ParseJWKS(doc)
		if err != nil {
			return
		}
		for _, k := range ks.Keys {
			if k.Key == nil {
				t.Fatalf("key %q parsed to nil", k.ID)
			}
		}
		identity.NewJWT(identity.JWTOptions{JWKS: ks}).Claims("eyJhbGciOiJFUzI1NiJ9.e30.AAAA", time.Now())
	})
}

// FuzzJWTClaims: bearer tokens are outside input; reading them never
// panics, and in verify mode nothing not signed with the secret identifies
// anyone.
func FuzzJWTClaims(f *testing.F) {
	for _, l := range seedLines(f, "testdata/tokens.txt") {
		f.Add(l)
	}
	verify := identity.NewJWT(identity.JWTOptions{HMACSecrets: [][]byte{[]byte("fuzz-secret-that-nobody-knows-123")}, CacheSize: -1})
	decode := identity.NewJWT(identity.JWTOptions{CacheSize: 4})
	at := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, tok string) {
		if c := verify.Claims(tok, at); c != nil {
			t.Fatalf("token %q verified without the secret: %v", tok, c)
		}
		decode.Claims(tok, at)
	})
}

// FuzzCompanyRule: rules come from configuration and paths from senders;
// matching never panics and a match is one whole path segment.
func FuzzCompanyRule(f *testing.F) {
	for _, l := range seedLines(f, "testdata/company_rules.txt") {
		rule, path, _ := strings.Cut(l, "\t")
		f.Add(rule, path)
	}
	f.Fuzz(func(t *testing.T, rule, path string) {
		r, err := identity.ParseCompanyRule(rule)
		if err != nil {
			return
		}
		got := r.Company(&apimeter.Event{Path: path}, nil)
		if strings.HasPrefix(rule, "url:") && got != "" && (strings.Contains(got, "/") || !strings.Contains(path, got)) {
			t.Fatalf("rule %q on %q captured %q, not a segment of the path", rule, path, got)
		}
	})
}

// FuzzPeriodParse: period names come from API callers; a parsed period is
// non-empty and names itself.
func FuzzPeriodParse(f *testing.F) {
	for _, s := range []string{"2026-11", "current", "previous", "0000-01", "9999-12", "2026-13"} {
		f.Add(s, 15)
	}
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, label string, anchor int) {
		ps := identity.Periods{AnchorDay: anchor%31 + 1}
		p, err := ps.Parse(label, now)
		if err != nil {
			return
		}
		if !p.Start.Before(p.End) || ps.Of(p.Start).Label != p.Label || ps.Of(p.End.Add(-time.Nanosecond)).Label != p.Label {
			t.Fatalf("period %q (anchor %d) = %+v is not a consistent period", label, anchor, p)
		}
	})
}
