package scrub

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
)

func TestScrub(t *testing.T) {
	s := New([]string{"X-Internal-Token"}, []string{"session"}, 8)
	e := apimeter.Event{
		URI:   "https://h/p?a=1&api_key=K1&session=S1",
		Query: "a=1&api_key=K1&session=S1",
		RequestHeaders: apimeter.Headers{
			{Name: "Authorization", Value: "Bearer T1"}, {Name: "X-API-KEY", Value: "K2"}, {Name: "x-internal-token", Value: "I1"}, {Name: "Accept", Value: "*/*"},
		},
		ResponseHeaders: apimeter.Headers{{Name: "Set-Cookie", Value: "c=C1"}},
		SessionToken:    "Bearer T1",
		RequestBody:     apimeter.Body{Text: "héllo wörld"},
		UserAgent:       "bad\xffbyte",
	}
	s.Scrub(&e)
	for _, secret := range []string{"T1", "K1", "K2", "I1", "C1", "S1"} {
		all := e.URI + e.Query + e.SessionToken + e.APIKeyID
		for _, h := range append(e.RequestHeaders, e.ResponseHeaders...) {
			all += h.Value
		}
		if strings.Contains(all, secret) {
			t.Errorf("secret %s survived scrubbing: %+v", secret, e)
		}
	}
	if e.RequestHeaders.Get("accept") != "*/*" {
		t.Errorf("harmless header changed")
	}
	if e.APIKeyID != Fingerprint("K2") {
		t.Errorf("api key id %q, want the fingerprint of the X-API-KEY header", e.APIKeyID)
	}
	if e.SessionToken != Fingerprint("T1") {
		t.Errorf("session token %q, want the fingerprint of the bearer token", e.SessionToken)
	}
	if !e.RequestBody.Truncated || e.RequestBody.Text != "héllo w" || !utf8.ValidString(e.RequestBody.Text) {
		t.Errorf("body capped to %q (truncated %v), want 7 bytes cut at a rune boundary", e.RequestBody.Text, e.RequestBody.Truncated)
	}
	if !utf8.ValidString(e.UserAgent) {
		t.Errorf("invalid UTF-8 kept: %q", e.UserAgent)
	}
	before := e
	s.Scrub(&e)
	if !reflect.DeepEqual(before, e) {
		t.Errorf("Scrub is not idempotent:\n%+v\n%+v", before, e)
	}
}

func TestFingerprintOfHash(t *testing.T) {
	for _, key := range []string{"sk_live_1", "", "ключ"} {
		if got, want := FingerprintOfHash(KeyHash(key)), Fingerprint(key); got != want {
			t.Errorf("FingerprintOfHash(KeyHash(%q)) = %q, Fingerprint = %q", key, got, want)
		}
		if !IsFingerprint(Fingerprint(key)) {
			t.Errorf("IsFingerprint(Fingerprint(%q)) is false", key)
		}
	}
}
