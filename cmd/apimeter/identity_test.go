package main

import (
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/scrub"
)

// TestServeIdentityWiring starts the real server wiring with identity
// flags, maps a key through the CLI command, sends calls and reads usage
// back through the CLI's client, then restarts and reads it again.
func TestServeIdentityWiring(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	f := instance.Config{Listen: "127.0.0.1:0", Data: dir, BodyCap: 1024, MaxBodyBytes: 1 << 20, MaxBatchEvents: 100,
		IdentityConfig: instance.IdentityConfig{ClaimsConfig: instance.ClaimsConfig{JWTClaim: "sub", CompanyRule: []string{"url:/accounts/{id}"}}, BillingDay: 1, BillingTZ: "UTC"}}
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	admin := adminFlags{Server: in.URL, Org: "acme", Env: "prod", APIMeterKey: key}
	stdout := os.Stdout
	os.Stdout, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	err = (&aliasesPutCmd{adminFlags: admin, keyRef: keyRef{Key: "ak_cli_key_1"}, User: "513"}).Run(ctx)
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	call := func(id string, status int) moesif.Event {
		return moesif.Event{EventID: id,
			Request: moesif.Request{Time: "2026-11-24T10:00:00.000Z", URI: "https://api.example/accounts/abc/items", Verb: "GET",
				Headers: moesif.Headers{{Name: "X-Api-Key", Value: "ak_cli_key_1"}}},
			Response: &moesif.Response{Status: status}}
	}
	if _, err := demo.PostBatch(ctx, http.DefaultClient, in.URL, a.ID, []moesif.Event{call("e1", 200), call("e2", 502)}); err != nil {
		t.Fatal(err)
	}
	check := func(stage string) {
		var rep identity.Report
		if err := admin.call(ctx, "GET", "/v1/usage", map[string][]string{"period": {"2026-11"}, "group": {"company_id"}}, nil, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Rows) != 1 || rep.Rows[0].ID != "abc" || rep.Rows[0].Calls != 2 || rep.Rows[0].Errors != 1 {
			t.Fatalf("%s: usage by company = %+v, want abc with 2 calls and 1 error", stage, rep.Rows)
		}
	}
	check("running")
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	f.Listen = "127.0.0.1:0"
	if in, err = instance.Start(ctx, f); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	admin.Server = in.URL
	check("after restart")
	var al identity.AliasJSON
	if err := admin.call(ctx, "GET", "/v1/aliases/"+scrub.KeyHash("ak_cli_key_1"), nil, nil, &al); err != nil || al.UserID != "513" {
		t.Fatalf("alias after restart: %+v, %v", al, err)
	}
}

// TestUsageSurvivesKill9: aliases and usage counters of the embedded
// backend survive a kill -9 of the real server process, and a replay after
// the restart counts nothing twice.
func TestUsageSurvivesKill9(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	a, err := apps.Create(data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	// A key made before the server starts, as `apimeter keys create` does.
	_, key, err := auth.Create(data, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, data)
	admin := adminFlags{Server: c.url, Org: "acme", Env: "prod", APIMeterKey: key}
	var al identity.AliasJSON
	if err := admin.call(ctx, "PUT", "/v1/aliases", nil, identity.AliasJSON{Org: "acme", Env: "prod", Key: "ak_kill9_key", UserID: "513"}, &al); err != nil {
		t.Fatal(err)
	}
	var batch []moesif.Event
	for i := 0; i < 50; i++ {
		batch = append(batch, moesif.Event{EventID: "k9-" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Request: moesif.Request{Time: "2026-11-24T10:00:00.000Z", URI: "/items", Verb: "GET",
				Headers: moesif.Headers{{Name: "X-Api-Key", Value: "ak_kill9_key"}}},
			Response: &moesif.Response{Status: 200 + 300*(i%2)}})
	}
	if res, err := demo.PostBatch(ctx, http.DefaultClient, c.url, a.ID, batch); err != nil || res.Stored != 50 {
		t.Fatalf("post: %+v, %v", res, err)
	}
	c.kill9(t)

	c = startChild(t, data)
	defer c.kill9(t)
	admin.Server = c.url
	want := identity.Counts{Calls: 50, Errors: 25}
	check := func(stage string) {
		var rep identity.Report
		if err := admin.call(ctx, "GET", "/v1/usage", map[string][]string{"period": {"2026-11"}}, nil, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Rows) != 1 || rep.Rows[0].ID != "513" || rep.Rows[0].Counts != want {
			t.Fatalf("%s: usage %+v, want user 513 with %+v", stage, rep.Rows, want)
		}
	}
	check("after kill -9")
	if res, err := demo.PostBatch(ctx, http.DefaultClient, c.url, a.ID, batch); err != nil || res.Stored != 0 {
		t.Fatalf("replay after kill -9: %+v, %v; want nothing stored", res, err)
	}
	check("after replay")
}
