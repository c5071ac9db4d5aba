package identity_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/duckdb"
)

// backend opens the alias table and counters of one engine over a store.
type backend struct {
	name string
	// setup runs once per test; it returns the opener used at every
	// (re)start and a scan for raw secrets in the engine's state.
	setup func(t *testing.T) (open func(t *testing.T, st *duckdb.Store) (identity.Aliases, identity.Counters), scan func(t *testing.T, secrets, present []string))
}

var periods = identity.Periods{}

func backends() []backend {
	return []backend{
		{name: "embedded", setup: func(t *testing.T) (func(*testing.T, *duckdb.Store) (identity.Aliases, identity.Counters), func(*testing.T, []string, []string)) {
			return func(t *testing.T, st *duckdb.Store) (identity.Aliases, identity.Counters) {
				e, err := identity.OpenEmbedded(context.Background(), st.DB(), identity.EmbeddedOptions{Periods: periods})
				if err != nil {
					t.Fatal(err)
				}
				return e, e
			}, nil
		}},
		{name: "redis", setup: func(t *testing.T) (func(*testing.T, *duckdb.Store) (identity.Aliases, identity.Counters), func(*testing.T, []string, []string)) {
			c := startRedis(t)
			return func(t *testing.T, st *duckdb.Store) (identity.Aliases, identity.Counters) {
					// A new client per start, as a restarted collector has.
					rc := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
					t.Cleanup(func() { rc.Close() })
					r := identity.NewRedis(rc, identity.RedisOptions{Prefix: "test:"})
					return r, r
				}, func(t *testing.T, secrets, present []string) {
					scanRedis(t, c, secrets, present)
				}
		}},
	}
}

// rig is one running collector: DuckDB store, identity, HTTP server.
type rig struct {
	t     *testing.T
	st    *duckdb.Store
	hs    *httptest.Server
	meter *identity.Meter
	app   string
	key   string // admin key of org acme
}

var jwtSecret = []byte("my_super_secret_for_tests_only_0123456789")

func startRig(t *testing.T, dir, app string, open func(*testing.T, *duckdb.Store) (identity.Aliases, identity.Counters)) *rig {
	t.Helper()
	ctx := context.Background()
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	al, ctr := open(t, st)
	meter := &identity.Meter{Counters: ctr, Periods: periods}
	var rules []identity.CompanyRule
	for _, s := range []string{"claim:tenant_id", "url:/accounts/{id}"} {
		r, err := identity.ParseCompanyRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	res := identity.NewResolver(identity.Config{
		Aliases: al,
		JWT:     identity.NewJWT(identity.JWTOptions{HMACSecrets: [][]byte{jwtSecret}}),
		Company: rules,
	})
	_, key, err := auth.Create(dir, auth.Spec{Org: "acme", Scope: auth.ScopeAdmin})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1),
		Identifier: res, Sinks: []apimeter.Sink{meter}, Auth: auth.New(auth.Config{Keys: keys})})
	(&identity.API{Aliases: al, Meter: meter}).Register(srv)
	stats.NewHandler(stats.Config{DB: st.DB(), Dialect: stats.DuckDB{}, QuotaPerMinute: -1}).Register(srv)
	hs := httptest.NewServer(srv)
	return &rig{t: t, st: st, hs: hs, meter: meter, app: app, key: key}
}

