package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDashboardSessionWithinQuotaOnDefaultServe: on a serve with default
// flags, twenty customer pages' worth of Metrics API calls made with the
// dashboard's session cookie are all answered (the Metrics API quota of 40
// a minute is the API clients'), they leave the key's own quota untouched,
// and a script sending the key itself is still refused past 40.
func TestDashboardSessionWithinQuotaOnDefaultServe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process; skipped with -short")
	}
	data := t.TempDir()
	lastLine(t, "apps", "create", "--data", data, "--org", "acme")
	key := lastLine(t, "keys", "create", "--data", data, "--org", "acme", "--scope", "read")
	c := startChild(t, data) // no --stats-quota: the default
	defer c.kill9(t)

	resp, err := http.Post(c.url+"/v1/session", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "apimeter_session" {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusOK || session == nil {
		t.Fatalf("sign in: %s, cookies %v", resp.Status, resp.Cookies())
	}
	get := func(u string, auth func(*http.Request)) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.url+u, nil)
		auth(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	withCookie := func(r *http.Request) { r.AddCookie(session) }
	withKey := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+key) }

	// The Metrics API calls of one customer page (web/src/app.js, customer).
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	rng := func(from, to time.Time) string {
		return from.Format("01/02/2006 15:04") + "~" + to.Format("01/02/2006 15:04")
	}
	stats := func(dim string, q url.Values) string {
		return "/v1/o/acme/environments/prod/stats/" + dim + "?" + q.Encode()
	}
	filter := `user_id eq 'u1'`
	page := []string{
		stats("", url.Values{"select": {"p50(total_response_time),p95(total_response_time),p99(total_response_time)"}, "timeRange": {rng(month, month.AddDate(0, 1, 0))}, "filter": {filter}}),
		stats("route", url.Values{"select": {"sum(message_count),sum(is_error),p95(total_response_time)"}, "timeRange": {rng(month, month.AddDate(0, 1, 0))}, "filter": {filter}, "limit": {"100"}}),
		stats("api_key", url.Values{"select": {"sum(message_count)"}, "timeRange": {rng(month, month.AddDate(0, 1, 0))}, "filter": {filter}, "limit": {"100"}}),
		stats("", url.Values{"select": {"sum(message_count)"}, "timeRange": {rng(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), now.Add(time.Minute))}, "filter": {filter}, "timeUnit": {"month"}, "tsAscending": {"true"}}),
		stats("", url.Values{"select": {"sum(message_count)"}, "timeRange": {rng(month, month.AddDate(0, 1, 0))}, "filter": {filter}, "timeUnit": {"day"}, "tsAscending": {"true"}}),
	}
	for i := range 20 {
		for _, u := range page {
			if code, body := get(u, withCookie); code != http.StatusOK {
				t.Fatalf("customer page %d, signed in: %s answered %d %s; want 200", i+1, u, code, body)
			}
		}
	}
	// The browsing spent none of the key's quota ...
	if code, body := get(page[0], withKey); code != http.StatusOK {
		t.Fatalf("the key after 100 dashboard calls: %d %s; want 200", code, body)
	}
	// ... and a script with the key is still held to 40 a minute (81 calls
	// cross at most one minute boundary).
	refused := false
	for range 81 {
		if code, body := get(page[0], withKey); code == http.StatusTooManyRequests {
			refused = strings.Contains(body, "QuotaExceeded")
			break
		}
	}
	if !refused {
		t.Fatal("81 calls with the key in a row: none refused with 429 QuotaExceeded; want the quota of 40 a minute kept for API clients")
	}
}
