package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
)

// alertReceiver records the webhook notifications a server sends.
type alertReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []string // "event rule"
}

func newAlertReceiver(t *testing.T) *alertReceiver {
	r := &alertReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var n struct {
			Event string `json:"event"`
			Rule  struct {
				ID string `json:"id"`
			} `json:"rule"`
		}
		json.NewDecoder(req.Body).Decode(&n)
		r.mu.Lock()
		r.got = append(r.got, n.Event+" "+n.Rule.ID)
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *alertReceiver) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// waitFor polls cond (another process's doing) until it holds or a minute
// passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// evaluations reads apimeter_alerts_evaluations_total{result="ok"} from a
// server's /metrics.
func evaluations(t *testing.T, base string) int {
	return promValue(t, base, `apimeter_alerts_evaluations_total{result="ok"} `)
}

// promValue reads the series line starting with prefix from /metrics.
func promValue(t *testing.T, base, prefix string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

func alertCalls(api string, n int) []moesif.Event {
	now := time.Now().UTC()
	out := make([]moesif.Event, n)
	for i := range out {
		out[i] = moesif.Event{
			EventID: fmt.Sprintf("%s-%d-%d", api, now.UnixNano(), i), APIName: api,
			Request:  moesif.Request{Time: now.Format(time.RFC3339Nano), URI: "http://api.example.com/orders/1", Verb: "GET"},
			Response: &moesif.Response{Time: now.Format(time.RFC3339Nano), Status: 200},
		}
	}
	return out
}

// TestAlertsSurviveKill9: a server evaluating a rules file notifies a
// firing rule and a rule that fired and resolved; killed with SIGKILL and
// started again on the same store, it evaluates on and sends nothing more:
// the firing rule is known to fire, the resolved one to be resolved. On
// the embedded store and on ClickHouse (with Redis leases).
func TestAlertsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	for _, engine := range []string{"duckdb", "clickhouse"} {
		t.Run(engine, func(t *testing.T) {
			data := t.TempDir()
			var flags, store []string
			if engine == "clickhouse" {
				store = []string{"--store", chtest.Shared(t).DSN(chtest.Database(t))}
				flags = append(store, "--redis", redisURL(t))
			}
			app := lastLine(t, append([]string{"apps", "create", "--data", data, "--org", "acme", "--env", "prod"}, store...)...)
			recv := newAlertReceiver(t)
			cfg := filepath.Join(data, "alerts.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf(`rules:
  - id: stays
    org: acme
    env: prod
    metric: sum(message_count)
    api: steady
    window: 30m
    threshold: 2
    channels: [{type: webhook, url: %[1]q, secret: whsec_0123456789abcdef}]
  - id: flash
    org: acme
    env: prod
    metric: sum(message_count)
    api: flash
    window: 2s
    threshold: 2
    channels: [{type: webhook, url: %[1]q, secret: whsec_0123456789abcdef}]
`, recv.srv.URL)), 0o600)
			flags = append(flags, "--alerts-config", cfg, "--alerts-interval", "100ms")
			c := startChild(t, data, flags...)
			ctx := context.Background()
			for _, api := range []string{"steady", "flash"} {
				if _, err := demo.PostBatch(ctx, http.DefaultClient, c.url, app, alertCalls(api, 3)); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]bool{"firing stays": true, "firing flash": true, "resolved flash": true}
			waitFor(t, "firing stays, firing flash, resolved flash", func() bool {
				got := recv.list()
				return len(got) == 3 && want[got[0]] && want[got[1]] && want[got[2]]
			})
			// The delivery log has them (a kill between a receiver's answer
			// and the log's write sends that notification again, with the
			// same id: docs/alerts.md).
			waitFor(t, "3 deliveries logged", func() bool {
				return promValue(t, c.url, `apimeter_alerts_deliveries_total{channel="webhook",outcome="delivered"} `) == 3
			})
			c.kill9(t)

			c = startChild(t, data, flags...)
			defer func() {
				c.cmd.Process.Signal(syscall.SIGTERM)
				c.cmd.Wait()
			}()
			// Ten evaluations of both rules after the restart.
			waitFor(t, "20 evaluations after restart", func() bool { return evaluations(t, c.url) >= 20 })
			if got := recv.list(); len(got) != 3 {
				t.Fatalf("after kill -9 and restart the receiver got %v; want only the 3 notifications sent before", got)
			}
		})
	}
}

// TestAlertsAPI: admin keys make rules, read keys list them (without
// webhook secrets) and cannot change them, a bad rule is a 400 naming the
// field, and a rule of the config file cannot be changed over the API.
func TestAlertsAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	data := t.TempDir()
	admin := lastLine(t, "keys", "create", "--data", data, "--org", "acme", "--scope", "admin")
	read := lastLine(t, "keys", "create", "--data", data, "--org", "acme", "--scope", "read")
	other := lastLine(t, "keys", "create", "--data", data, "--org", "other", "--scope", "admin")
	cfg := filepath.Join(data, "alerts.yaml")
	os.WriteFile(cfg, []byte("rules:\n  - {id: from-file, org: acme, env: prod, kind: absence, window: 1h}\n"), 0o600)
	c := startChild(t, data, "--alerts-config", cfg, "--alerts-interval", "100ms")
	defer c.kill9(t)
	base := c.url + "/v1/o/acme/environments/prod/alerts/rules"
	do := func(method, url, key, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	rule := `{"id":"errs","metric":"error_rate","per":"company","window":"10m","threshold":0.05,"min_volume":50,"for":"2m",
"channels":[{"type":"webhook","url":"https://hooks.example.com/a","secret":"whsec_0123456789abcdef"},{"type":"slack","url":"https://hooks.slack.com/services/T/B/X"}]}`
	if code, body := do("POST", base, read, rule); code != http.StatusForbidden {
		t.Errorf("POST with a read key: %d %v, want 403", code, body)
	}
	if code, body := do("POST", strings.Replace(base, "/acme/", "/other/", 1), admin, rule); code != http.StatusForbidden {
		t.Errorf("POST to another org: %d %v, want 403", code, body)
	}
	_ = other
	if code, body := do("POST", base, admin, rule); code != http.StatusCreated {
		t.Fatalf("POST: %d %v, want 201", code, body)
	}
	if code, _ := do("POST", base, admin, rule); code != http.StatusConflict {
		t.Errorf("POST again: %d, want 409", code)
	}
	code, body := do("GET", base, read, "")
	if code != http.StatusOK {
		t.Fatalf("GET: %d %v", code, body)
	}
	b, _ := json.Marshal(body)
	if !strings.Contains(string(b), `"id":"errs"`) || !strings.Contains(string(b), `"id":"from-file"`) || strings.Contains(string(b), "whsec_") {
		t.Errorf("GET rules: %s; want both rules and no secret", b)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"metric":"sum(nope)","window":"5m"}`, "metric"},
		{`{"metric":"error_rate","window":"5m","per":"team"}`, "per"},
		{`{"metric":"error_rate","window":"-5m"}`, "window"},
		{`{"metric":"error_rate","window":"5m","filter":"apiproxy eq"}`, "filter"},
		{`{"metric":"error_rate","window":"5m","channels":[{"type":"webhook","url":"https://x.example.com"}]}`, "channels[0].secret"},
		{`{"kind":"quota","per":"user","percent":80,"quota":"monthly"}`, "quota"},
		{`{"meter":"tokens","per":"company","window":"5m","threshold":1}`, "per"},
		{`{"meter":"tokens","api":"orders","window":"5m","threshold":1}`, "api"},
	} {
		code, body := do("PUT", base+"/bad", admin, tc.body)
		e, _ := body["error"].(map[string]any)
		if code != http.StatusBadRequest || e["field"] != tc.field {
			t.Errorf("PUT %s: %d %v, want 400 naming %s", tc.body, code, body, tc.field)
		}
	}
	// Every server has meters: a rule over a meter's value per subject is taken.
	if code, body := do("PUT", base+"/tokens", admin, `{"meter":"tokens","per":"subject","window":"1h","threshold":1000}`); code >= 300 {
		t.Errorf("PUT a meter rule: %d %v, want it taken", code, body)
	}
	if code, _ := do("PUT", base+"/from-file", admin, `{"kind":"absence","window":"2h"}`); code != http.StatusConflict {
		t.Errorf("PUT a file rule: %d, want 409", code)
	}
	if code, _ := do("DELETE", base+"/errs", admin, ""); code != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", code)
	}
	if code, _ := do("GET", base+"/errs", read, ""); code != http.StatusNotFound {
		t.Errorf("GET deleted: %d, want 404", code)
	}

	// SIGHUP reads the file again.
	os.WriteFile(cfg, []byte("rules:\n  - {id: reloaded, org: acme, env: prod, kind: absence, window: 2h}\n"), 0o600)
	c.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reloaded rule", func() bool { code, _ := do("GET", base+"/reloaded", read, ""); return code == http.StatusOK })
	if code, _ := do("GET", base+"/from-file", read, ""); code != http.StatusNotFound {
		t.Errorf("a rule removed from the file is still there after SIGHUP: %d", code)
	}
}
