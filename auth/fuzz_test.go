package auth

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

// FuzzCredential: Authorization headers come from anyone; reading one
// never panics, and a key sent in either form comes out whole.
func FuzzCredential(f *testing.F) {
	for _, s := range []string{"Bearer apmk_x", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:apmk_y")), "Basic ", "basic Og==", "Bearer", "  Bearer   k  ", "Digest x"} {
		f.Add(s, "apmk_abc")
	}
	f.Fuzz(func(t *testing.T, h, key string) {
		credential(h)
		if key == "" || key != strings.TrimSpace(key) || strings.Contains(key, ":") {
			return
		}
		for _, h := range []string{"Bearer " + key, "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+key))} {
			if got, ok := credential(h); !ok || got != key {
				t.Fatalf("credential(%q) = %q, %v; want %q", h, got, ok, key)
			}
		}
	})
}

// FuzzSafeNext: whatever next a sign-in link carries, the redirect stays
// on this site.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/ui/", "//evil", "/\\evil", "https://x/", "/ui/?a=1#b", "/%2F/x", "\t/x", "/x\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n\t") {
			t.Fatalf("safeNext(%q) = %q leaves the site", next, got)
		}
		if got != "/ui/" && got != next {
			t.Fatalf("safeNext(%q) = %q: changed a path instead of refusing it", next, got)
		}
	})
}
