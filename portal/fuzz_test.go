package portal_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
)

// fuzzRig is one DuckDB store with the fixture and a token of company c1,
// shared by every input of a fuzzing process.
type fuzzRig struct {
	st     *duckdb.Store
	h      http.Handler
	secret string
	total  int64
	users  map[string]bool
}

var (
	fuzzOnce sync.Once
	fuzzR    *fuzzRig
	fuzzErr  error
	fuzzDir  string
)

func newFuzzRig(dir string) (*fuzzRig, error) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	events := fixture(now, identity.Periods{})
	if _, err := st.Append(ctx, events); err != nil {
		return nil, err
	}
	toks, err := token.Open(dir)
	if err != nil {
		return nil, err
	}
	c := token.Customer{Kind: token.KindCompany, ID: "c1"}
	_, secret, err := toks.Create(ctx, token.Spec{Org: "acme", Env: "prod", Customer: c, TTL: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	srv := server.New(server.Config{Store: st})
	portal.New(portal.Config{Tokens: toks, DB: st.DB(), Dialect: stats.DuckDB{}, Events: st, RatePerMinute: -1}).Register(srv)
	r := &fuzzRig{st: st, h: srv, secret: secret, users: map[string]bool{}}
	for i := range events {
		e := &events[i]
		if e.Org == "acme" && e.Env == "prod" && e.CompanyID == "c1" {
			r.total += e.Weight
			r.users[e.UserID] = true
		}
	}
	return r, nil
}

// FuzzPortalStats sends the portal's Metrics API any dimensions and query
// string with a company token: no answer is a 5xx, and no answer counts
// more calls than the company made or names a user of another company.
func FuzzPortalStats(f *testing.F) {
	for _, s := range []struct{ dims, q string }{
		{"user_id", "select=sum(message_count)&filter=user_id eq 'u3' or user_id ne 'x'"},
		{"developer,apps", "select=sum(message_count),p95(total_response_time)&topk=1&offset=1"},
		{"", "select=sum(message_count)&timeUnit=day&filter=(company_id eq 'c2') or (company_id ne 'c2')"},
		{"company_id", "select=sum(message_count)&org=other"},
		{"route", "select=sum(message_count)&sortby=sum(message_count)&sort=ASC&limit=1&offset=3"},
	} {
		f.Add(s.dims, s.q)
	}
	fuzzDir = f.TempDir()
	f.Cleanup(func() {
		if fuzzR != nil {
			fuzzR.st.Close()
		}
	})
	f.Fuzz(func(t *testing.T, dims, rawQuery string) {
		fuzzOnce.Do(func() { fuzzR, fuzzErr = newFuzzRig(fuzzDir) })
		if fuzzErr != nil {
			t.Fatal(fuzzErr)
		}
		q, err := url.ParseQuery(rawQuery)
		if err != nil || strings.ContainsAny(dims, "/?#%") {
			return
		}
		cur := identity.Periods{}.Of(time.Now())
		if q.Get("timeRange") == "" {
			q.Set("timeRange", cur.Start.AddDate(0, -1, 0).Format("01/02/2006 15:04")+"~"+cur.End.Format("01/02/2006 15:04"))
		}
		path := "/portal/api/v1/stats"
		if dims != "" {
			path += "/" + url.PathEscape(dims)
		}
		req := httptest.NewRequest("GET", path+"?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+fuzzR.secret)
		rec := httptest.NewRecorder()
		fuzzR.h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s?%s: %d %s", path, q.Encode(), rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			return
		}
		var r stats.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		for _, en := range r.Environments {
			if en.Dimensions == nil {
				continue
			}
			for _, g := range *en.Dimensions {
				for _, m := range g.Metrics {
					if m.Name != "sum(message_count)" || q.Get("timeUnit") != "" {
						continue
					}
					n, _ := strconv.ParseFloat(m.Values[0].(string), 64)
					if int64(n) > fuzzR.total {
						t.Fatalf("%s?%s: group %q has %v calls, the company made %d", path, q.Encode(), g.Name, n, fuzzR.total)
					}
				}
				for i, d := range strings.Split(dims, ",") {
					parts := strings.Split(g.Name, ",")
					switch strings.TrimSpace(d) {
					case "user_id", "developer", "developer_email":
						if i < len(parts) && !fuzzR.users[parts[i]] {
							t.Fatalf("%s?%s: group %q names a user not of the company", path, q.Encode(), g.Name)
						}
					case "company_id", "apps", "developer_app":
						if i < len(parts) && parts[i] != "c1" {
							t.Fatalf("%s?%s: group %q names another company", path, q.Encode(), g.Name)
						}
					}
				}
			}
		}
	})
}
