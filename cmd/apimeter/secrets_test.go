package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// TestKeyedFingerprintsAndAliases starts the real server: the fingerprint
// key is created at first start (mode 0600) and kept across restarts;
// stored fingerprints are keyed (a dictionary of SHA-256 prefixes finds
// nothing); a key sent raw and the same key sent as a capture middleware's
// unkeyed fingerprint are stored alike; aliases made before and after a
// restart attribute calls, and answer the key_id events carry.
func TestKeyedFingerprintsAndAliases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	f := instance.Config{Listen: "127.0.0.1:0", Data: dir, BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		IdentityConfig: instance.IdentityConfig{ClaimsConfig: instance.ClaimsConfig{JWTClaim: "sub"}, BillingDay: 1, BillingTZ: "UTC"}}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, scrub.FingerprintKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("fingerprint key after first start: %v, %v; want mode 0600", st, err)
	}
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	admin := adminFlags{Server: in.URL, Org: "acme", Env: "prod", APIMeterKey: key}
	putAlias := func(key, user string) identity.AliasJSON {
		var al identity.AliasJSON
		if err := admin.call(ctx, "PUT", "/v1/aliases", nil, identity.AliasJSON{Org: "acme", Env: "prod", Key: key, UserID: user}, &al); err != nil {
			t.Fatal(err)
		}
		return al
	}
	call := func(id, uri string, h ...string) moesif.Event {
		ev := moesif.Event{EventID: id, Request: moesif.Request{Time: "2026-11-24T10:00:00.000Z", URI: uri, Verb: "GET"},
			Response: &moesif.Response{Status: 200}}
		for i := 0; i < len(h); i += 2 {
			ev.Request.Headers = append(ev.Request.Headers, apimeter.Header{Name: h[i], Value: h[i+1]})
		}
		return ev
	}
	before := putAlias("ak_before", "u-before")
	if _, err := demo.PostBatch(ctx, http.DefaultClient, in.URL, a.ID, []moesif.Event{
		call("raw", "/items", "X-Api-Key", "ak_before"),
		// What the capture middleware sends: unkeyed fingerprints.
		call("captured", "/items", "X-Api-Key", scrub.Fingerprint("ak_before")),
		call("pw", "/login?password=hunter2"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	f.Listen = "127.0.0.1:0"
	if in, err = instance.Start(ctx, f); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	admin.Server = in.URL
	after := putAlias("ak_after", "u-after")
	if _, err := demo.PostBatch(ctx, http.DefaultClient, in.URL, a.ID, []moesif.Event{
		call("raw-after-restart", "/items", "X-Api-Key", "ak_before"),
		call("new-alias", "/items", "Ocp-Apim-Subscription-Key", "ak_after"),
	}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, in.URL+"/v1/o/acme/environments/prod/events", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Events []moesif.Event }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	byID := map[string]moesif.Event{}
	for _, ev := range out.Events {
		byID[ev.EventID] = ev
	}
	keyed := before.KeyID
	if !scrub.IsFingerprint(keyed) || keyed == scrub.Fingerprint("ak_before") {
		t.Fatalf("alias key_id %q: want a keyed fingerprint, not the unkeyed %q", keyed, scrub.Fingerprint("ak_before"))
	}
	for _, c := range []struct{ id, user, keyID string }{
		{"raw", "u-before", keyed},
		{"captured", "", keyed}, // no raw key at the collector: no alias lookup, same key id
		{"raw-after-restart", "u-before", keyed},
		{"new-alias", "u-after", after.KeyID},
	} {
		ev := byID[c.id]
		if ev.UserID != c.user || ev.APIKeyID != c.keyID {
			t.Errorf("event %s: user %q key id %q, want user %q key id %q", c.id, ev.UserID, ev.APIKeyID, c.user, c.keyID)
		}
		if got := ev.Request.Headers; len(got) > 0 && got[0].Value != c.keyID {
			t.Errorf("event %s: stored key header %q, want %q", c.id, got[0].Value, c.keyID)
		}
	}
	uri := byID["pw"].Request.URI
	if strings.Contains(uri, "hunter2") || strings.Contains(uri, scrub.Fingerprint("hunter2")) || !strings.Contains(uri, "password=fp_") {
		t.Errorf("stored URI %q: want the password keyed, neither raw nor its unkeyed fingerprint", uri)
	}
}
