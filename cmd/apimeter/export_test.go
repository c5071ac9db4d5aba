package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/workload"
)

// TestExportCLI: `apimeter export` beside a running serve (which holds the
// data directory) writes the events of [from, to) to a Parquet or CSV
// file; read back with DuckDB, the file has exactly the events sent in
// that range, with their users and statuses, and the tokens they carried
// only as fingerprints. A bad format or range is a 400 naming it.
func TestExportCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	data := t.TempDir()
	app := lastLine(t, "apps", "create", "--data", data, "--org", "acme")
	key := lastLine(t, "keys", "create", "--data", data, "--org", "acme", "--scope", "read")
	c := startChild(t, data)
	defer c.kill9(t)

	gen := workload.New(7, 72*time.Hour)
	gen.Start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	gen.IDs = true
	evs := gen.Batch(600)
	if _, err := demo.PostBatch(context.Background(), http.DefaultClient, c.url, app, evs); err != nil {
		t.Fatal(err)
	}
	from, to := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	want := map[string]string{} // id -> user
	for _, e := range evs {
		rt, _ := time.Parse(time.RFC3339Nano, e.Request.Time)
		if !rt.Before(from) && rt.Before(to) {
			want[e.EventID] = e.UserID
		}
	}
	if len(want) < 100 || len(want) == len(evs) {
		t.Fatalf("%d of %d events in the range: want a good part, not all", len(want), len(evs))
	}

	db := openDB(t, "")
	for _, format := range []string{"parquet", "csv"} {
		out := filepath.Join(t.TempDir(), "calls."+format)
		runCLI(t, "export", "--server", c.url, "--org", "acme", "--apimeter-key", key,
			"--from", "2026-11-02", "--to", "2026-11-03T00:00:00Z", "--format", format, "--out", out)
		read := map[string]string{"parquet": "read_parquet", "csv": "read_csv"}[format]
		rows, err := db.Query(`SELECT id, user_id, status, ts, detail FROM ` + read + `('` + out + `') ORDER BY ts, id`)
		if err != nil {
			t.Fatalf("%s: DuckDB reads %s: %v", format, out, err)
		}
		got := map[string]string{}
		var last time.Time
		for rows.Next() {
			var id, user, detail string
			var status int
			var ts time.Time
			if err := rows.Scan(&id, &user, &status, &ts, &detail); err != nil {
				t.Fatal(err)
			}
			got[id] = user
			if ts.Before(from) || !ts.Before(to) || ts.Before(last) {
				t.Errorf("%s: event %s at %s: outside [%s, %s) or out of order", format, id, ts, from, to)
			}
			last = ts
			if strings.Contains(detail, "eyJhbGci") || !strings.Contains(detail, "fp_") {
				t.Errorf("%s: event %s carries a token, not its fingerprint: %s", format, id, detail)
			}
			if status < 100 {
				t.Errorf("%s: event %s has status %d", format, id, status)
			}
		}
		rows.Close()
		if len(got) != len(want) {
			t.Errorf("%s: %d events in the file, want the %d sent in the range", format, len(got), len(want))
		}
		for id, user := range want {
			if u, ok := got[id]; !ok || u != user {
				t.Errorf("%s: event %s: in file %v with user %q, want user %q", format, id, ok, u, user)
				break
			}
		}
		if b, _ := os.ReadFile(out); format == "csv" && !strings.HasPrefix(string(b), "id,org,env,") {
			t.Errorf("csv starts %q, want a header line", string(b[:min(40, len(b))]))
		}
	}

	for _, tc := range []struct {
		query, field string
		status       int
	}{
		{"from=2026-11-02&to=2026-11-03&format=xml", "format", 400},
		{"from=yesterday&to=2026-11-03", "from", 400},
		{"from=2026-11-03&to=2026-11-02", "to", 400},
	} {
		status, _, body := call(t, "GET", c.url+"/v1/o/acme/environments/prod/export?"+tc.query, "", map[string]string{"Authorization": "Bearer " + key})
		if status != tc.status || !strings.Contains(body, `"`+tc.field) {
			t.Errorf("export?%s: %d %s; want %d naming %s", tc.query, status, body, tc.status, tc.field)
		}
	}
	if status, _, _ := call(t, "GET", c.url+"/v1/o/acme/environments/prod/export?from=2026-11-02&to=2026-11-03", "", nil); status != 401 {
		t.Errorf("export without a key: %d, want 401", status)
	}
	if code, _, errOut := runMain(t, "export", "--server", c.url, "--org", "acme", "--apimeter-key", key, "--from", "2026-11-02", "--to", "soon", "--out", filepath.Join(t.TempDir(), "x")); code == 0 || !strings.Contains(errOut, "--to soon") {
		t.Errorf("export --to soon: exit %d, %q; want a failure naming --to", code, errOut)
	}
}
