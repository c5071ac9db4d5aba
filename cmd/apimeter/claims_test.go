package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
)

// TestClaimRuleThroughGateway: a collector configured with the company
// rule claim:tenant_id stores the company of calls that came through the
// gateway, which sends their token only as a fingerprint, because the
// gateway applies the same rules, given the same way (apimeter gateway
// --jwt-secret --company-rule; serve's own flags for --gateway-config).
func TestClaimRuleThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	ctx := context.Background()
	const secret = "claims-secret-0123456789abcdef0123"
	f := testServerFlags(t)
	f.JWTSecret = []string{secret}
	f.CompanyRule = []string{"url:/orgs/{id}", "claim:tenant_id"}
	f.JWTClaim = "sub"
	in, err := instance.Start(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	app, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	api := guideAPI(t)
	send := func(gw, user, tenant string) {
		t.Helper()
		tok := demo.Token([]byte(secret), demo.User{ID: user, Company: tenant})
		if status, _, body := call(t, "GET", gw+"/accounts/a1/message", "", map[string]string{"Authorization": "Bearer " + tok}); status != 200 {
			t.Fatalf("through the gateway: %d %s", status, body)
		}
	}
	stored := func(user string) apimeter.Event {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			evs, err := in.Store.Events(ctx, apimeter.EventFilter{Org: "acme", Env: "prod", UserID: user, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 1 {
				return evs[0]
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no event of user %s stored within 30 s", user)
		return apimeter.Event{}
	}

	t.Run("apimeter gateway", func(t *testing.T) {
		addr := freeAddr(t)
		cmd := exec.Command(os.Args[0], "gateway", "--upstream", api, "--listen", addr, "--collector", in.URL, "--app-id", app.ID,
			"--jwt-secret", secret, "--company-rule", "url:/orgs/{id}", "--company-rule", "claim:tenant_id", "--log-level", "warn")
		cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
		gw := "http://" + addr
		waitFor(t, "the gateway to listen", func() bool {
			resp, err := http.Get(gw + "/accounts/a1/message")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		send(gw, "u-gw", "tenant-gw")
		if e := stored("u-gw"); e.CompanyID != "tenant-gw" {
			t.Errorf("call through apimeter gateway stored with company %q, want tenant-gw (the token's tenant_id); headers %v", e.CompanyID, e.RequestHeaders)
		}
	})
	t.Run("serve --gateway-config", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "gateway.yaml")
		os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\norg: acme\nenv: prod\nupstreams:\n  - name: accounts\n    url: "+api+"\n"), 0o600)
		g, closeRedis, err := instance.StartGateway(ctx, in, cfg, f.IdentityConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer closeRedis()
		defer g.Close(ctx)
		send("http://"+g.Addr().String(), "u-embedded", "tenant-embedded")
		if e := stored("u-embedded"); e.CompanyID != "tenant-embedded" {
			t.Errorf("call through serve's gateway stored with company %q, want tenant-embedded", e.CompanyID)
		}
	})
}

// TestDemoLiveCallsHaveCompany: the demo's live calls to its sample API
// (captured by the middleware, tokens fingerprinted before sending) are
// stored with the company its claim:tenant_id rule reads from their JWTs,
// as the backfilled ones are.
func TestDemoLiveCallsHaveCompany(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "demo", "--listen", freeAddr(t), "--api-listen", freeAddr(t), "--backfill", "0", "--rate", "40")
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	var text strings.Builder
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "Ctrl-C stops the demo") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	base := regexp.MustCompile(`curl -s (?:-H "[^"]*" )?'(http://[^']+/environments/[^/]+)/stats/`).FindStringSubmatch(text.String())
	key := regexp.MustCompile(`APIMETER_KEY=(\S+)`).FindStringSubmatch(text.String())
	if base == nil || key == nil {
		t.Fatalf("the demo printed no Metrics API call or key:\n%s", text.String())
	}
	type event struct {
		UserID    string `json:"user_id"`
		CompanyID string `json:"company_id"`
		Request   struct {
			URI string `json:"uri"`
		} `json:"request"`
	}
	var live []event
	waitFor(t, "20 live /orders and /search calls with a user", func() bool {
		_, _, body := call(t, "GET", base[1]+"/events?limit=500", "", map[string]string{"Authorization": "Bearer " + key[1]})
		var out struct {
			Events []event `json:"events"`
		}
		json.Unmarshal([]byte(body), &out)
		live = live[:0]
		for _, e := range out.Events {
			if e.UserID != "" && (strings.Contains(e.Request.URI, "/orders") || strings.Contains(e.Request.URI, "/search")) {
				live = append(live, e)
			}
		}
		return len(live) >= 20
	})
	for _, e := range live {
		if e.CompanyID == "" {
			t.Errorf("live call %s of user %s stored without a company; want its token's tenant_id", e.Request.URI, e.UserID)
		}
	}
}
