package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/instance"
	"github.com/apimeter/apimeter/internal/stripemocktest"
)

// runCLIResult runs the apimeter command and returns its output and
// error, without failing t.
func runCLIResult(args ...string) (string, string, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "APIMETER_TEST_AS_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestBillingCLI runs the billing commands against a running server: the
// export (CSV and JSON) equals the meter query of the month, a push
// through the server's ledger reaches stripe-mock once, and a statement
// verifies from its customer export, and fails, naming what differs, once
// an event is changed, added or removed.
func TestBillingCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	ctx := context.Background()
	mock := stripemocktest.Start(t)
	data := t.TempDir()
	cat, done, err := instance.OpenCatalog(ctx, instance.StoreConfig{}, data)
	if err != nil {
		t.Fatal(err)
	}
	app, err := cat.CreateApp(ctx, "o", "prod")
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := cat.Keys.Create(auth.Spec{Org: "o", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	done()
	secret := filepath.Join(data, "billing.secret")
	os.WriteFile(secret, []byte(strings.Repeat("s3cret-", 6)), 0o600)
	srv := startChild(t, data, "--billing-secret-file", secret)
	defer srv.kill9(t)

	sendJSON(t, http.MethodPost, admin, srv.url+"/api/v1/meters",
		map[string]any{"slug": "tokens", "eventType": "tokens", "aggregation": "SUM", "valueProperty": "$.tokens", "stripeEventName": "api_tokens"},
		http.StatusCreated, nil)
	prof, _ := http.NewRequest("POST", srv.url+"/v1/companies/batch", strings.NewReader(`[{"company_id":"acme","metadata":{"stripe_customer_id":"cus_acme"}},{"company_id":"globex","metadata":{"stripe_customer_id":"cus_globex"}}]`))
	prof.Header.Set("Content-Type", "application/json")
	prof.Header.Set("X-Moesif-Application-Id", app.ID)
	if resp, err := http.DefaultClient.Do(prof); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("POST /v1/companies: %v %v", resp, err)
	}
	var evs []cloudEvent
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range 60 {
		c := []string{"acme", "globex"}[i%2]
		ts := start.Add(time.Duration(i) * 11 * time.Hour) // 27 days: some in December
		evs = append(evs, cloudEvent{SpecVersion: "1.0", ID: fmt.Sprintf("e%02d", i), Source: "cli", Type: "tokens", Subject: c,
			Time: ts.Format(time.RFC3339), Data: map[string]any{"tokens": i + 1}})
	}
	if _, err := postCloudEvents(ctx, srv.url, admin, evs); err != nil {
		t.Fatal(err)
	}
	// The ledger cannot be forged by a sender.
	forged := []cloudEvent{{SpecVersion: "1.0", ID: "f1", Source: "apimeter-billing", Type: billing.LedgerType, Subject: "acme",
		Time: start.Format(time.RFC3339), Data: map[string]any{"meter": "tokens", "period": "2026-11", "state": "sent", "cumulative": 1e9}}}
	if code, _ := postCloudEvents(ctx, srv.url, app.ID, forged); code != http.StatusBadRequest {
		t.Fatalf("a ledger event sent to /api/v1/events: %d, want 400", code)
	}
	// Bad input: 4xx naming what is wrong.
	bp := srv.url + "/v1/o/o/environments/prod/billing/"
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "export?period=2026-13", nil, 400},
		{"GET", "export", nil, 400},
		{"GET", "export?period=2026-11&format=xml", nil, 400},
		{"POST", "ledger?period=2026-11", map[string]any{"meter": "tokens", "customer": "acme", "period": "2026-11", "state": "paid", "identifier": "x"}, 400},
		{"POST", "ledger?period=2026-11", map[string]any{"meter": "tokens", "customer": "acme", "period": "2026-10", "state": "sent", "identifier": "x"}, 400},
		{"POST", "ledger?period=2026-11", map[string]any{"bogus": 1}, 400},
		{"GET", "statement?period=2026-11&meter=nope&customer=acme", nil, 404},
	} {
		var e struct {
			Error struct{ Message, Field string }
		}
		sendJSON(t, c.method, admin, bp+c.path, c.body, c.want, &e)
		if e.Error.Message == "" {
			t.Errorf("%s %s: no message", c.method, c.path)
		}
	}
	sendJSON(t, "GET", app.ID, bp+"export?period=2026-11", nil, 403, nil)
	base := []string{"--server", srv.url, "--org", "o", "--apimeter-key", admin, "--period", "2026-11"}

	// Export: CSV and JSON agree with the meter query of November.
	var q struct {
		Data []struct {
			Value   float64 `json:"value"`
			Subject string  `json:"subject"`
		} `json:"data"`
	}
	sendJSON(t, http.MethodGet, admin, srv.url+"/api/v1/meters/tokens/query?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&groupBy=subject", nil, 200, &q)
	if len(q.Data) != 2 {
		t.Fatalf("meter query: %+v", q)
	}
	rows, err := csv.NewReader(strings.NewReader(runCLI(t, append([]string{"billing", "export"}, base...)...))).ReadAll()
	if err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != "customer,meter,period,value,events" {
		t.Fatalf("CSV export: %v %v", rows, err)
	}
	var js struct{ Lines []billing.Line }
	if err := json.Unmarshal([]byte(runCLI(t, append([]string{"billing", "export", "--format", "json"}, base...)...)), &js); err != nil {
		t.Fatal(err)
	}
	events := map[string]int64{}
	for _, e := range evs {
		if ts, _ := time.Parse(time.RFC3339, e.Time); ts.Before(start.AddDate(0, 1, 0)) {
			events[e.Subject]++
		}
	}
	for i, r := range q.Data {
		l := js.Lines[i]
		if l.Customer != r.Subject || l.Value != r.Value || rows[i+1][0] != r.Subject || rows[i+1][3] != strconv.FormatFloat(r.Value, 'f', -1, 64) || l.Events != events[r.Subject] {
			t.Errorf("export %+v / %v; meter query %+v, %d events", l, rows[i+1], r, events[r.Subject])
		}
	}

	// Push, through the server's ledger, then again: nothing new.
	var mu sync.Mutex
	billed := map[string]float64{}
	u, _ := url.Parse(mock)
	rp := httputil.NewSingleHostReverseProxy(u)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		v, _ := strconv.ParseFloat(r.PostForm.Get("payload[value]"), 64)
		mu.Lock()
		billed[r.PostForm.Get("payload[stripe_customer_id]")] += v
		mu.Unlock()
		body := r.PostForm.Encode()
		r.Body, r.ContentLength = ioNopCloser(body), int64(len(body))
		rp.ServeHTTP(w, r)
	}))
	defer rec.Close()
	push := append([]string{"billing", "push", "--stripe-api-key", "sk_test_123", "--stripe-api-base", rec.URL}, base...)
	if out := runCLI(t, push...); !strings.Contains(out, "2 meter events sent") {
		t.Fatalf("first push: %s", out)
	}
	if out := runCLI(t, push...); !strings.Contains(out, "0 meter events sent") || !strings.Contains(out, "2 up to date") {
		t.Fatalf("second push: %s", out)
	}
	for _, r := range q.Data {
		if billed["cus_"+r.Subject] != r.Value {
			t.Errorf("Stripe got %v for %s, the export says %v", billed["cus_"+r.Subject], r.Subject, r.Value)
		}
	}

	// Statements.
	file := filepath.Join(t.TempDir(), "acme.json")
	runCLI(t, append([]string{"billing", "statement", "--meter", "tokens", "--customer", "acme", "-o", file}, base...)...)
	if out := runCLI(t, "billing", "verify", file); !strings.Contains(out, "matches") {
		t.Fatalf("verify: %s", out)
	}
	b, _ := os.ReadFile(file)
	var ce billing.CustomerExport
	if err := json.Unmarshal(b, &ce); err != nil || ce.Statement.Value != q.Data[0].Value || ce.Statement.Events != events["acme"] {
		t.Fatalf("statement %+v %v", ce.Statement, err)
	}
	for _, tc := range []struct {
		name string
		edit func(ce *billing.CustomerExport)
		want []string
	}{
		{"changed", func(ce *billing.CustomerExport) { ce.Events[3].Value++ }, []string{"an event's value changed", `event "e06" (source "cli") changed: value 8, was 7`}},
		{"added", func(ce *billing.CustomerExport) {
			ce.Events = append(ce.Events, billing.StatementEvent{Source: "cli", ID: "e99", Time: start, Value: 1})
		}, []string{"1 event(s) added", "digest", `event "e99" (source "cli") added`}},
		{"removed", func(ce *billing.CustomerExport) { ce.Events = ce.Events[1:] }, []string{"1 event(s) removed", "digest", `event "e00" (source "cli") removed`}},
		{"id replaced", func(ce *billing.CustomerExport) { ce.Events[0].ID = "x" }, []string{"an event was replaced"}},
		{"statement altered", func(ce *billing.CustomerExport) { ce.Statement.Value-- }, []string{"signature does not match"}},
	} {
		var c billing.CustomerExport
		json.Unmarshal(b, &c)
		tc.edit(&c)
		nb, _ := json.Marshal(c)
		f := filepath.Join(t.TempDir(), tc.name+".json")
		os.WriteFile(f, nb, 0o644)
		_, stderr, err := runCLIResult("billing", "verify", f, "--against", file)
		if err == nil {
			t.Errorf("%s: verify passed", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: verify says %q; want it to name %q", tc.name, stderr, w)
			}
		}
	}
}

func ioNopCloser(s string) *nopCloser { return &nopCloser{strings.NewReader(s)} }

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }
