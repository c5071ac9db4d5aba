package metertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

// sdkOut is what node/sdk.mjs prints.
type sdkOut struct {
	Created []struct {
		Slug, ID, Aggregation string
	} `json:"created"`
	Listed      []string `json:"listed"`
	Got         string   `json:"got"`
	AfterDelete []string `json:"afterDelete"`
	Sent        []struct {
		Subject string    `json:"subject"`
		Time    time.Time `json:"time"`
		Data    struct {
			Tokens float64 `json:"tokens"`
			Model  string  `json:"model"`
			User   string  `json:"user"`
			Meta   struct {
				Region string `json:"region"`
			} `json:"meta"`
		} `json:"data"`
	} `json:"sent"`
	Answers []struct {
		Slug  string `json:"slug"`
		Query struct {
			From           time.Time         `json:"from"`
			To             time.Time         `json:"to"`
			WindowSize     string            `json:"windowSize"`
			WindowTimeZone string            `json:"windowTimeZone"`
			Subject        []string          `json:"subject"`
			GroupBy        []string          `json:"groupBy"`
			FilterGroupBy  map[string]string `json:"filterGroupBy"`
		} `json:"query"`
		Data []row `json:"data"`
	} `json:"answers"`
}

type row struct {
	Value       float64           `json:"value"`
	WindowStart time.Time         `json:"windowStart"`
	WindowEnd   time.Time         `json:"windowEnd"`
	Subject     *string           `json:"subject"`
	GroupBy     map[string]string `json:"groupBy"`
}

func (r row) key() string {
	var g []string
	for k, v := range r.GroupBy {
		g = append(g, k+"="+v)
	}
	sort.Strings(g)
	s := "-"
	if r.Subject != nil {
		s = *r.Subject
	}
	return fmt.Sprintf("%s..%s %s %s", r.WindowStart.UTC().Format(time.RFC3339), r.WindowEnd.UTC().Format(time.RFC3339), s, strings.Join(g, ","))
}

