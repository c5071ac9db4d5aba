package portal_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/gateway"
	"github.com/apimeter/apimeter/identity"
	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/portal"
	"github.com/apimeter/apimeter/portal/token"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/stats"
	"github.com/apimeter/apimeter/store/clickhouse"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/duckdb"
)

func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

// store is what the tests need of a store, whatever the engine.
type store interface {
	apimeter.Store
}

// env is one running server: the store, the Metrics API, the key check
// and the portal, on a real HTTP listener.
type env struct {
	t       *testing.T
	url     string
	events  []apimeter.Event // what the store holds
	readKey string
	admin   string
	tokens  *token.Tokens
	now     time.Time
	periods identity.Periods
	gw      *gateway.Gateway
	gwURL   string
	// tok maps a customer name ("user u1") to its token.
	tok map[string]string
	// plansURL, on DuckDB, is a second portal on the same store whose
	// one-pass usage query always falls back to the Metrics API's plans.
	plansURL string
	st       store
	// db is the store's database, for the tests' own SQL.
	db stats.Queryer
	// fold, on DuckDB, folds the rollups (ClickHouse's are current with
	// every insert).
	fold func() error
}

// customers of the fixture: users u1, u2 of company c1, u3 of c2, u4 of
// none; calls no one was identified for; the same ids in another env and
// another org.
var customers = []token.Customer{
	{Kind: token.KindUser, ID: "u1"},
	{Kind: token.KindUser, ID: "u3"},
	{Kind: token.KindCompany, ID: "c1"},
	{Kind: token.KindCompany, ID: "c2"},
}

func custName(c token.Customer) string { return c.Kind + " " + c.ID }

func of(e *apimeter.Event, c token.Customer) bool {
	if c.Kind == token.KindCompany {
		return e.CompanyID == c.ID
	}
	return e.UserID == c.ID
}

// fixture makes events in the current and the previous billing period.
func fixture(now time.Time, ps identity.Periods) []apimeter.Event {
	cur := ps.Of(now)
	prev := ps.Of(cur.Start.Add(-time.Nanosecond))
	who := []struct{ user, company, key string }{
		{"u1", "c1", "fp_k1"}, {"u1", "c1", "fp_k1b"}, {"u2", "c1", "fp_k2"}, {"u3", "c2", "fp_k3"},
		{"u4", "", "fp_k4"}, {"", "", ""}, {"", "c2", "fp_k5"},
	}
	routes := []struct{ api, method, route, path string }{
		{"pay", "GET", "/accounts/{id}", "/accounts/7"}, {"pay", "POST", "/payments", "/payments"},
		{"ship", "GET", "/parcels/{id}", "/parcels/42"}, {"ship", "DELETE", "/parcels/{id}", "/parcels/9"},
	}
	statuses := []int{200, 200, 201, 404, 500, 0, 200, 429}
	var out []apimeter.Event
	i := 0
	add := func(start time.Time, org, envName string, n int) {
		for k := 0; k < n; k++ {
			w := who[(k*5+i)%len(who)]
			r := routes[(k*3+i/2)%len(routes)]
			st := statuses[(k+i)%len(statuses)]
			ts := start.Add(time.Duration(k*37+i) * time.Minute)
			lat := float64((k*13+i*7)%900) + 0.5
			var weight int64 = 1
			if k%11 == 0 {
				weight = 3
			}
			e := apimeter.Event{
				ID: fmt.Sprintf("e%d", i), Org: org, Env: envName, Direction: apimeter.Incoming,
				APIName: r.api, Method: r.method, Route: r.route, Path: r.path,
				URI:         "https://api.example.com" + r.path + "?q=" + strconv.Itoa(k%3),
				RequestTime: ts, ResponseTime: ts.Add(time.Duration(lat * float64(time.Millisecond))),
				Status: st, LatencyMs: lat, TargetLatencyMs: lat / 2, RequestSize: int64(k % 500), ResponseSize: int64(k*7) % 900,
				UserID: w.user, CompanyID: w.company, APIKeyID: w.key,
				ClientIP: fmt.Sprintf("10.0.%d.%d", k%3, k%7), UserAgent: "agent/" + strconv.Itoa(k%4),
				TargetURL: "https://backend.internal/" + r.api, Weight: weight,
			}
			out = append(out, e)
			i++
		}
	}
	add(cur.Start.Add(time.Minute), "acme", "prod", 260)
	add(prev.Start.Add(time.Hour), "acme", "prod", 140)
	add(cur.Start.Add(2*time.Minute), "acme", "test", 60)  // same ids, another env
	add(cur.Start.Add(3*time.Minute), "other", "prod", 60) // same ids, another org
	return out
}

// countingIngester takes the gateway's events away (they are not the
// subject here: its quota counters are).
type countingIngester struct{ n atomic.Int64 }

