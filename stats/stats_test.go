package stats

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Day and week starts (UTC, epoch ms) used by the expected answers.
const (
	may07 = "1525651200000" // Monday, week start
	may08 = "1525737600000"
	may09 = "1525824000000"
	may10 = "1525910400000"
	may11 = "1525996800000"
	may14 = "1526256000000" // Monday, week start
	jun20 = "1529452800000"
	jun21 = "1529539200000"
	sep24 = "1537747200000"
	sep25 = "1537833600000"
	oct01 = "1538352000000"
)

func newMux(t *testing.T, cfg Config) *http.ServeMux {
	t.Helper()
	mux := http.NewServeMux()
	NewHandler(cfg).Register(mux)
	return mux
}

func get(mux http.Handler, u string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
	return rec
}

// environments returns the answer without metaData, compacted.
func environments(t *testing.T, body []byte) string {
	t.Helper()
	var r struct {
		Environments json.RawMessage `json:"environments"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	return string(r.Environments)
}

func compact(s string) string {
	var b strings.Builder
	inStr := false
	for _, c := range s {
		if c == '"' {
			inStr = !inStr
		}
		if !inStr && (c == ' ' || c == '\n' || c == '\t') {
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func pt(ts, v string) string { return `{"timestamp":` + ts + `,"value":"` + v + `"}` }

func dim(name string, metrics ...string) string {
	return `{"metrics":[` + strings.Join(metrics, ",") + `],"name":"` + name + `"}`
}

func met(name string, values ...string) string {
	return `{"name":"` + name + `","values":[` + strings.Join(values, ",") + `]}`
}

func q(s string) string { return `"` + s + `"` }

func envDims(dims ...string) string {
	return `[{"dimensions":[` + strings.Join(dims, ",") + `],"name":"test"}]`
}

func envMetrics(ms ...string) string {
	return `[{"metrics":[` + strings.Join(ms, ",") + `],"name":"test"}]`
}

// TestApigeeExamples runs each example request of Apigee's Metrics API documentation (Apigee's "Use
// the Metrics API") on the hand-computed fixture.
func TestApigeeExamples(t *testing.T) { forEngines(t, testSeedExamples) }

func testSeedExamples(t *testing.T, e engine) {
	db := e.open(t, fixtureEvents())
	mux := newMux(t, Config{DB: db, Dialect: e.dialect, QuotaPerMinute: -1})
	const may = "timeRange=05/08/2018%2000:00~05/15/2018%2000:00"
	const jun = "timeRange=06/20/2018%2000:00~06/21/2018%2023:59"
	tests := []struct {
		name string
		url  string
		want string
	}{
		{"total calls in a month", "/v1/o/myorg/e/test/stats/?select=sum(message_count)&timeRange=03/01/2018%2000:00~03/31/2018%2023:59",
			envMetrics(met("sum(message_count)", q("7.44944088E8")))},
		{"environments long form", "/v1/o/myorg/environments/test/stats?select=sum(message_count)&timeRange=03/01/2018+00:00~03/31/2018+23:59",
			envMetrics(met("sum(message_count)", q("7.44944088E8")))},
		{"messages per proxy over two days", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)&" + jun,
			envDims(dim("target-reroute", met("sum(message_count)", q("8640.0"))))},
		{"messages per developer app per day", "/v1/o/myorg/e/test/stats/developer_app?select=sum(message_count)&" + jun + "&timeUnit=day",
			envDims(
				dim("johndoe_app", met("sum(message_count)", pt(jun20, "6645.0"))),
				dim("marys_app", met("sum(message_count)", pt(jun21, "1109.0"))),
				dim("Test-App", met("sum(message_count)", pt(jun20, "886.0"))))},
		{"target url with most errors, topk=1", "/v1/o/myorg/e/test/stats/target_url?select=sum(is_error)&" + may + "&timeUnit=week&sortby=sum(is_error)&topk=1",
			envDims(dim("http://api.company.com", met("sum(is_error)", pt(may14, "0.0"), pt(may07, "12077.0"))))},
		{"proxy with highest throughput per day, topk=1", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)&" + may + "&timeUnit=day&sortby=sum(message_count)&sort=DESC&topk=1",
			envDims(dim("testCache", met("sum(message_count)", pt(may14, "5.0"), pt(may09, "77.0"), pt(may08, "12000.0"))))},
		{"errors per target url for POST and PUT", "/v1/o/myorg/e/test/stats/target_url?select=sum(is_error)&" + may + "&timeUnit=week&filter=(request_verb%20in%20'POST','PUT')",
			envDims(
				dim("http://api.company.com", met("sum(is_error)", pt(may07, "77.0"))),
				dim("http://backend.example", met("sum(is_error)", pt(may07, "1.0"))))},
		{"errors per proxy, sorted", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(is_error)&" + may + "&timeUnit=week&sortby=sum(is_error)",
			envDims(
				dim("testCache", met("sum(is_error)", pt(may14, "0.0"), pt(may07, "12077.0"))),
				dim("weatherapi", met("sum(is_error)", pt(may07, "1.0"))))},
		{"first page of 50", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(is_error)&" + may + "&timeUnit=week&sortby=sum(is_error)&limit=50&offset=0",
			envDims(
				dim("testCache", met("sum(is_error)", pt(may14, "0.0"), pt(may07, "12077.0"))),
				dim("weatherapi", met("sum(is_error)", pt(may07, "1.0"))))},
		{"second page of 50 is empty", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(is_error)&" + may + "&timeUnit=week&sortby=sum(is_error)&limit=50&offset=50",
			envDims()},
		{"page of one, second item", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(is_error)&" + may + "&timeUnit=week&sortby=sum(is_error)&limit=1&offset=1",
			envDims(dim("weatherapi", met("sum(is_error)", pt(may07, "1.0"))))},
		{"two dimensions separated by a comma", "/v1/o/myorg/e/test/stats/apis,apps?select=sum(message_count)&timeRange=9/24/2018%2000:00~10/25/2018%2000:00&timeUnit=day",
			envDims(
				dim("testCache,Test-App", met("sum(message_count)", pt(oct01, "2.0"))),
				dim("weatherapi,Test-App", met("sum(message_count)", pt(sep24, "2.0"))),
				dim("weatherapi,marys_app", met("sum(message_count)", pt(sep25, "1.0"))))},
		{"tps without a function", "/v1/o/myorg/e/test/stats/?select=tps&timeRange=12/03/2018%2000:00~12/04/2018%2000:00",
			// 111 calls over 86400 s.
			envMetrics(met("tps", q("0.0012847222222222223")))},
		{"sort ascending with tsAscending", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)&" + may + "&timeUnit=day&sortby=sum(message_count)&sort=ASC&tsAscending=true",
			envDims(
				dim("weatherapi", met("sum(message_count)", pt(may10, "1.0"), pt(may11, "3.0"))),
				dim("testCache", met("sum(message_count)", pt(may08, "12000.0"), pt(may09, "77.0"), pt(may14, "5.0"))))},
		{"time zone offset moves day buckets", "/v1/o/myorg/e/test/stats/?select=sum(message_count)&" + jun + "&timeUnit=day&tzo=-420&tsAscending=true",
			// UTC-7: 06/20 10:00 and 11:00 UTC fall on local 06/20, which
			// starts 07:00 UTC; 06/21 09:30 UTC on local 06/21.
			envMetrics(met("sum(message_count)", pt("1529478000000", "7531.0"), pt("1529564400000", "1109.0")))},
		{"weighted counts, averages and percentiles", "/v1/o/myorg/e/test/stats/?select=sum(message_count),sum(is_error),avg(total_response_time),p50(total_response_time),p95(total_response_time),p99(total_response_time),unique_users&timeRange=12/03/2018%2000:00~12/04/2018%2000:00",
			// weights 100, 10, 1 at 10, 20, 30 ms: avg 1230/111; cumulative
			// weights 100, 110, 111 reach 50% and 95%/99% at 10 and 20 ms.
			envMetrics(
				met("sum(message_count)", q("111.0")), met("sum(is_error)", q("10.0")),
				met("avg(total_response_time)", q("11.08108108108108")),
				met("p50(total_response_time)", q("10.0")), met("p95(total_response_time)", q("20.0")), met("p99(total_response_time)", q("20.0")),
				met("unique_users", q("2.0")))},
		{"weighted sizes; an unknown size is left out", "/v1/o/myorg/e/test/stats/?select=avg(request_size),sum(response_size),avg(response_size),max(response_size)&timeRange=12/03/2018%2000:00~12/04/2018%2000:00",
			// request: (100*100+200*10+300*1)/111; response: the 10-weight
			// event has no size: 100*1000+3000 over weight 101.
			envMetrics(met("avg(request_size)", q("110.8108108108108")), met("sum(response_size)", q("103000.0")),
				met("avg(response_size)", q("1019.8019801980198")), met("max(response_size)", q("3000.0")))},
		{"target and processing times", "/v1/o/myorg/e/test/stats/apiproxy?select=avg(target_response_time),max(request_processing_latency)&" + may + "&filter=(apiproxy%20eq%20'testCache')",
			// (80*12000 + 150*77 + 5*5) / 12082 = 971575/12082; processing 100-80, 200-150, 10-5.
			envDims(dim("testCache", met("avg(target_response_time)", q("80.41508028472107")), met("max(request_processing_latency)", q("50.0"))))},
		{"filter with and, or, not like and a number", "/v1/o/myorg/e/test/stats/response_status_code?select=sum(message_count)&" + may + "&filter=(target_url%20like%20'%25company%25'%20and%20response_status_code%20ge%20500)%20or%20(developer_app%20not%20like%20'%25App'%20and%20request_verb%20eq%20'GET')",
			// company 5xx: 500 x12000, 503 x77; non-*App GET: weatherapi 200 x3.
			envDims(dim("500", met("sum(message_count)", q("12000.0"))), dim("503", met("sum(message_count)", q("77.0"))), dim("200", met("sum(message_count)", q("3.0"))))},
		{"isnull on a text dimension means empty", "/v1/o/myorg/e/test/stats/?select=sum(message_count)&" + jun + "&filter=(target_url%20isnull)",
			envMetrics(met("sum(message_count)", q("8640.0")))},
		{"no data gives zero", "/v1/o/myorg/e/test/stats/?select=sum(message_count),avg(total_response_time)&timeRange=01/01/2017%2000:00~01/02/2017%2000:00",
			envMetrics(met("sum(message_count)", q("0.0")), met("avg(total_response_time)", q("0.0")))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(mux, tc.url)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s: status %d, want 200: %s", tc.url, rec.Code, rec.Body)
			}
			if got, want := environments(t, rec.Body.Bytes()), compact(tc.want); got != want {
				t.Errorf("GET %s\n got %s\nwant %s", tc.url, got, want)
			}
			var meta struct {
				MetaData MetaData `json:"metaData"`
			}
			json.Unmarshal(rec.Body.Bytes(), &meta)
			n := meta.MetaData.Notices
			if meta.MetaData.Errors == nil || len(n) < 4 || n[0] != "Source:"+e.dialect.Name() || n[1] != "Table used: events" || !strings.HasPrefix(n[3], "query time:") {
				t.Errorf("metaData = %+v, want errors [] and notices Source:%s, Table used, query served by, query time", meta.MetaData, e.dialect.Name())
			}
		})
	}
}

func TestWeightedNotice(t *testing.T) {
	st := openStore(t, fixtureEvents())
	mux := newMux(t, Config{DB: st.DB(), QuotaPerMinute: -1})
	tests := []struct {
		name     string
		url      string
		weighted bool
	}{
		{"weighted events", "/v1/o/myorg/e/test/stats/?select=sum(message_count)&timeRange=12/03/2018%2000:00~12/04/2018%2000:00", true},
		{"only weight 1", "/v1/o/myorg/e/test/stats/?select=sum(message_count)&timeRange=09/24/2018%2000:00~09/30/2018%2000:00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(mux, tc.url)
			has := strings.Contains(rec.Body.String(), NoticeWeighted)
			if has != tc.weighted {
				t.Errorf("weighted notice present = %v, want %v: %s", has, tc.weighted, rec.Body)
			}
		})
	}
}

// TestBadParameters checks that every bad parameter, including Apigee's
// metrics apimeter does not record, is a 400 that names the parameter.
func TestBadParameters(t *testing.T) {
	st := openStore(t, fixtureEvents())
	mux := newMux(t, Config{DB: st.DB(), QuotaPerMinute: -1})
	const tr = "&timeRange=05/08/2018%2000:00~05/15/2018%2000:00"
	tests := []struct {
		name, url, param, msg string
	}{
		{"no select", "/v1/o/myorg/e/test/stats?timeRange=05/08/2018%2000:00~05/15/2018%2000:00", "select", "required"},
		{"unknown metric cache_hit", "/v1/o/myorg/e/test/stats?select=sum(cache_hit)" + tr, "select", "unknown metric \"cache_hit\""},
		{"unknown metric policy_error", "/v1/o/myorg/e/test/stats?select=sum(policy_error),avg(request_size)" + tr, "select", "policy_error"},
		{"aggregate not allowed", "/v1/o/myorg/e/test/stats?select=avg(message_count)" + tr, "select", "allowed for message_count are: sum"},
		{"aggregate not allowed lists all", "/v1/o/myorg/e/test/stats?select=sum(request_processing_latency)" + tr, "select", "avg, min, max"},
		{"tps takes no function", "/v1/o/myorg/e/test/stats?select=sum(tps)" + tr, "select", "takes no aggregate"},
		{"unclosed function", "/v1/o/myorg/e/test/stats?select=sum(message_count" + tr, "select", "missing )"},
		{"no timeRange", "/v1/o/myorg/e/test/stats?select=sum(message_count)", "timeRange", "required"},
		{"24:00", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=05/08/2018%2000:00~05/08/2018%2024:00", "timeRange", "use 23:59"},
		{"no tilde", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=05/08/2018%2000:00", "timeRange", "start~end"},
		{"ISO date", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=2018-05-08T00:00~2018-05-09T00:00", "timeRange", "MM/DD/YYYY"},
		{"no such date", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=02/30/2018%2000:00~03/01/2018%2000:00", "timeRange", "no such date"},
		{"end before start", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=05/09/2018%2000:00~05/08/2018%2000:00", "timeRange", "not before"},
		{"bad timeUnit", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&timeUnit=fortnight", "timeUnit", "fortnight"},
		{"too many buckets", "/v1/o/myorg/e/test/stats?select=sum(message_count)&timeRange=01/01/2018%2000:00~12/31/2018%2000:00&timeUnit=second", "timeUnit", "intervals"},
		{"unknown dimension", "/v1/o/myorg/e/test/stats/apiproxy,nosuch?select=sum(message_count)" + tr, "dimension", "nosuch"},
		{"dimension twice", "/v1/o/myorg/e/test/stats/apiproxy,apiproxy?select=sum(message_count)" + tr, "dimension", "twice"},
		{"filter syntax", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=(apiproxy%20eq%20'x'", "filter", "missing )"},
		{"filter unknown operator", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=(apiproxy%20is%20'x')", "filter", "unknown operator"},
		{"filter unknown dimension", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=(planet%20eq%20'x')", "filter", "unknown dimension"},
		{"filter number expected", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=(response_status_code%20gt%20'high')", "filter", "whole numbers"},
		{"filter unterminated string", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=(apiproxy%20eq%20'x)", "filter", "unterminated"},
		{"bad sortby", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&sortby=sum(nothing)", "sortby", "unknown metric"},
		{"bad sort", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&sort=UP", "sort", "ASC or DESC"},
		{"bad topk", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&topk=0", "topk", "whole number"},
		{"bad limit", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&limit=ten", "limit", "whole number"},
		{"limit above Apigee's maximum", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&limit=14401", "limit", "14400"},
		{"negative offset", "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)" + tr + "&offset=-1", "offset", "whole number"},
		{"bad tsAscending", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&tsAscending=maybe", "tsAscending", "true or false"},
		{"bad tzo", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&tzo=PST", "tzo", "minutes"},
		{"tzo too far", "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&tzo=900", "tzo", "14 hours"},
		{"select twice", "/v1/o/myorg/e/test/stats?select=sum(message_count)&select=tps" + tr, "select", "once"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(mux, tc.url)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("GET %s: status %d, want 400: %s", tc.url, rec.Code, rec.Body)
			}
			var body ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("error body is not JSON: %s", rec.Body)
			}
			if body.Parameter != tc.param || !strings.HasPrefix(body.Message, tc.param+": ") || !strings.Contains(body.Message, tc.msg) {
				t.Errorf("GET %s: got parameter %q message %q; want parameter %q and a message naming it and containing %q", tc.url, body.Parameter, body.Message, tc.param, tc.msg)
			}
			if body.Code == "" || body.Contexts == nil {
				t.Errorf("error body %s lacks Apigee's code and contexts", rec.Body)
			}
		})
	}
}

// TestFilterValuesAreBound sends SQL in filter values and dimension-like
// text: it must be compared as data, never run.
func TestFilterValuesAreBound(t *testing.T) {
	st := openStore(t, fixtureEvents())
	mux := newMux(t, Config{DB: st.DB(), QuotaPerMinute: -1})
	const tr = "&timeRange=05/08/2018%2000:00~05/15/2018%2000:00"
	tests := []struct {
		name, filter, want string
	}{
		{"quote and statement", "apiproxy eq 'x'';DROP TABLE events;--'", "0.0"},
		{"or-true trick", "apiproxy eq 'x'' OR ''1''=''1'", "0.0"},
		{"comment in like", "apiproxy like '%'' --'", "0.0"},
		{"real value still matches", "apiproxy eq 'testCache'", "12082.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := "/v1/o/myorg/e/test/stats?select=sum(message_count)" + tr + "&filter=" + url.QueryEscape(tc.filter)
			rec := get(mux, u)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, rec.Code, rec.Body)
			}
			if got, want := environments(t, rec.Body.Bytes()), compact(envMetrics(met("sum(message_count)", q(tc.want)))); got != want {
				t.Errorf("filter %q: got %s, want %s", tc.filter, got, want)
			}
		})
	}
	var n int
	if err := st.DB().QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil || n != len(fixture) {
		t.Fatalf("events table after the attempts: %d rows, %v; want %d", n, err, len(fixture))
	}
}

// TestBareMetricIsFirstFunction checks what docs/api.md promises: a metric
// selected without a function means its first function, for every metric
// that has functions.
func TestBareMetricIsFirstFunction(t *testing.T) {
	st := openStore(t, fixtureEvents())
	mux := newMux(t, Config{DB: st.DB(), QuotaPerMinute: -1})
	const tr = "&timeRange=05/08/2018%2000:00~05/15/2018%2000:00&timeUnit=day"
	for _, m := range metricList {
		if len(m.aggs) == 0 {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			bare := get(mux, "/v1/o/myorg/e/test/stats/apiproxy?select="+m.name+tr)
			first := get(mux, "/v1/o/myorg/e/test/stats/apiproxy?select="+m.aggs[0]+"("+m.name+")"+tr)
			if bare.Code != http.StatusOK || first.Code != http.StatusOK {
				t.Fatalf("select=%s: %d %s; select=%s(%s): %d %s", m.name, bare.Code, bare.Body, m.aggs[0], m.name, first.Code, first.Body)
			}
			got := environments(t, bare.Body.Bytes())
			want := strings.ReplaceAll(environments(t, first.Body.Bytes()), `"name":"`+m.aggs[0]+"("+m.name+`)"`, `"name":"`+m.name+`"`)
			if got != want || !strings.Contains(got, `"name":"`+m.name+`"`) {
				t.Fatalf("select=%s answered\n%s\nwant the answer of %s(%s), named %s:\n%s", m.name, got, m.aggs[0], m.name, m.name, want)
			}
		})
	}
}