// TestOpenMeterSDK runs OpenMeter's own JavaScript SDK (@openmeter/sdk,
// pinned in node/package-lock.json) against apimeter on each store, and
// checks every answer against sums the test computes from the events the
// SDK sent.
func TestOpenMeterSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on the PATH; install Node.js and run `npm ci --prefix metertest/node` (.ci/run does)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "@openmeter", "sdk", "package.json")); err != nil {
		t.Skip("metertest/node/node_modules/@openmeter/sdk is absent; run `npm ci --prefix metertest/node` (.ci/run does)")
	}
	t.Run("DuckDB", func(t *testing.T) {
		dir := t.TempDir()
		st, err := duckdb.Open(context.Background(), filepath.Join(dir, "events.duckdb"), duckdb.Options{DailyInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), duckdb.UsageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		runSDK(t, node, dir, st, u, meter.DuckDB{})
	})
	t.Run("ClickHouse", func(t *testing.T) {
		dsn := chtest.Shared(t).DSN(chtest.Database(t))
		st, err := clickhouse.Open(context.Background(), dsn, clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		u, err := st.OpenUsage(context.Background(), clickhouse.UsageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		runSDK(t, node, t.TempDir(), st, u, meter.ClickHouse{})
	})
}

func runSDK(t *testing.T, node, dir string, st apimeter.Store, u meter.Store, d meter.Dialect) {
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	guard := auth.New(auth.Config{Keys: keys, IsAppID: func(id string) bool { _, ok := reg.Lookup(id); return ok }})
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1), Auth: guard})
	meter.NewHandler(meter.Config{Store: u, Dialect: d, Auth: guard, Apps: reg}).Register(srv)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	_, key, err := keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeAdmin, Name: "openmeter-sdk"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "sdk.mjs")
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), "OM_URL="+hs.URL, "OM_KEY="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node sdk.mjs: %v\n%s", err, stderr.String())
	}
	var out sdkOut
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("node sdk.mjs printed %q: %v", stdout.String(), err)
	}
	slugs := []string{"active_users", "largest_prompt", "prompts", "to_delete", "tokens_total"}
	if !slices.Equal(out.Listed, slugs) || out.Got != "tokens_total" || !slices.Equal(out.AfterDelete, slices.DeleteFunc(slices.Clone(slugs), func(s string) bool { return s == "to_delete" })) {
		t.Errorf("meters listed %v, got %q, after delete %v", out.Listed, out.Got, out.AfterDelete)
	}
	// Every event sent is stored once: the resent batch is not.
	var stored int
	if err := u.DB().QueryRow("SELECT count(*) FROM usage_events WHERE org = 'acme'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(out.Sent) || stored != 620 {
		t.Errorf("%d usage events stored; the SDK sent %d distinct (620 expected)", stored, len(out.Sent))
	}
	compared := 0
	defer func() {
		t.Logf("%d events sent, %d answers of %d rows, each equal to the test's sums", len(out.Sent), len(out.Answers), compared)
	}()
	if len(out.Answers) != 9 {
		t.Fatalf("%d answers, want 9", len(out.Answers))
	}
	for _, a := range out.Answers {
		q := a.Query
		loc := time.UTC
		if q.WindowTimeZone != "" {
			if loc, err = time.LoadLocation(q.WindowTimeZone); err != nil {
				t.Fatal(err)
			}
		}
		bySubject := len(q.Subject) > 0 || slices.Contains(q.GroupBy, "subject")
		type acc struct {
			r    row
			sum  float64
			n    float64
			max  float64
			uniq map[string]bool
		}
		want := map[string]*acc{}
		for _, e := range out.Sent {
			if e.Time.Before(q.From) || !e.Time.Before(q.To) {
				continue
			}
			if len(q.Subject) > 0 && !slices.Contains(q.Subject, e.Subject) {
				continue
			}
			if v, ok := q.FilterGroupBy["model"]; ok && e.Data.Model != v {
				continue
			}
			r := row{WindowStart: q.From, WindowEnd: q.To, GroupBy: map[string]string{}}
			if q.WindowSize != "" {
				r.WindowStart, r.WindowEnd = window(e.Time, q.WindowSize, loc)
			}
			if bySubject {
				s := e.Subject
				r.Subject = &s
			}
			for _, g := range q.GroupBy {
				switch g {
				case "model":
					r.GroupBy[g] = e.Data.Model
				case "region":
					r.GroupBy[g] = e.Data.Meta.Region
				}
			}
			k := r.key()
			if want[k] == nil {
				want[k] = &acc{r: r, uniq: map[string]bool{}}
			}
			w := want[k]
			w.sum += e.Data.Tokens
			w.n++
			w.max = max(w.max, e.Data.Tokens)
			w.uniq[e.Data.User] = true
		}
		what := fmt.Sprintf("%s %+v", a.Slug, q)
		if len(want) == 0 {
			t.Fatalf("%s: the test expects no rows; it checks nothing", what)
		}
		if len(a.Data) != len(want) {
			t.Errorf("%s: %d rows, want %d", what, len(a.Data), len(want))
		}
		for _, r := range a.Data {
			w, ok := want[r.key()]
			if !ok {
				t.Errorf("%s: unexpected row %s", what, r.key())
				continue
			}
			var v float64
			switch a.Slug {
			case "tokens_total":
				v = w.sum
			case "prompts":
				v = w.n
			case "active_users":
				v = float64(len(w.uniq))
			case "largest_prompt":
				v = w.max
			}
			compared++
			if r.Value != v {
				t.Errorf("%s: row %s: %v, want %v", what, r.key(), r.Value, v)
			}
		}
	}
}

// window is the window of t: a local day, or a real hour or minute.
func window(t time.Time, size string, loc *time.Location) (time.Time, time.Time) {
	l := t.In(loc)
	switch size {
	case "DAY":
		y, m, d := l.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case "HOUR":
		s := t.Add(-time.Duration(l.Minute())*time.Minute - time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond()))
		return s, s.Add(time.Hour)
	}
	s := t.Add(-time.Duration(l.Second())*time.Second - time.Duration(l.Nanosecond()))
	return s, s.Add(time.Minute)
}