func (r *rig) close() {
	r.hs.Close()
	if err := r.st.Close(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) do(method, path string, body any, out any) int {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.hs.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(server.AppIDHeader, r.app)
	req.Header.Set("Authorization", "Bearer "+r.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	if resp.StatusCode >= 300 && out == nil {
		r.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

type ingestResult struct {
	Stored     int `json:"stored"`
	Duplicates int `json:"duplicates"`
}

func (r *rig) post(batch []map[string]any) ingestResult {
	r.t.Helper()
	var res ingestResult
	if code := r.do("POST", "/v1/events/batch", batch, &res); code != 200 {
		r.t.Fatalf("post batch: status %d", code)
	}
	return res
}

// call builds one collector event.
func call(id, at, uri string, headers map[string]string, status int, weight int64) map[string]any {
	t, _ := time.Parse(time.RFC3339Nano, at)
	h := map[string]string{"Content-Length": "100"}
	for k, v := range headers {
		h[k] = v
	}
	return map[string]any{
		"event_id": id,
		"request":  map[string]any{"time": at, "uri": uri, "verb": "GET", "headers": h},
		"response": map[string]any{"time": t.Add(42 * time.Millisecond).Format(time.RFC3339Nano), "status": status,
			"headers": map[string]string{"Content-Length": "250"}, "body": map[string]bool{"ok": true}},
		"weight": weight,
	}
}

func token(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeUsage is usage computed by SQL from the events table: the source of
// truth the counters must agree with.
func storeUsage(t *testing.T, db *sql.DB, org, env string, p identity.Period, dim identity.Dimension) map[string]identity.Counts {
	t.Helper()
	rows, err := db.Query(fmt.Sprintf(`SELECT %s, CAST(sum(weight) AS BIGINT),
  CAST(sum(CASE WHEN status >= 400 OR status = 0 THEN weight ELSE 0 END) AS BIGINT),
  CAST(sum(weight * (coalesce(req_size, 0) + coalesce(resp_size, 0))) AS BIGINT)
FROM events WHERE org = ? AND env = ? AND ts >= ? AND ts < ? GROUP BY 1`, dim), org, env, p.Start.UTC(), p.End.UTC())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]identity.Counts{}
	for rows.Next() {
		var id string
		var c identity.Counts
		if err := rows.Scan(&id, &c.Calls, &c.Errors, &c.Bytes); err != nil {
			t.Fatal(err)
		}
		out[id] = c
	}
	return out
}

// agree checks, over HTTP, that /v1/usage equals the store for every
// dimension of every period named.
func (r *rig) agree(stage string, labels ...string) {
	r.t.Helper()
	for _, label := range labels {
		p, _ := periods.Parse(label, time.Now())
		for _, dim := range identity.Dimensions() {
			var rep identity.Report
			if code := r.do("GET", "/v1/usage?org=acme&env=prod&period="+label+"&group="+string(dim), nil, &rep); code != 200 {
				r.t.Fatalf("%s: usage status %d", stage, code)
			}
			got := map[string]identity.Counts{}
			for _, row := range rep.Rows {
				got[row.ID] = row.Counts
			}
			want := storeUsage(r.t, r.st.DB(), "acme", "prod", p, dim)
			if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(want)) {
				r.t.Errorf("%s: period %s by %s:\n counters %v\n store    %v", stage, label, dim, sorted(got), sorted(want))
			}
			// The Metrics API's sum(message_count) per group must equal
			// the counters' calls.
			calls := map[string]int64{}
			for id, c := range got {
				calls[id] = c.Calls
			}
			if mc := r.metricsCalls(p, dim); fmt.Sprint(mc) != fmt.Sprint(calls) {
				r.t.Errorf("%s: period %s by %s: Metrics API sum(message_count) %v, counters %v", stage, label, dim, mc, calls)
			}
		}
	}
}

// metricsCalls asks the Metrics API for sum(message_count) per group of
// dim over the period.
func (r *rig) metricsCalls(p identity.Period, dim identity.Dimension) map[string]int64 {
	r.t.Helper()
	tr := p.Start.UTC().Format("01/02/2006 15:04") + "~" + p.End.UTC().Format("01/02/2006 15:04")
	var res struct {
		Environments []struct {
			Dimensions []struct {
				Name    string `json:"name"`
				Metrics []struct {
					Values []string `json:"values"`
				} `json:"metrics"`
			} `json:"dimensions"`
		} `json:"environments"`
	}
	name := string(dim)
	if dim == identity.ByAPIKey {
		name = "api_key" // the Metrics API's name for api_key_id
	}
	path := "/v1/o/acme/environments/prod/stats/" + name + "?select=sum(message_count)&timeRange=" + url.QueryEscape(tr)
	if code := r.do("GET", path, nil, &res); code != 200 {
		r.t.Fatalf("Metrics API %s: status %d", path, code)
	}
	out := map[string]int64{}
	for _, env := range res.Environments {
		for _, d := range env.Dimensions {
			f, err := strconv.ParseFloat(d.Metrics[0].Values[0], 64)
			if err != nil {
				r.t.Fatalf("Metrics API value %q: %v", d.Metrics[0].Values[0], err)
			}
			out[d.Name] = int64(f)
		}
	}
	return out
}

func sorted(m map[string]identity.Counts) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%q:%d/%d/%d", k, v.Calls, v.Errors, v.Bytes))
	}
	sort.Strings(out)
	return out
}

func (r *rig) usersByID() map[string]string {
	rows, err := r.st.DB().Query(`SELECT id, user_id, company_id, api_key_id FROM events WHERE org = 'acme'`)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, user, company, key string
		rows.Scan(&id, &user, &company, &key)
		out[id] = user + "|" + company
	}
	return out
}

func (r *rig) userCalls(label, user string) int64 {
	var rep identity.Report
	r.do("GET", "/v1/usage?org=acme&period="+label+"&group=user_id", nil, &rep)
	for _, row := range rep.Rows {
		if row.ID == user {
			return row.Calls
		}
	}
	return 0
}

