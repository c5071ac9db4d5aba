package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/instance"
)

// TestCustomerQuotasReadAPI runs serve with a gateway whose quota counts
// companies, calls through the gateway, and reads a company's quotas as
// the dashboard's customer page does: with a read key of the org, the
// quota with its use; with a key of another org, nothing.
func TestCustomerQuotasReadAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and a gateway; skipped with -short")
	}
	f := testServerFlags(t)
	_, readKey, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := auth.Create(f.Data, auth.Spec{Org: "globex", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	base, gwAddr := serveWithGateway(t, f, "  - {name: company-daily, by: company, per: day, limit: 100, overrides: {c2: 7}}\n")
	for i := range 5 {
		if code, _, body := call(t, "GET", "http://"+gwAddr+"/pay", "", map[string]string{"X-Company-Id": []string{"c1", "c1", "c1", "c2", "c2"}[i]}); code != 200 {
			t.Fatalf("gateway: %d %s", code, body)
		}
	}
	get := func(path, key string) (int, []gateway.Headroom, string) {
		code, _, body := call(t, "GET", base+path, "", map[string]string{"Authorization": "Bearer " + key})
		var a struct {
			Quotas []gateway.Headroom `json:"quotas"`
		}
		json.Unmarshal([]byte(body), &a)
		return code, a.Quotas, body
	}
	for id, want := range map[string][2]int64{"c1": {3, 100}, "c2": {2, 7}} {
		code, qs, body := get("/v1/o/acme/environments/prod/companies/"+id+"/quotas", readKey)
		if code != 200 || len(qs) != 1 || qs[0].Name != "company-daily" || qs[0].Used != want[0] || qs[0].Limit != want[1] || qs[0].Per != "day" {
			t.Errorf("company %s: %d %s, want company-daily %d used of %d", id, code, body, want[0], want[1])
		}
	}
	if code, qs, body := get("/v1/o/acme/environments/prod/users/u1/quotas", readKey); code != 200 || qs == nil || len(qs) != 0 {
		t.Errorf("a user (no quota counts users): %d %s, want an empty list", code, body)
	}
	if code, _, body := get("/v1/o/acme/environments/prod/companies/c1/quotas", otherKey); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("a key of another org: %d %s, want 401 or 403", code, body)
	}
	if code, _, body := get("/v1/o/acme/environments/prod/companies/c1/quotas", ""); code != http.StatusUnauthorized {
		t.Errorf("no key: %d %s, want 401", code, body)
	}

	// The dashboard's customer page shows the quota (web/e2e/quota.test.mjs).
	node, browser, webDir, missing := browserTools()
	if missing != "" {
		t.Logf("the customer page's quota tile is not checked in a browser: %s", missing)
		return
	}
	runBrowserTest(t, node, webDir, "e2e/quota.test.mjs",
		"APIMETER_URL="+base, "APIMETER_KEY="+readKey, "APIMETER_E2E_OUT="+filepath.Join(webDir, "e2e", "output"), "CHROMIUM="+browser)
}

// serveWithGateway runs serve with f (its keys and apps made beforehand)
// and a gateway of org acme, env prod in front of an upstream "pay" that
// answers ok, taking the company from X-Company-Id, with the quotas given
// (YAML list items). It answers the server's base URL and the gateway's
// address once both serve; both stop when the test ends.
func serveWithGateway(t *testing.T, f instance.Config, quotas string) (base, gwAddr string) {
	t.Helper()
	backend := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	t.Cleanup(func() { backend.Close() })
	gwAddr = freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := fmt.Sprintf("listen: %s\norg: acme\nenv: prod\nupstreams:\n  - {name: pay, url: \"http://%s\"}\ncompany_rules: [\"header:X-Company-Id\"]\nquotas:\n%s", gwAddr, bln.Addr(), quotas)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Listen = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&serveCmd{Config: f, GatewayConfig: cfgPath}).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve still running 20 s after its context ended")
		}
	})
	base = "http://" + f.Listen
	waitHTTP(t, base+"/healthz")
	waitHTTP(t, "http://"+gwAddr+"/pay")
	return base, gwAddr
}
