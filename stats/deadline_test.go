package stats

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/server"
)

// longURIEvents are n calls of 2026-01-05 with URIs of about 60
// characters, on which a like pattern of many "%_" pairs backtracks.
func longURIEvents(n int) []apimeter.Event {
	base := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	out := make([]apimeter.Event, n)
	for i := range out {
		path := fmt.Sprintf("/v1/accounts/%08d/messages/abcdefghijklmnopqrstuvwxyz", i)
		ts := base.Add(time.Duration(i) * time.Second)
		out[i] = apimeter.Event{ID: "l" + strconv.Itoa(i), Org: "myorg", Env: "test", APIName: "api", Method: "GET",
			URI: "http://h" + path, Path: path, Route: path, RequestTime: ts, ResponseTime: ts, Status: 200,
			LatencyMs: 1, RequestSize: -1, ResponseSize: -1, Weight: 1}
	}
	return out
}

const longURIRange = "&timeRange=" + "01/05/2026%2000:00~01/06/2026%2000:00"

// TestLikeWithManyWildcardsAnsweredWhileOthersAnswer: a like pattern of
// 36 "%_" pairs (the issue's, which never ended on DuckDB) is refused
// with a 400 naming the limit; one of 16 pairs, within the limit (which
// also never ended on DuckDB, its LIKE backtracking exponentially) is
// answered, and correctly, while another query answers beside it. The
// 60 s guard only turns a hang into a failure.
func TestLikeWithManyWildcardsAnsweredWhileOthersAnswer(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		events := longURIEvents(2000)
		db := e.open(t, events)
		mux := newMux(t, Config{DB: db, Dialect: e.dialect, QuotaPerMinute: -1})
		count := func(filter string) string {
			return "/v1/o/myorg/e/test/stats?select=sum(message_count)" + longURIRange + "&filter=" + url.QueryEscape(filter)
		}

		rec := get(mux, count("(request_uri like '"+strings.Repeat("%_", 36)+"')"))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "at most 32") || !strings.Contains(rec.Body.String(), `"parameter":"filter"`) {
			t.Fatalf("36 %%_ pairs: %d %s, want 400 naming the limit of 32 wildcards", rec.Code, rec.Body)
		}

		type answer struct {
			code int
			body string
		}
		heavy := make(chan answer, 1)
		go func() {
			// 16 pairs then a character no URI ends with: nothing matches,
			// after trying every way the pairs could.
			rec := get(mux, count("(request_uri like '"+strings.Repeat("%_", 16)+"#')"))
			heavy <- answer{rec.Code, rec.Body.String()}
		}()
		// Another query meanwhile: the 16 pairs plus "z" match every URI.
		rec = get(mux, count("(request_uri like '"+strings.Repeat("%_", 16)+"z')"))
		if rec.Code != http.StatusOK {
			t.Fatalf("query beside it: %d %s", rec.Code, rec.Body)
		}
		if got, want := environments(t, rec.Body.Bytes()), compact(envMetrics(met("sum(message_count)", q("2000.0")))); got != want {
			t.Errorf("query beside it: got %s, want %s", got, want)
		}
		select {
		case a := <-heavy:
			if a.code != http.StatusOK {
				t.Fatalf("16 %%_ pairs: %d %s, want 200", a.code, a.body)
			}
			if got, want := environments(t, []byte(a.body)), compact(envMetrics(met("sum(message_count)", q("0.0")))); got != want {
				t.Errorf("16 %%_ pairs: got %s, want %s", got, want)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("16 %_ pairs: no answer after 60 s")
		}
	})
}

// TestQueryTimeoutAnsweredAsDocumented: a query past the query timeout
// is answered 503 analytics.service.QueryTimeout naming the timeout (the
// timeout is set to 1 ns, so the outcome does not hang on speed).
func TestQueryTimeoutAnsweredAsDocumented(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		db := e.open(t, longURIEvents(10))
		mux := newMux(t, Config{DB: db, Dialect: e.dialect, QuotaPerMinute: -1, Queries: server.NewQueries(time.Nanosecond)})
		rec := get(mux, "/v1/o/myorg/e/test/stats/apiproxy?select=sum(message_count)"+longURIRange)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "analytics.service.QueryTimeout") || !strings.Contains(rec.Body.String(), "1ns") {
			t.Fatalf("GET: %d %s, want 503 analytics.service.QueryTimeout naming the 1ns timeout", rec.Code, rec.Body)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Error("Metrics API answer without X-Content-Type-Options: nosniff")
		}
	})
}

// TestDeadlineStopsRunningQueryInsideEngine runs a query of hours (a cross
// join of 10^16 rows, or 10^13 hashes) under a 300 ms query timeout, then another under
// the shutdown: each engine stops it (DuckDB interrupts it, ClickHouse
// cancels it) and the error says which. A hang fails by the test binary's
// timeout; nothing here measures time.
func TestDeadlineStopsRunningQueryInsideEngine(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		db := e.open(t, nil)
		long := "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b"
		if e.name == "ClickHouse" {
			long = "SELECT sum(cityHash64(number)) FROM numbers(10000000000000)"
		}
		run := func(q *server.Queries) error {
			ctx, cancel := q.Context(context.Background())
			defer cancel()
			var v any
			err := db.QueryRowContext(ctx, long).Scan(&v)
			if err == nil {
				t.Fatalf("the query of hours answered %v", v)
			}
			return q.Err(ctx, err)
		}
		q := server.NewQueries(300 * time.Millisecond)
		var ae *server.APIError
		if err := run(q); !errors.As(err, &ae) || ae.Code != "query_timeout" {
			t.Errorf("past the timeout: %v, want query_timeout", err)
		}
		q = server.NewQueries(time.Hour)
		stop := time.AfterFunc(300*time.Millisecond, q.Stop)
		defer stop.Stop()
		if err := run(q); !errors.As(err, &ae) || ae.Code != "shutting_down" {
			t.Errorf("at shutdown: %v, want shutting_down", err)
		}
	})
}