// TestUsageSuite runs the same scenario on every backend: one customer with
// three API keys (one expired) and a JWT, across a month boundary, replays,
// an overlapping batch and a restart; counters must always equal what the
// events table holds, and no raw key may be stored anywhere.
func TestUsageSuite(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) { runSuite(t, be) })
	}
}

func runSuite(t *testing.T, be backend) {
	open, scan := be.setup(t)
	dir := t.TempDir()
	a, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	k1 := "ak_live_first_7d1f0c2e9b"
	k2 := "ak_live_second_51aa03f7"
	k3 := "tok_short_lived_c0ffee42"
	jwtUser := token(t, jwtSecret, jwt.MapClaims{"sub": "cust-513", "tenant_id": "acme-co", "iat": 1516239022})
	jwtOther := token(t, jwtSecret, jwt.MapClaims{"sub": "other-7"})
	forged := token(t, []byte("not-the-secret"), jwt.MapClaims{"sub": "cust-513"})
	secrets := []string{k1, k2, k3, jwtUser, jwtOther, forged, "unknown_key_zz9"}

	r := startRig(t, dir, a.ID, open)
	expiry := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	for _, al := range []map[string]any{
		{"org": "acme", "key": k1, "user_id": "cust-513", "company_id": "acme-co"},
		{"org": "acme", "key": k2, "user_id": "cust-513"},
		{"org": "acme", "env": "prod", "key": k3, "user_id": "cust-513", "company_id": "acme-co", "expires_at": expiry},
	} {
		var out identity.AliasJSON
		if code := r.do("PUT", "/v1/aliases", al, &out); code != 200 || out.Key != "" || out.KeyHash != scrub.KeyHash(al["key"].(string)) {
			t.Fatalf("put alias: status %d, answer %+v", code, out)
		}
	}

	base := "https://api.acme.example"
	batchA := []map[string]any{
		call("a1", "2026-10-31T23:59:59.500Z", base+"/items", map[string]string{"X-Api-Key": k1}, 200, 1),
		call("a2", "2026-11-01T00:00:00.000Z", base+"/accounts/acme-co/items?api_key="+k2, nil, 500, 10),
		call("a3", "2026-11-05T10:00:00.000Z", base+"/items", map[string]string{"Authorization": "Bearer " + k3}, 200, 1),
		call("a4", "2026-11-12T10:00:00.000Z", base+"/items", map[string]string{"Authorization": "Bearer " + k3}, 200, 1),
		call("a5", "2026-11-02T08:00:00.000Z", base+"/items", map[string]string{"Authorization": "Bearer " + jwtUser}, 0, 3),
		call("a6", "2026-10-15T08:00:00.000Z", base+"/accounts/other-co/x", map[string]string{"Authorization": "Bearer " + jwtOther}, 404, 1),
		call("a7", "2026-11-03T08:00:00.000Z", base+"/items", map[string]string{"Authorization": "Bearer " + forged}, 200, 1),
		call("a8", "2026-11-04T08:00:00.000Z", base+"/items", map[string]string{"X-Api-Key": k1}, 200, 1),
		call("a9", "2026-11-06T08:00:00.000Z", base+"/items", map[string]string{"X-Api-Key": "unknown_key_zz9"}, 200, 1),
	}
	batchA[7]["user_id"] = "explicit-9" // the sender's id wins over the alias
	if res := r.post(batchA); res.Stored != 9 || res.Duplicates != 0 {
		t.Fatalf("first post: %+v, want 9 stored", res)
	}
	wantUsers := map[string]string{
		"a1": "cust-513|acme-co", // key 1 in X-Api-Key
		"a2": "cust-513|acme-co", // key 2 in the query; company from the URL
		"a3": "cust-513|acme-co", // key 3 as a bearer token, before it expired
		"a4": "|",                // key 3 after it expired: no one
		"a5": "cust-513|acme-co", // JWT sub; company from the tenant_id claim
		"a6": "other-7|other-co", // another JWT; company from the URL
		"a7": "|",                // forged JWT: verify mode identifies no one
		"a8": "explicit-9|",      // explicit user; the alias's company is not his
		"a9": "|",                // unknown key
	}
	if got := r.usersByID(); fmt.Sprint(got) != fmt.Sprint(wantUsers) {
		t.Fatalf("attribution:\n got  %v\n want %v", got, wantUsers)
	}
	// By hand: October a1 (1); November a2 (10) + a3 (1) + a5 (3).
	if oct, nov := r.userCalls("2026-10", "cust-513"), r.userCalls("2026-11", "cust-513"); oct != 1 || nov != 14 {
		t.Fatalf("cust-513 calls: October %d, November %d; want 1 and 14", oct, nov)
	}
	r.agree("after first batch", "2026-10", "2026-11")

	if res := r.post(batchA); res.Stored != 0 || res.Duplicates != 9 {
		t.Fatalf("replayed batch: %+v, want 0 stored and 9 duplicates", res)
	}
	r.agree("after replay", "2026-10", "2026-11")

	batchB := append([]map[string]any{}, batchA[:5]...)
	batchB = append(batchB,
		call("b1", "2026-11-20T12:00:00.000Z", base+"/items", map[string]string{"X-Api-Key": k2}, 200, 100),
		call("b2", "2026-11-30T23:59:59.999Z", base+"/items", map[string]string{"X-Api-Key": k1}, 503, 1),
	)
	if res := r.post(batchB); res.Stored != 2 || res.Duplicates != 5 {
		t.Fatalf("overlapping batch: %+v, want 2 stored and 5 duplicates", res)
	}
	r.agree("after overlapping batch", "2026-10", "2026-11")
	if nov := r.userCalls("2026-11", "cust-513"); nov != 115 {
		t.Fatalf("cust-513 November calls %d, want 115", nov)
	}

	r.close()
	r = startRig(t, dir, a.ID, open)
	r.agree("after restart", "2026-10", "2026-11")
	if res := r.post(append(batchA, batchB...)); res.Stored != 0 {
		t.Fatalf("replay after restart stored %d events, want 0", res.Stored)
	}
	r.agree("after replay after restart", "2026-10", "2026-11")
	if res := r.post([]map[string]any{
		call("c1", "2026-12-01T00:00:00.000Z", base+"/items", map[string]string{"X-Api-Key": k1}, 200, 1),
	}); res.Stored != 1 {
		t.Fatalf("December event not stored: %+v", res)
	}
	r.agree("after next month boundary", "2026-10", "2026-11", "2026-12")
	if dec := r.userCalls("2026-12", "cust-513"); dec != 1 {
		t.Fatalf("cust-513 December calls %d, want 1 (counters start from zero each period)", dec)
	}
	// What a gateway's quota reads: one customer's counter for the period
	// an instant falls in.
	for _, q := range []struct {
		at   time.Time
		want identity.Counts
	}{
		{time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC), identity.Counts{Calls: 115, Errors: 14, Bytes: 115 * 350}},
		{time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), identity.Counts{Calls: 1, Bytes: 350}},
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), identity.Counts{}},
	} {
		got, err := r.meter.Usage(context.Background(), "acme", "prod", identity.ByUser, "cust-513", q.at)
		if err != nil || got != q.want {
			t.Errorf("quota counter of cust-513 at %s = %+v, %v; want %+v", q.at.Format("2006-01-02"), got, err, q.want)
		}
	}

	// The admin API: list by user, get, delete.
	var list struct {
		Aliases []identity.AliasJSON `json:"aliases"`
	}
	r.do("GET", "/v1/aliases?org=acme&user_id=cust-513", nil, &list)
	if len(list.Aliases) != 3 {
		t.Fatalf("cust-513 has %d aliases, want 3: %+v", len(list.Aliases), list.Aliases)
	}
	expired := 0
	for _, al := range list.Aliases {
		if al.Expired {
			expired++
		}
	}
	if expired != 1 {
		t.Errorf("%d aliases marked expired, want 1", expired)
	}
	h2 := scrub.KeyHash(k2)
	var got identity.AliasJSON
	if code := r.do("GET", "/v1/aliases/"+h2+"?org=acme", nil, &got); code != 200 || got.UserID != "cust-513" || got.KeyID != scrub.Fingerprint(k2) {
		t.Fatalf("get alias: %d %+v", code, got)
	}
	r.do("DELETE", "/v1/aliases/"+h2+"?org=acme", nil, nil)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if code := r.do("GET", "/v1/aliases/"+h2+"?org=acme", nil, &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("deleted alias: status %d, %+v", code, e)
	}
	r.post([]map[string]any{call("c2", "2026-12-02T00:00:00.000Z", base+"/items", map[string]string{"X-Api-Key": k2}, 200, 1)})
	if u := r.usersByID()["c2"]; u != "|" {
		t.Errorf("call with a deleted key attributed to %q", u)
	}
	r.agree("after delete", "2026-12")
	r.close()

	present := []string{"cust-513"}
	if scan != nil {
		scan(t, secrets, present)
	}
	scanDir(t, dir, secrets, present)
}