func (c *countingIngester) Ingest(_ context.Context, events []apimeter.Event) (apimeter.AppendResult, error) {
	c.n.Add(int64(len(events)))
	return apimeter.AppendResult{}, nil
}

func start(t *testing.T, engine string) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	var st store
	var db stats.Queryer
	var dialect stats.Dialect
	var keys *auth.Keys
	var toks *token.Tokens
	var err error
	switch engine {
	case "duckdb":
		d, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		st, db, dialect = d, d.DB(), stats.DuckDB{}
		if keys, err = auth.Open(dir); err != nil {
			t.Fatal(err)
		}
		if toks, err = token.Open(dir); err != nil {
			t.Fatal(err)
		}
	case "clickhouse":
		c, err := clickhouse.Open(ctx, chtest.Shared(t).DSN(chtest.Database(t)), clickhouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		st, db, dialect = c, c.DB(), stats.ClickHouse{}
		// Keys and tokens in the store's tables, as several collectors
		// share them.
		if keys, err = auth.OpenSource(c); err != nil {
			t.Fatal(err)
		}
		if toks, err = token.OpenSource(c); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, now: time.Now().UTC(), tokens: toks, tok: map[string]string{}, st: st, db: db, fold: func() error { return nil }}
	if d, ok := st.(*duckdb.Store); ok {
		e.fold = func() error { _, err := d.BuildRollups(ctx); return err }
	}
	e.events = fixture(e.now, e.periods)
	for i := 0; i < len(e.events); i += 500 {
		if _, err := st.Append(ctx, e.events[i:min(i+500, len(e.events))]); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	guard := auth.New(auth.Config{Keys: keys})
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, 0), Auth: guard})
	guard.Register(srv)
	stats.NewHandler(stats.Config{DB: db, Dialect: dialect, QuotaPerMinute: -1}).Register(srv)

	// A gateway in front of a backend, with quotas by user and company.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	gcfg, err := gateway.ParseConfig([]byte(fmt.Sprintf(`
org: acme
env: prod
upstreams:
  - name: pay
    url: %s
  - name: elsewhere
    url: %s
    path_prefix: /x
    org: other
company_rules: ["header:X-Company-Id"]
quotas:
  - {name: user-monthly, by: user, per: billing_period, limit: 10, overrides: {u3: 20}}
  - {name: company-monthly, by: company, per: billing_period, limit: 100}
  - {name: other-org, by: user, per: billing_period, limit: 7, apis: [elsewhere]}
