package stats

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestSmoke(t *testing.T) {
	st := openStore(t, fixtureEvents())
	h := NewHandler(Config{DB: st.DB()})
	mux := http.NewServeMux()
	h.Register(mux)
	for _, u := range []string{
		"/v1/o/myorg/e/test/stats/?select=sum(message_count)&timeRange=03/01/2018%2000:00~03/31/2018%2023:59",
		"/v1/o/myorg/e/test/stats/target_url?select=sum(is_error)&timeRange=05/08/2018%2000:00~05/15/2018%2000:00&timeUnit=week&sortby=sum(is_error)&topk=1",
		"/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count),p50(total_response_time),avg(total_response_time),tps&timeRange=12/03/2018%2000:00~12/04/2018%2000:00",
		"/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count),p50(total_response_time)&timeRange=05/08/2018%2000:00~05/15/2018%2000:00&timeUnit=day&sortby=p95(total_response_time)",
	} {
		q, _ := url.Parse(u)
		p, err := Parse("myorg", "test", "", q.Query())
		_ = p
		_ = err
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
		var v any
		json.Unmarshal(rec.Body.Bytes(), &v)
		t.Logf("%s\n%d %s", u, rec.Code, rec.Body.String())
	}
}
