package authtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
	"github.com/apimeter/apimeter/workload"
)

// seen is one request apimeter answered.
type seen struct {
	Method, Path, Query, Scheme string
	Status                      int
}

type recorder struct {
	mu   sync.Mutex
	hits []seen
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		h.ServeHTTP(sw, r)
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		rec.mu.Lock()
		rec.hits = append(rec.hits, seen{r.Method, r.URL.Path, r.URL.RawQuery, scheme, sw.status})
		rec.mu.Unlock()
	})
}

func (rec *recorder) take() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.hits
	rec.hits = nil
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// TestApigeeEdgeJS: apigee-edge-js's stats.get reads sum(message_count) per
// API through apimeter with a key as its token, and as the password of
// Basic credentials (where it first reads the org); a wrong key fails it.
func TestApigeeEdgeJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on the PATH; install Node.js and run `npm ci --prefix authtest/node` (.ci/run does)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "apigee-edge-js", "package.json")); err != nil {
		t.Skip("authtest/node/node_modules/apigee-edge-js is absent; run `npm ci --prefix authtest/node` (.ci/run does)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := apps.Create(dir, "acme", "prod"); err != nil {
		t.Fatal(err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	envs := func(org string) []string {
		var out []string
		for _, a := range reg.List() {
			if a.Org == org {
				out = append(out, a.Env)
			}
		}
		return out
	}
	guard := auth.New(auth.Config{Keys: keys, Envs: envs, IsAppID: func(id string) bool { _, ok := reg.Lookup(id); return ok }})
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1), Auth: guard})
	guard.Register(srv)
	stats.NewHandler(stats.Config{DB: st.DB(), Dialect: stats.DuckDB{}, QuotaPerMinute: -1, Envs: envs}).Register(srv)
	rec := &recorder{}
	hs := httptest.NewServer(rec.wrap(srv))
	defer hs.Close()

	gen := workload.New(7, 48*time.Hour)
	gen.Start = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	gen.IDs = true
	events := make([]apimeter.Event, 0, 300)
	for i, m := range gen.Batch(300) {
		ev, err := m.ToEvent("acme", "prod", i)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if _, err := srv.Ingest(ctx, events); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	rows, err := st.DB().Query(`SELECT api_name, sum(weight)::BIGINT FROM events WHERE org = 'acme' GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var api string
		var n int64
		rows.Scan(&api, &n)
		want[api] = n
	}
	rows.Close()

	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeRead, Name: "apigee-edge-js"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(mode, key string) (string, error) {
		cmd := exec.Command(node, "stats.js")
		cmd.Dir = "node"
		cmd.Env = append(os.Environ(), "TZ=UTC", "AUTH_MODE="+mode, "APIMETER_URL="+hs.URL, "APIMETER_ORG=acme", "APIMETER_ENV=prod",
			"APIMETER_KEY="+key, "START=2026-03-01T00:00:00Z", "END=2026-03-04T00:00:00Z")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := cmd.Start(); err != nil {
			return "", err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			err = <-done
		}
		if err != nil {
			return out.String(), fmt.Errorf("%v: %s", err, errb.String())
		}
		return out.String(), nil
	}

	for _, mode := range []string{"token", "basic"} {
		t.Run(mode, func(t *testing.T) {
			rec.take()
			out, err := run(mode, key)
			if err != nil {
				t.Fatalf("stats.get: %v", err)
			}
			got := sums(t, out)
			if fmt.Sprint(got) != fmt.Sprint(want) || len(want) < 2 {
				t.Errorf("sum(message_count) per API through apigee-edge-js = %v, want %v", got, want)
			}
			hits := rec.take()
			wantScheme := map[string]string{"token": "Bearer", "basic": "Basic"}[mode]
			var statsHit, orgHit bool
			for _, h := range hits {
				if h.Scheme != wantScheme || h.Status != 200 {
					t.Errorf("%s %s?%s: Authorization %q, status %d", h.Method, h.Path, h.Query, h.Scheme, h.Status)
				}
				switch {
				case h.Path == "/v1/organizations/acme/environments/prod/stats/apis":
					statsHit = strings.Contains(h.Query, "_optimize=js")
				case strings.TrimSuffix(h.Path, "/") == "/v1/organizations/acme":
					orgHit = true
				}
			}
			if !statsHit || (mode == "basic") != orgHit {
				t.Errorf("requests %+v: want the stats path with _optimize, and the org read only with Basic", hits)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		for _, mode := range []string{"token", "basic"} {
			if _, err := run(mode, auth.NewKey()); err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("%s with an unknown key: %v, want a 401 failure", mode, err)
			}
		}
	})
}

// sums reads Apigee's answer: sum(message_count) of each API over all days.
func sums(t *testing.T, out string) map[string]int64 {
	t.Helper()
	var res struct {
		Environments []struct {
			Name       string `json:"name"`
			Dimensions []struct {
				Name    string `json:"name"`
				Metrics []struct {
					Name   string `json:"name"`
					Values []struct {
						Timestamp int64  `json:"timestamp"`
						Value     string `json:"value"`
					} `json:"values"`
				} `json:"metrics"`
			} `json:"dimensions"`
		} `json:"environments"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Environments) != 1 || res.Environments[0].Name != "prod" {
		t.Fatalf("answer %s: %v", out, err)
	}
	got := map[string]int64{}
	for _, d := range res.Environments[0].Dimensions {
		for _, m := range d.Metrics {
			if m.Name != "sum(message_count)" {
				t.Fatalf("metric %q", m.Name)
			}
			for _, v := range m.Values {
				f, err := strconv.ParseFloat(v.Value, 64)
				if err != nil {
					t.Fatalf("value %q", v.Value)
				}
				got[d.Name] += int64(f)
			}
		}
	}
	return got
}