`, backend.URL, backend.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ing := &countingIngester{}
	e.gw, err = gateway.New(gcfg, gateway.Options{Sink: gateway.IngestSinks(ing)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Close(context.Background()) })
	gws := httptest.NewServer(e.gw)
	t.Cleanup(gws.Close)
	e.gwURL = gws.URL

	ph := portal.New(portal.Config{Tokens: toks, DB: db, Dialect: dialect, Events: st, Periods: e.periods,
		Quotas: e.gw, RatePerMinute: -1})
	ph.Register(srv)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	e.url = hs.URL
	if engine == "duckdb" {
		srv2 := server.New(server.Config{Store: st})
		portal.New(portal.Config{Tokens: toks, DB: db, Dialect: dialect, Events: st, Periods: e.periods, RatePerMinute: -1, OnePassLimit: 1}).Register(srv2)
		hs2 := httptest.NewServer(srv2)
		t.Cleanup(hs2.Close)
		e.plansURL = hs2.URL
	}

	if _, e.readKey, err = keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeRead}); err != nil {
		t.Fatal(err)
	}
	if _, e.admin, err = keys.Create(auth.Spec{Org: "acme", Scope: auth.ScopeAdmin}); err != nil {
		t.Fatal(err)
	}
	for _, c := range customers {
		body := map[string]any{"env": "prod", "ttl": "1h"}
		body[c.Column()] = c.ID
		var out portal.TokenJSON
		if code := e.do("POST", "/v1/portal/tokens", e.admin, body, &out); code != http.StatusCreated {
			t.Fatalf("create token for %s: %d", custName(c), code)
		}
		e.tok[custName(c)] = out.Token
	}
	return e
}

// do sends a request with cred as Bearer and decodes the JSON answer.
func (e *env) do(method, path, cred string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 500 {
		e.t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// rng is the Metrics API time range covering both periods.
func (e *env) rng() string {
	cur := e.periods.Of(e.now)
	prev := e.periods.Of(cur.Start.Add(-time.Nanosecond))
	return prev.Start.Format("01/02/2006 15:04") + "~" + cur.End.Format("01/02/2006 15:04")
}

// expected sums the weights of the customer's calls in org acme, env prod
// for which pred holds.
func (e *env) expected(c token.Customer, pred func(*apimeter.Event) bool) (total int64, groups map[string]bool) {
	for i := range e.events {
		ev := &e.events[i]
		if ev.Org == "acme" && ev.Env == "prod" && of(ev, c) && (pred == nil || pred(ev)) {
			total += ev.Weight
		}
	}
	return total, nil
}

// statsBody is a Metrics API answer without its metaData (query times).
func statsBody(t *testing.T, r stats.Response) []stats.Environment { return r.Environments }

// sumCounts adds up the first metric (sum(message_count)) of an answer.
func sumCounts(t *testing.T, envs []stats.Environment) (int64, []string) {
	var n float64
	var names []string
	for _, en := range envs {
		var groups []stats.DimensionResult
		if en.Dimensions != nil {
			groups = *en.Dimensions
		} else {
			groups = []stats.DimensionResult{{Metrics: en.Metrics}}
		}
		for _, g := range groups {
			names = append(names, g.Name)
			for _, v := range g.Metrics[0].Values {
				f, err := strconv.ParseFloat(v.(string), 64)
				if err != nil {
					t.Fatalf("value %v", v)
				}
				n += f
			}
		}
	}
	return int64(n + 0.5), names
}

// dimensions are every dimension the Metrics API accepts; the test checks
// the list against the API's own.
var dimensions = []string{"apiproxy", "apiproxy_revision", "apis", "api_key", "client_id", "client_ip", "company_id",
	"developer", "developer_app", "developer_email", "apps", "environment", "proxy_basepath", "request_path", "request_uri",
	"request_verb", "response_status_code", "route", "target_url", "user_id", "useragent"}

// identityDims group by the customer columns: their names must be the
// customer's own ids (or its users').
var identityDims = map[string]string{"developer": "user", "developer_email": "user", "user_id": "user",
	"developer_app": "company", "apps": "company", "company_id": "company"}

// crafted filters that try to reach other customers' rows, each with what
// it means on one event.
var crafted = []struct {
	filter string
	pred   func(*apimeter.Event) bool
}{
	{"user_id eq 'u3'", func(e *apimeter.Event) bool { return e.UserID == "u3" }},
	{"user_id eq 'u1' or user_id eq 'u3'", func(e *apimeter.Event) bool { return e.UserID == "u1" || e.UserID == "u3" }},
	{"user_id ne 'nobody' or company_id eq 'c2'", func(e *apimeter.Event) bool { return true }},
	{"company_id in ('c1','c2') or user_id isnull", func(e *apimeter.Event) bool {
		return e.CompanyID == "c1" || e.CompanyID == "c2" || e.UserID == ""
	}},
	{"(user_id isnull) or (user_id isnotnull)", func(e *apimeter.Event) bool { return true }},
	{"environment eq 'test' or environment eq 'prod'", func(e *apimeter.Event) bool { return true }},
	{"response_status_code ge 0 or response_status_code lt 0", func(e *apimeter.Event) bool { return true }},
	{"user_id like '%'", func(e *apimeter.Event) bool { return true }},
	{"user_id notin ('u1')", func(e *apimeter.Event) bool { return e.UserID != "u1" }},
	{"developer eq 'u3' or apps eq 'c2' or apps eq 'c1'", func(e *apimeter.Event) bool {
		return e.UserID == "u3" || e.CompanyID == "c2" || e.CompanyID == "c1"
	}},
	{"user_id eq 'u1') or (user_id ne 'u1'", nil}, // a bracket escape: refused as a bad filter
	{"company_id eq ''", func(e *apimeter.Event) bool { return e.CompanyID == "" }},
}

// TestIsolationMatrix: tokens of two users and two companies of one org,
// against every portal endpoint and every dimension, filter and group-by,
// including filters written to reach other customers: each answer holds
// only the token's customer's rows, and an org key's Metrics API answer
// for that customer is the same. Expired and revoked tokens get 401. On
// DuckDB and ClickHouse.
func TestIsolationMatrix(t *testing.T) {
	for _, engine := range []string{"duckdb", "clickhouse"} {
		t.Run(engine, func(t *testing.T) {
			e := start(t, engine)
			t.Run("dimension list", func(t *testing.T) { e.checkDimensionList(t) })
			for _, c := range customers {
				t.Run(strings.ReplaceAll(custName(c), " ", "_"), func(t *testing.T) {
					tok := e.tok[custName(c)]
					t.Run("dimensions", func(t *testing.T) { e.checkDimensions(t, c, tok) })
					t.Run("filters", func(t *testing.T) { e.checkFilters(t, c, tok) })
					t.Run("topk offset", func(t *testing.T) { e.checkPaging(t, c, tok) })
					t.Run("time buckets", func(t *testing.T) { e.checkBuckets(t, c, tok) })
					t.Run("usage", func(t *testing.T) { e.checkUsage(t, c, tok) })
					t.Run("events", func(t *testing.T) { e.checkEvents(t, c, tok) })
					t.Run("view", func(t *testing.T) { e.checkView(t, c, tok) })
					t.Run("paths and params", func(t *testing.T) { e.checkPaths(t, c, tok) })
				})
			}
			t.Run("quota", func(t *testing.T) { e.checkQuota(t) })
			t.Run("expired and revoked", func(t *testing.T) { e.checkDeadTokens(t) })
		})
	}
}

func (e *env) checkDimensionList(t *testing.T) {
	var er map[string]any
	req, _ := http.NewRequest("GET", e.url+"/v1/o/acme/e/prod/stats/nope?select=sum(message_count)&timeRange="+url.QueryEscape(e.rng()), nil)
	req.Header.Set("Authorization", "Bearer "+e.readKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	m := regexp.MustCompile(`known: (.*)$`).FindStringSubmatch(fmt.Sprint(er["message"]))
	if m == nil {
		t.Fatalf("no list of dimensions in %v", er)
	}
	known := strings.Split(m[1], ", ")
	want := slices.Clone(dimensions)
	sort.Strings(known)
	sort.Strings(want)
	if !slices.Equal(known, want) {
		t.Fatalf("the Metrics API accepts dimensions %v; the test covers %v", known, want)
	}
}

// both asks the portal with tok and the Metrics API with the org key
// (filter narrowed to the customer) the same question.
func (e *env) both(t *testing.T, c token.Customer, tok, dims string, q url.Values) (portalCode int, p, o []stats.Environment) {
	t.Helper()
	q.Set("timeRange", e.rng())
	path := "/portal/api/v1/stats"
	opath := "/v1/o/acme/e/prod/stats"
	if dims != "" {
		path += "/" + dims
		opath += "/" + dims
	}
	var pr, or stats.Response
	portalCode = e.do("GET", path+"?"+q.Encode(), tok, nil, &pr)
	oq := url.Values{}
	for k, v := range q {
		oq[k] = v
	}
	restrict := fmt.Sprintf("%s eq '%s'", c.Column(), c.ID)
	if f := q.Get("filter"); f != "" {
		oq.Set("filter", restrict+" and ("+f+")")
	} else {
		oq.Set("filter", restrict)
	}
	ocode := e.do("GET", opath+"?"+oq.Encode(), e.readKey, nil, &or)
	if portalCode == http.StatusOK && ocode != http.StatusOK {
		t.Fatalf("org key: %d for %s?%s", ocode, opath, oq.Encode())
	}
	return portalCode, statsBody(t, pr), statsBody(t, or)
}

func (e *env) checkDimensions(t *testing.T, c token.Customer, tok string) {
	total, _ := e.expected(c, nil)
	if total == 0 {
		t.Fatal("fixture: the customer has no calls")
	}
	for _, d := range dimensions {
		q := url.Values{"select": {"sum(message_count),sum(is_error),p95(total_response_time),avg(request_size),unique_users"}}
		code, p, o := e.both(t, c, tok, d, q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", d, code)
		}
		if !reflect.DeepEqual(p, o) {
			t.Errorf("%s: the portal's answer differs from the org key's for the same customer:\nportal %+v\norg    %+v", d, p, o)
		}
		n, names := sumCounts(t, p)
		if n != total {
			t.Errorf("%s: calls over every group %d, the customer has %d", d, n, total)
		}
		e.checkNames(t, c, d, names)
	}
	// Two dimensions at once, and no dimension.
	for _, d := range []string{"user_id,company_id", "apiproxy,environment,developer_app", ""} {
		code, p, o := e.both(t, c, tok, d, url.Values{"select": {"sum(message_count)"}})
		if code != http.StatusOK || !reflect.DeepEqual(p, o) {
			t.Errorf("%q: %d, portal %+v, org %+v", d, code, p, o)
		}
		if n, _ := sumCounts(t, p); n != total {
			t.Errorf("%q: %d calls, want %d", d, n, total)
		}
	}
}

// checkNames: groups of an identity dimension are the customer's ids.
func (e *env) checkNames(t *testing.T, c token.Customer, dim string, names []string) {
	t.Helper()
	kind, ok := identityDims[dim]
	if !ok {
		if dim == "environment" && !slices.Equal(names, []string{"prod"}) {
			t.Errorf("environment groups %v, want [prod]", names)
		}
		return
	}
	allowed := map[string]bool{}
	for i := range e.events {
		ev := &e.events[i]
		if ev.Org == "acme" && ev.Env == "prod" && of(ev, c) {
			if kind == "user" {
				allowed[ev.UserID] = true
			} else {
				allowed[ev.CompanyID] = true
			}
		}
	}
	for _, n := range names {
		if !allowed[n] {
			t.Errorf("%s: group %q is not the customer's", dim, n)
		}
	}
}

func (e *env) checkFilters(t *testing.T, c token.Customer, tok string) {
	for _, cf := range crafted {
		for _, d := range []string{"", "user_id", "company_id,route"} {
			code, p, o := e.both(t, c, tok, d, url.Values{"select": {"sum(message_count),p50(total_response_time)"}, "filter": {cf.filter}})
			if cf.pred == nil {
				if code != http.StatusBadRequest {
					t.Errorf("filter %q: %d, want 400", cf.filter, code)
				}
				continue
			}
			if code != http.StatusOK {
				t.Fatalf("filter %q on %q: %d", cf.filter, d, code)
			}
			if !reflect.DeepEqual(p, o) {
				t.Errorf("filter %q on %q: portal %+v, org %+v", cf.filter, d, p, o)
			}
			want, _ := e.expected(c, cf.pred)
			n, names := sumCounts(t, p)
			if n != want {
				t.Errorf("filter %q on %q: %d calls, the customer's rows that match are %d", cf.filter, d, n, want)
			}
			if d != "" {
				for i, n := range names {
					names[i], _, _ = strings.Cut(n, ",")
				}
				e.checkNames(t, c, strings.Split(d, ",")[0], names)
			}
		}
	}
}

func (e *env) checkPaging(t *testing.T, c token.Customer, tok string) {
	for _, d := range []string{"user_id", "company_id", "api_key", "route"} {
		var all []string
		total, _ := e.expected(c, nil)
		var sum int64
		for off := 0; off < 12; off++ {
			q := url.Values{"select": {"sum(message_count)"}, "limit": {"1"}, "offset": {strconv.Itoa(off)}, "sortby": {"sum(message_count)"}}
			code, p, o := e.both(t, c, tok, d, q)
			if code != http.StatusOK || !reflect.DeepEqual(p, o) {
				t.Fatalf("%s offset %d: %d, portal %+v, org %+v", d, off, code, p, o)
			}
			n, names := sumCounts(t, p)
			if len(names) == 0 {
				break
			}
			sum += n
			all = append(all, names...)
		}
		e.checkNames(t, c, d, all)
		if sum != total {
			t.Errorf("%s: the pages add up to %d calls, the customer has %d", d, sum, total)
		}
		for _, k := range []string{"1", "2", "100", "14400"} {
			code, p, o := e.both(t, c, tok, d, url.Values{"select": {"sum(message_count)"}, "topk": {k}, "sort": {"ASC"}})
			if code != http.StatusOK || !reflect.DeepEqual(p, o) {
				t.Errorf("%s topk %s: %d, portal %+v, org %+v", d, k, code, p, o)
			}
			_, names := sumCounts(t, p)
			e.checkNames(t, c, d, names)
		}
	}
}

func (e *env) checkBuckets(t *testing.T, c token.Customer, tok string) {
	total, _ := e.expected(c, nil)
	for _, tu := range []string{"day", "week", "month"} {
		for _, d := range []string{"", "user_id"} {
			code, p, o := e.both(t, c, tok, d, url.Values{"select": {"sum(message_count),p99(total_response_time),tps"}, "timeUnit": {tu}, "tzo": {"-420"}})
			if code != http.StatusOK || !reflect.DeepEqual(p, o) {
				t.Errorf("%s by %q: %d, portal %+v, org %+v", tu, d, code, p, o)
			}
			var n float64
			for _, en := range p {
				ms := en.Metrics
				if en.Dimensions != nil {
					ms = nil
					for _, g := range *en.Dimensions {
						ms = append(ms, g.Metrics[0])
					}
				}
				for _, m := range ms {
					if m.Name != "sum(message_count)" {
						continue
					}
					for _, v := range m.Values {
						pt := v.(map[string]any)
						f, _ := strconv.ParseFloat(pt["value"].(string), 64)
						n += f
					}
				}
			}
			if int64(n) != total {
				t.Errorf("%s by %q: %v calls in the buckets, want %d", tu, d, n, total)
			}
		}
	}
}

func (e *env) checkUsage(t *testing.T, c token.Customer, tok string) {
	cur := e.periods.Of(e.now)
	prev := e.periods.Of(cur.Start.Add(-time.Nanosecond))
	for _, per := range []identity.Period{cur, prev} {
		for _, label := range []string{per.Label, map[bool]string{true: "current", false: "previous"}[per == cur]} {
			var u portal.UsageJSON
			if code := e.do("GET", "/portal/api/v1/usage?period="+label, tok, nil, &u); code != http.StatusOK {
				t.Fatalf("usage %s: %d", label, code)
			}
			in := func(ev *apimeter.Event) bool { return per.Contains(ev.RequestTime) }
			want, _ := e.expected(c, in)
			werr, _ := e.expected(c, func(ev *apimeter.Event) bool { return in(ev) && ev.IsError() })
			if u.Customer != c || u.Org != "acme" || u.Env != "prod" {
				t.Errorf("usage names %+v %s %s", u.Customer, u.Org, u.Env)
			}
			if u.Total.Calls != want || u.Total.Errors != werr {
				t.Errorf("usage %s: %d calls, %d errors; the customer made %d, %d", label, u.Total.Calls, u.Total.Errors, want, werr)
			}
			var s int64
			for _, p := range u.Series.Points {
				s += p.Calls
			}
			if s != want {
				t.Errorf("usage %s: the series adds up to %d, want %d", label, s, want)
			}
			if e.plansURL != "" {
				// The one-pass answer equals the plans' answer.
				var pu portal.UsageJSON
				saved := e.url
				e.url = e.plansURL
				code := e.do("GET", "/portal/api/v1/usage?period="+label, tok, nil, &pu)
				e.url = saved
				if code != http.StatusOK {
					t.Fatalf("usage through the plans: %d", code)
				}
				for _, g := range [][2][]portal.GroupJSON{{u.Routes, pu.Routes}, {u.APIs, pu.APIs}, {u.Keys, pu.Keys}, {{{Figures: u.Total}}, {{Figures: pu.Total}}}} {
					if !reflect.DeepEqual(normalize(g[0]), normalize(g[1])) {
						t.Errorf("usage %s: one pass %v, plans %v", label, normalize(g[0]), normalize(g[1]))
					}
				}
				if !reflect.DeepEqual(u.Series, pu.Series) || !reflect.DeepEqual(u.Statuses, pu.Statuses) {
					t.Errorf("usage %s: one pass %+v %+v, plans %+v %+v", label, u.Series, u.Statuses, pu.Series, pu.Statuses)
				}
			}
			// Routes, APIs and keys as the org key's Metrics API answers
			// them for the customer.
			for _, g := range []struct {
				dim  string
				rows []portal.GroupJSON
			}{{"route", u.Routes}, {"apiproxy", u.APIs}, {"api_key", u.Keys}} {
				q := url.Values{"select": {"sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time)"},
					"sortby": {"sum(message_count)"}, "filter": {fmt.Sprintf("%s eq '%s'", c.Column(), c.ID)},
					"timeRange": {per.Start.Format("01/02/2006 15:04") + "~" + per.End.Format("01/02/2006 15:04")}}
				var or stats.Response
				if code := e.do("GET", "/v1/o/acme/e/prod/stats/"+g.dim+"?"+q.Encode(), e.readKey, nil, &or); code != http.StatusOK {
					t.Fatalf("org key: %d", code)
				}
				var want []portal.GroupJSON
				for _, dr := range *or.Environments[0].Dimensions {
					f := func(i int) *float64 {
						v, _ := strconv.ParseFloat(dr.Metrics[i].Values[0].(string), 64)
						return &v
					}
					want = append(want, portal.GroupJSON{Name: dr.Name, Figures: portal.Figures{Calls: int64(*f(0)), Errors: int64(*f(1)),
						AvgMs: f(2), P50Ms: f(3), P95Ms: f(4), P99Ms: f(5)}})
				}
				if len(want) == 0 {
					want = []portal.GroupJSON{}
				}
				if !reflect.DeepEqual(normalize(g.rows), normalize(want)) {
					t.Errorf("usage %s by %s: %+v, the org key's answer %+v", label, g.dim, g.rows, want)
				}
			}
		}
	}
}

// normalize rounds latencies as the Metrics API's text does.
func normalize(gs []portal.GroupJSON) []string {
	var out []string
	r := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatFloat(*v, 'g', 10, 64)
	}
	for _, g := range gs {
		out = append(out, fmt.Sprintf("%s %d %d %s %s %s %s", g.Name, g.Calls, g.Errors, r(g.AvgMs), r(g.P50Ms), r(g.P95Ms), r(g.P99Ms)))
	}
	return out
}

func (e *env) checkEvents(t *testing.T, c token.Customer, tok string) {
	type answer struct {
		Events []moesif.Event `json:"events"`
	}
	n := 0
	for i := range e.events {
		ev := &e.events[i]
		if ev.Org == "acme" && ev.Env == "prod" && of(ev, c) {
			n++
		}
	}
	for _, q := range []string{"", "limit=100", "user_id=u3", "company_id=c2", "user_id=u1", "company_id=c1", "errors=true",
		"status=200", "route=" + url.QueryEscape("/parcels/{id}"), "api_name=pay", "limit=7"} {
		var a answer
		if code := e.do("GET", "/portal/api/v1/events?"+q, tok, nil, &a); code != http.StatusOK {
			t.Fatalf("events?%s: %d", q, code)
		}
		for _, m := range a.Events {
			id := m.UserID
			if c.Kind == token.KindCompany {
				id = m.CompanyID
			}
			if id != c.ID {
				t.Errorf("events?%s: an event of %q/%q", q, m.UserID, m.CompanyID)
			}
		}
		if q == "limit=100" && len(a.Events) != min(n, 100) {
			t.Errorf("events?limit=100: %d events, the customer has %d", len(a.Events), n)
		}
		// The org key's read API, narrowed to the customer, answers the same
		// (when the query does not name another customer).
		if !strings.Contains(q, "_id=") {
			oq := q
			if oq != "" {
				oq += "&"
			}
			oq += c.Column() + "=" + c.ID
			if !strings.Contains(q, "limit") {
				oq += "&limit=50"
			}
			var o answer
			if code := e.do("GET", "/v1/o/acme/e/prod/events?"+oq, e.readKey, nil, &o); code != http.StatusOK {
				t.Fatalf("org key events?%s: %d", oq, code)
			}
			if !reflect.DeepEqual(a, o) {
				t.Errorf("events?%s: the portal's %d events differ from the org key's %d", q, len(a.Events), len(o.Events))
			}
		}
	}
	for _, q := range []string{"limit=101", "limit=0", "status=abc", "errors=maybe", "from=yesterday"} {
		if code := e.do("GET", "/portal/api/v1/events?"+q, tok, nil, nil); code != http.StatusBadRequest {
			t.Errorf("events?%s: %d, want 400", q, code)
		}
	}
}

func (e *env) checkPaths(t *testing.T, c token.Customer, tok string) {
	// Paths with another customer's id, and routes of the org: the
	// token opens none of them.
	for _, p := range []string{"/portal/api/v1/users/u3", "/portal/api/v1/companies/c2", "/portal/api/v1/events/e1",
		"/portal/api/v1/stats/user_id/u3", "/portal/api/v1/usage/u3", "/portal/api/v1/"} {
		if code := e.do("GET", p, tok, nil, nil); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	for _, p := range []string{"/v1/o/acme/e/prod/stats?select=sum(message_count)&timeRange=" + url.QueryEscape(e.rng()),
		"/v1/o/acme/environments/prod/stats/user_id?select=sum(message_count)&timeRange=" + url.QueryEscape(e.rng()),
		"/v1/o/acme/e/prod/events", "/v1/o/acme/environments/prod/users/u3", "/v1/o/acme/environments/prod/companies/c2",
		"/v1/keys", "/v1/portal/tokens", "/v1/session",
		"/v1/o/acme"} {
		if code := e.do("GET", p, tok, nil, nil); code != http.StatusUnauthorized {
			t.Errorf("%s with a portal token: %d, want 401", p, code)
		}
	}
	if code := e.do("POST", "/v1/portal/tokens", tok, map[string]string{"user_id": "u3"}, nil); code != http.StatusUnauthorized {
		t.Errorf("a portal token minting a token: %d, want 401", code)
	}
	for _, q := range []string{"org=other", "env=test", "org=acme&env=test"} {
		for _, p := range []string{"me", "view", "usage", "events", "quota", "stats?select=sum(message_count)&timeRange=" + url.QueryEscape(e.rng())} {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			if code := e.do("GET", "/portal/api/v1/"+p+sep+q, tok, nil, nil); code != http.StatusForbidden {
				t.Errorf("%s%s%s: %d, want 403", p, sep, q, code)
			}
		}
	}
	// me says who the token reads for, and nothing of others.
	var me portal.MeJSON
	if code := e.do("GET", "/portal/api/v1/me", tok, nil, &me); code != http.StatusOK || me.Customer != c || me.Org != "acme" || me.Env != "prod" {
		t.Errorf("me: %d %+v", code, me)
	}
	// A read key is no portal credential, nor is no credential.
	for _, cred := range []string{e.readKey, "", "apmp_" + strings.Repeat("A", 43)} {
		if code := e.do("GET", "/portal/api/v1/usage", cred, nil, nil); code != http.StatusUnauthorized {
			t.Errorf("usage with %.9q: %d, want 401", cred, code)
		}
	}
}

// checkQuota sends calls through the gateway as three users of two
// companies, then reads each token's headroom.
func (e *env) checkQuota(t *testing.T) {
	for _, call := range []struct {
		user, company string
		n             int
	}{{"u1", "c1", 3}, {"u2", "c1", 2}, {"u3", "c2", 4}} {
		for range call.n {
			req, _ := http.NewRequest("GET", e.gwURL+"/pay", nil)
			req.Header.Set("Authorization", "Bearer "+unsignedJWT(call.user))
			req.Header.Set("X-Company-Id", call.company)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("gateway: %d", resp.StatusCode)
			}
		}
	}
	want := map[string][]gateway.Headroom{
		"user u1":    {{Name: "user-monthly", By: "user", Limit: 10, Used: 3, Remaining: 7}},
		"user u3":    {{Name: "user-monthly", By: "user", Limit: 20, Used: 4, Remaining: 16}},
		"company c1": {{Name: "company-monthly", By: "company", Limit: 100, Used: 5, Remaining: 95}},
		"company c2": {{Name: "company-monthly", By: "company", Limit: 100, Used: 4, Remaining: 96}},
	}
	for name, w := range want {
		var a struct {
			Customer token.Customer     `json:"customer"`
			Quotas   []gateway.Headroom `json:"quotas"`
		}
		if code := e.do("GET", "/portal/api/v1/quota", e.tok[name], nil, &a); code != http.StatusOK {
			t.Fatalf("quota %s: %d", name, code)
		}
		if custName(a.Customer) != name || len(a.Quotas) != len(w) {
			t.Fatalf("quota %s: %+v", name, a)
		}
		for i, q := range a.Quotas {
			if q.Name != w[i].Name || q.By != w[i].By || q.Limit != w[i].Limit || q.Used != w[i].Used || q.Remaining != w[i].Remaining {
				t.Errorf("quota %s: %+v, want %+v", name, q, w[i])
			}
		}
	}
}

// unsignedJWT is a JWT whose sub is user; the gateway decodes tokens
// without verifying when it has no JWT keys, as configured here.
func unsignedJWT(user string) string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(`{"sub":"`+user+`"}`) + "." + enc("signature")
}

func (e *env) checkDeadTokens(t *testing.T) {
	ctx := context.Background()
	// Expired: minted an hour and a minute ago for an hour.
	e.tokens.SetClock(func() time.Time { return time.Now().Add(-61 * time.Minute) })
	_, expired, err := e.tokens.Create(ctx, token.Spec{Org: "acme", Env: "prod", Customer: token.Customer{Kind: token.KindUser, ID: "u1"}, TTL: time.Hour})
	e.tokens.SetClock(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	// Revoked through the admin API.
	var made portal.TokenJSON
	if code := e.do("POST", "/v1/portal/tokens", e.admin, map[string]string{"company_id": "c1"}, &made); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if code := e.do("GET", "/portal/api/v1/me", made.Token, nil, nil); code != http.StatusOK {
		t.Fatalf("a fresh token: %d", code)
	}
	if code := e.do("DELETE", "/v1/portal/tokens/"+made.ID, e.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("revoke: %d", code)
	}
	var list struct {
		Tokens []portal.TokenJSON `json:"tokens"`
	}
	if code := e.do("GET", "/v1/portal/tokens", e.admin, nil, &list); code != http.StatusOK {
		t.Fatalf("list: %d", code)
	}
	for _, l := range list.Tokens {
		if l.Token != "" {
			t.Errorf("the list shows token %s itself", l.ID)
		}
		if l.ID == made.ID && l.Revoked == nil {
			t.Errorf("the list does not show %s revoked", l.ID)
		}
	}
	// Each customer's token, its token limited to calls (checkView), and
	// the two above.
	if len(list.Tokens) != 2*len(customers)+2 {
		t.Errorf("the list has %d tokens, want %d", len(list.Tokens), 2*len(customers)+2)
	}
	paths := []string{"me", "view", "usage", "events", "quota", "meters", "statements", "stats?select=sum(message_count)&timeRange=" + url.QueryEscape(e.rng()), "stats/user_id?select=sum(message_count)&timeRange=" + url.QueryEscape(e.rng())}
	for _, tok := range []string{expired, made.Token} {
		for _, p := range paths {
			if code := e.do("GET", "/portal/api/v1/"+p, tok, nil, nil); code != http.StatusUnauthorized {
				t.Errorf("%s with an expired or revoked token: %d, want 401", p, code)
			}
		}
	}
	// Only an admin key of the org mints, for its own org.
	for _, m := range []struct {
		key, body string
		want      int
	}{
		{e.readKey, `{"user_id":"u1"}`, http.StatusForbidden},
		{e.admin, `{"org":"other","user_id":"u1"}`, http.StatusForbidden},
		{e.admin, `{"user_id":"u1","company_id":"c1"}`, http.StatusBadRequest},
		{e.admin, `{}`, http.StatusBadRequest},
		{e.admin, `{"user_id":"u1","ttl":"9999h"}`, http.StatusBadRequest},
		{e.admin, `{"user_id":"u1","pages":["everything"]}`, http.StatusBadRequest},
		{e.admin, `{"user_id":"u1","scope":"admin"}`, http.StatusBadRequest},
	} {
		var body map[string]any
		json.Unmarshal([]byte(m.body), &body)
		if code := e.do("POST", "/v1/portal/tokens", m.key, body, nil); code != m.want {
			t.Errorf("mint %s: %d, want %d", m.body, code, m.want)
		}
	}
	if code := e.do("GET", "/v1/portal/tokens", e.readKey, nil, nil); code != http.StatusForbidden {
		t.Errorf("a read key listing tokens: %d, want 403", code)
	}
	// The meters and statements pages are absent on this server.
	for _, p := range []string{"meters", "statements"} {
		if code := e.do("GET", "/portal/api/v1/"+p, e.tok["user u1"], nil, nil); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404 not_enabled", p, code)
		}
	}
}
