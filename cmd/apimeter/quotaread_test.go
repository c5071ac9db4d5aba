package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/gateway"
)

// TestCustomerQuotasReadAPI runs serve with a gateway whose quota counts
// companies, calls through the gateway, and reads a company's quotas as
// the dashboard's customer page does: with a read key of the org, the
// quota with its use; with a key of another org, nothing.
func TestCustomerQuotasReadAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and a gateway; skipped with -short")
	}
	backend := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	defer backend.Close()
	gwAddr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`listen: %s
org: acme
env: prod
upstreams:
  - name: pay
    url: http://%s
company_rules: ["header:X-Company-Id"]
quotas:
  - {name: company-daily, by: company, per: day, limit: 100, overrides: {c2: 7}}
`, gwAddr, bln.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	f := testServerFlags(t)
	f.Listen = freeAddr(t)
	_, readKey, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := auth.Create(f.Data, auth.Spec{Org: "globex", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&serveCmd{Config: f, GatewayConfig: cfgPath}).Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve still running 20 s after its context ended")
		}
	}()
	base := "http://" + f.Listen
	waitHTTP(t, base+"/healthz")
	waitHTTP(t, "http://"+gwAddr+"/pay")
	for i := range 5 {
		req, _ := http.NewRequest("GET", "http://"+gwAddr+"/pay", nil)
		req.Header.Set("X-Company-Id", []string{"c1", "c1", "c1", "c2", "c2"}[i])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get := func(path, key string) (int, []gateway.Headroom, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var a struct {
			Quotas []gateway.Headroom `json:"quotas"`
		}
		json.Unmarshal(b, &a)
		return resp.StatusCode, a.Quotas, string(b)
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
}
