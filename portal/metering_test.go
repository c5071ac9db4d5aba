package portal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/billing"
	"github.com/apimeter/apimeter/meter"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

// meterStore is an event store with its usage tables, on either engine.
type meterStore struct {
	events  apimeter.Store
	db      stats.Queryer
	dialect stats.Dialect
	usage   meter.Store
	md      meter.Dialect
}

func meterEngines(t *testing.T, f func(t *testing.T, s meterStore)) {
	ctx := context.Background()
	t.Run("duckdb", func(t *testing.T) {
		st, err := duckdb.Open(ctx, filepath.Join(t.TempDir(), "m.duckdb"), duckdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		u, err := st.OpenUsage(ctx, duckdb.UsageOptions{})
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close(); st.Close() })
		f(t, meterStore{st, st.DB(), stats.DuckDB{}, u, meter.DuckDB{}})
	})
	t.Run("clickhouse", func(t *testing.T) {
		st, err := clickhouse.Open(ctx, chtest.Shared(t).DSN(chtest.Database(t)), clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		u, err := st.OpenUsage(ctx, clickhouse.UsageOptions{})
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close(); st.Close() })
		f(t, meterStore{st, st.DB(), stats.ClickHouse{}, u, meter.ClickHouse{}})
	})
}

// TestCustomerMeters: a token of customer A sees, for each meter it may
// see, the value meter.Query answers for subject A (never B's, whatever
// the request says), and A's signed statements, which verify.
func TestCustomerMeters(t *testing.T) {
	meterEngines(t, func(t *testing.T, s meterStore) {
		ctx := context.Background()
		now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
		nov := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
		for _, m := range []meter.Meter{
			{Slug: "tokens", EventType: "tokens", Aggregation: meter.Sum, ValueProperty: "$.tokens"},
			{Slug: "requests", EventType: "request", Aggregation: meter.Count},
			{Slug: "calls", EventType: meter.CallType, Aggregation: meter.Count},
		} {
			m.Org, m.Env, m.ID = "acme", "prod", m.Slug
			if err := s.usage.PutMeter(ctx, m); err != nil {
				t.Fatal(err)
			}
			m.Org = "other" // the same meter in another org, with B's events there
			if err := s.usage.PutMeter(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		// Usage events: A (c1) and B (c2) with different counts and
		// values, some in October; the same subjects in another org.
		var evs []meter.Event
		for _, x := range []struct {
			org, subject string
			n            int
		}{{"acme", "c1", 30}, {"acme", "c2", 17}, {"acme", "u1", 5}, {"other", "c1", 9}} {
			for i := 0; i < x.n; i++ {
				ts := nov.Add(time.Duration(i*613) * time.Minute)
				if i%7 == 3 {
					ts = nov.Add(-time.Duration(i+1) * time.Hour)
				}
				for _, ev := range []map[string]any{
					{"type": "tokens", "data": map[string]any{"tokens": float64(i%13) + 0.25}},
					{"type": "request", "data": map[string]any{}},
				} {
					ev["specversion"], ev["source"], ev["subject"] = "1.0", "test", x.subject
					ev["id"] = fmt.Sprintf("%s-%s-%s-%d", x.org, ev["type"], x.subject, i)
					ev["time"] = ts.Format(time.RFC3339Nano)
					b, _ := json.Marshal(ev)
					got, err := meter.Decode(meter.ContentTypeEvent, b, x.org, "prod", now, meter.Limits{})
					if err != nil {
						t.Fatal(err)
					}
					evs = append(evs, got...)
				}
			}
		}
		if _, err := s.usage.AppendUsage(ctx, evs); err != nil {
			t.Fatal(err)
		}
		// API calls: u1 and u2 of company c1, u3 of c2, u4 of none.
		var calls []apimeter.Event
		who := [][2]string{{"u1", "c1"}, {"u2", "c1"}, {"u3", "c2"}, {"u4", ""}, {"u1", "c1"}}
		for i := 0; i < 40; i++ {
			w := who[i%len(who)]
			ts := nov.Add(time.Duration(i*97) * time.Minute)
			calls = append(calls, apimeter.Event{ID: fmt.Sprintf("call%d", i), Org: "acme", Env: "prod", Direction: apimeter.Incoming,
				APIName: "pay", Method: "GET", Route: "/x", Path: "/x", URI: "https://api.example.com/x",
				RequestTime: ts, ResponseTime: ts.Add(time.Millisecond), Status: 200, LatencyMs: 1, UserID: w[0], CompanyID: w[1], Weight: 1})
		}
		if _, err := s.events.Append(ctx, calls); err != nil {
			t.Fatal(err)
		}

		toks, err := token.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		secret := []byte("0123456789abcdef0123456789abcdef-test-secret")
		b := billing.New(billing.Config{Usage: s.usage, Dialect: s.md, Profiles: s.events, Secret: secret})
		mt := &portal.Metering{Usage: s.usage, Dialect: s.md, Biller: b, Now: func() time.Time { return now }}
		srv := server.New(server.Config{Store: s.events})
		portal.New(portal.Config{Tokens: toks, DB: s.db, Dialect: s.dialect, Events: s.events, RatePerMinute: -1,
			Meters: mt, Statements: mt, Now: func() time.Time { return now }}).Register(srv)
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		get := func(path, tok string, out any) int {
			t.Helper()
			req, _ := http.NewRequest("GET", hs.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusOK && out != nil {
				if err := json.Unmarshal(body, out); err != nil {
					t.Fatalf("%s: %v\n%s", path, err, body)
				}
			} else if resp.StatusCode >= 500 {
				t.Errorf("%s: %d %s", path, resp.StatusCode, body)
			}
			return resp.StatusCode
		}
		mint := func(c token.Customer, meters ...string) string {
			_, sec, err := toks.Create(ctx, token.Spec{Org: "acme", Env: "prod", Customer: c, Meters: meters})
			if err != nil {
				t.Fatal(err)
			}
			return sec
		}
		// want is meter.Query's value for subject over November.
		want := func(slug, subject string) float64 {
			ms, err := s.usage.Meters(ctx, "acme", "prod")
			if err != nil {
				t.Fatal(err)
			}
			for i := range ms {
				if ms[i].Slug != slug {
					continue
				}
				res, err := meter.Query(ctx, s.usage.DB(), s.md, &ms[i], meter.Params{From: nov, To: nov.AddDate(0, 1, 0), TimeZone: time.UTC, Subjects: []string{subject}})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Data) == 0 {
					return 0
				}
				return res.Data[0].Value
			}
			t.Fatalf("no meter %s", slug)
			return 0
		}
		a := token.Customer{Kind: token.KindCompany, ID: "c1"}
		cases := []struct {
			c       token.Customer
			limit   []string
			slugs   []string
			nonZero []string
		}{
			{a, nil, []string{"calls", "requests", "tokens"}, []string{"calls", "requests", "tokens"}},
			{token.Customer{Kind: token.KindCompany, ID: "c2"}, nil, []string{"calls", "requests", "tokens"}, []string{"calls", "requests", "tokens"}},
			{a, []string{"tokens", "gone"}, []string{"tokens"}, []string{"tokens"}},
			// u1's calls are its company's: none on calls for the user.
			{token.Customer{Kind: token.KindUser, ID: "u1"}, nil, []string{"calls", "requests", "tokens"}, []string{"requests", "tokens"}},
			{token.Customer{Kind: token.KindUser, ID: "u4"}, nil, []string{"calls", "requests", "tokens"}, []string{"calls"}},
		}
		for _, tc := range cases {
			tok := mint(tc.c, tc.limit...)
			name := tc.c.Kind + " " + tc.c.ID
			var first portal.MetersJSON
			// No parameter reaches the subject: these answer the same.
			for i, q := range []string{"?period=2026-11", "?period=2026-11&subject=c2&subject=u4", "?period=2026-11&customer=c2&company_id=c2&user_id=u4"} {
				var got portal.MetersJSON
				if code := get("/portal/api/v1/meters"+q, tok, &got); code != http.StatusOK {
					t.Fatalf("%s meters%s: %d", name, q, code)
				}
				if got.Subject != tc.c.ID || !got.From.Equal(nov) || !got.To.Equal(nov.AddDate(0, 1, 0)) || len(got.Meters) != len(tc.slugs) {
					t.Fatalf("%s meters%s: %+v", name, q, got)
				}
				for j, m := range got.Meters {
					if m.Slug != tc.slugs[j] {
						t.Errorf("%s: meter %d is %s, want %s", name, j, m.Slug, tc.slugs[j])
					}
					if w := want(m.Slug, tc.c.ID); m.Value != w {
						t.Errorf("%s %s: %v, want meter query's %v", name, m.Slug, m.Value, w)
					}
					nz := false
					for _, s := range tc.nonZero {
						nz = nz || s == m.Slug
					}
					if nz != (m.Value != 0) {
						t.Errorf("%s %s: %v, want it zero: %v", name, m.Slug, m.Value, !nz)
					}
				}
				if i == 0 {
					first = got
				} else if fmt.Sprint(got) != fmt.Sprint(first) {
					t.Errorf("%s: %s changed the answer: %+v, want %+v", name, q, got, first)
				}
			}
			// A's values are not B's: the fixture gives them different ones.
			if tc.c == a && tc.limit == nil {
				for _, m := range first.Meters {
					if m.Value == want(m.Slug, "c2") {
						t.Errorf("A's %s is B's value %v", m.Slug, m.Value)
					}
				}
			}

			// Statements: one per meter, signed, for this customer, of
			// the meters' value.
			pub, err := b.PublicKey("acme")
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"?period=2026-11", "", "?period=current&subject=c2"} {
				var st portal.StatementsJSON
				if code := get("/portal/api/v1/statements"+q, tok, &st); code != http.StatusOK {
					t.Fatalf("%s statements%s: %d", name, q, code)
				}
				if st.Period != "2026-11" || st.Subject != tc.c.ID || st.PublicKey != pub || len(st.Statements) != len(tc.slugs) {
					t.Fatalf("%s statements%s: period %s subject %s, %d statements", name, q, st.Period, st.Subject, len(st.Statements))
				}
				for j, ce := range st.Statements {
					// What a partner does: apimeter billing verify, on the
					// export as written to a file.
					raw, _ := json.Marshal(ce)
					back, err := billing.ReadCustomerExport(raw)
					if err != nil {
						t.Fatal(err)
					}
					if diffs := billing.Verify(back, pub); len(diffs) > 0 {
						t.Errorf("%s %s: verify: %v", name, ce.Statement.Meter, diffs)
					}
					s := ce.Statement
					if s.Customer != tc.c.ID || s.Org != "acme" || s.Env != "prod" || s.Meter != tc.slugs[j] || s.Value != first.Meters[j].Value {
						t.Errorf("%s statement %+v, want customer %s meter %s value %v", name, s, tc.c.ID, tc.slugs[j], first.Meters[j].Value)
					}
				}
			}
			// The first view carries the same meters and statements.
			var st portal.StatementsJSON
			if code := get("/portal/api/v1/statements", tok, &st); code != http.StatusOK {
				t.Fatalf("%s statements: %d", name, code)
			}
			var v struct {
				Meters     portal.MetersJSON     `json:"meters"`
				Statements portal.StatementsJSON `json:"statements"`
			}
			if code := get("/portal/api/v1/view?period=2026-11", tok, &v); code != http.StatusOK {
				t.Fatalf("%s view: %d", name, code)
			}
			if fmt.Sprint(v.Meters) != fmt.Sprint(first) || fmt.Sprint(v.Statements) != fmt.Sprint(st) {
				t.Errorf("%s view: meters %+v statements %s, the routes' %+v %s", name, v.Meters, v.Statements.Period, first, st.Period)
			}
		}
		// Previous month and bad periods.
		tok := mint(a)
		var oct portal.StatementsJSON
		if code := get("/portal/api/v1/statements?period=previous", tok, &oct); code != http.StatusOK || oct.Period != "2026-10" {
			t.Errorf("previous: %d %s", code, oct.Period)
		}
		for _, q := range []string{"?period=2026-13", "?period=last", "?period=2026-11-01"} {
			if code := get("/portal/api/v1/statements"+q, tok, nil); code != http.StatusBadRequest {
				t.Errorf("statements%s: %d, want 400", q, code)
			}
		}
		if code := get("/portal/api/v1/meters?period=nope", tok, nil); code != http.StatusBadRequest {
			t.Errorf("meters?period=nope: %d, want 400", code)
		}
		// Without a secret there are no statements.
		srv2 := server.New(server.Config{Store: s.events})
		nb := &portal.Metering{Usage: s.usage, Dialect: s.md, Biller: billing.New(billing.Config{Usage: s.usage, Dialect: s.md})}
		portal.New(portal.Config{Tokens: toks, DB: s.db, Dialect: s.dialect, Events: s.events, RatePerMinute: -1, Meters: nb, Statements: nb}).Register(srv2)
		hs2 := httptest.NewServer(srv2)
		t.Cleanup(hs2.Close)
		req, _ := http.NewRequest("GET", hs2.URL+"/portal/api/v1/statements", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("statements without a secret: %d, want 404", resp.StatusCode)
		}
	})
}
