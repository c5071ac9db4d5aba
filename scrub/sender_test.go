package scrub

import (
	"encoding/json"
	"testing"

	"github.com/apimeter/apimeter"
)

// A Sender must give what the Scrubber gives for the parts it scrubs.
func TestSenderMatchesScrubber(t *testing.T) {
	hdr := func(kv ...string) apimeter.Headers {
		var h apimeter.Headers
		for i := 0; i < len(kv); i += 2 {
			h = append(h, apimeter.Header{Name: kv[i], Value: kv[i+1]})
		}
		return h
	}
	cases := []struct {
		name string
		ev   apimeter.Event
	}{
		{"canonical secret headers", apimeter.Event{RequestHeaders: hdr("Authorization", "Bearer a.b.c", "Cookie", "s=1", "Accept", "*/*"), ResponseHeaders: hdr("Set-Cookie", "t=2")}},
		{"other spellings", apimeter.Event{RequestHeaders: hdr("authorization", "Basic x", "X-API-KEY", "k1", "x-custom-secret", "c")}},
		{"api key and session", apimeter.Event{RequestHeaders: hdr("X-Api-Key", "key-1"), SessionToken: "Bearer tok"}},
		{"explicit api key id kept", apimeter.Event{RequestHeaders: hdr("X-Api-Key", "key-1"), APIKeyID: "fp_0000000000000000"}},
		{"query secrets", apimeter.Event{URI: "http://h/p?api_key=s1&x=1", Query: "api_key=s1&x=1", RequestHeaders: hdr("Ocp-Apim-Subscription-Key", "k2")}},
		{"key headers out of priority order", apimeter.Event{RequestHeaders: hdr("Api-Key", "k3", "ocp-apim-subscription-key", "k2", "X-API-Key", "k1")}},
		{"empty key header skipped", apimeter.Event{RequestHeaders: hdr("X-Api-Key", "", "Api-Key", "k3")}},
		{"already scrubbed", apimeter.Event{RequestHeaders: hdr("Authorization", "fp_0011223344556677"), SessionToken: "fp_aa"}},
	}
	extra := []string{"X-Custom-Secret"}
	root := New(extra, nil, 1024)
	fast := root.NewSender()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.ev, tc.ev
			a.RequestHeaders = append(apimeter.Headers(nil), tc.ev.RequestHeaders...)
			a.ResponseHeaders = append(apimeter.Headers(nil), tc.ev.ResponseHeaders...)
			b.RequestHeaders = append(apimeter.Headers(nil), tc.ev.RequestHeaders...)
			b.ResponseHeaders = append(apimeter.Headers(nil), tc.ev.ResponseHeaders...)
			fast.Scrub(&a)
			fast.Scrub(&a) // cached fingerprints, idempotent
			root.Scrub(&b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if string(ja) != string(jb) {
				t.Fatalf("Sender gave\n%s\nScrubber gives\n%s", ja, jb)
			}
		})
	}
}
