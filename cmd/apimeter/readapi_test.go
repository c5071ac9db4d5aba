package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/auth"
	"github.com/apimeter/apimeter/demo"
	"github.com/apimeter/apimeter/instance"
)

// startForTest starts an in-process server on a loopback port with a fresh
// data directory, an application id for org acme, env prod, and a read key
// of acme.
func startForTest(t *testing.T, bodyCap int) (*instance.Instance, string, string) {
	t.Helper()
	dir := t.TempDir()
	f := instance.Config{Listen: "127.0.0.1:0", Data: filepath.Join(dir, "data"), BodyCap: bodyCap, LogLevel: 8}
	in, err := instance.Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	a, err := apps.Create(f.Data, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := auth.Create(f.Data, auth.Spec{Org: "acme", Scope: auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	return in, a.ID, key
}

func event(id string, status int, reqBody, respBody string) string {
	return fmt.Sprintf(`{"event_id":%q,"request":{"time":"2026-11-24T10:00:00.000Z","uri":"https://api.acme.example/accounts/abcdef/message","verb":"POST","body":%s},
		"response":{"time":"2026-11-24T10:00:00.040Z","status":%d,"body":%s},"user_id":"513"}`, id, reqBody, status, respBody)
}

// TestOneDefinitionOfError checks that a call counts as an error in the
// same cases in the Metrics API, usage and the event stream's filters:
// status >= 400, or no response (status 0).
func TestOneDefinitionOfError(t *testing.T) {
	in, app, key := startForTest(t, 1024)
	batch := "[" + strings.Join([]string{
		event("ok", 200, "{}", "{}"), event("redirect", 302, "{}", "{}"), event("not-found", 404, "{}", "{}"),
		event("failed", 503, "{}", "{}"), event("no-response", 0, "{}", "null"),
	}, ",") + "]"
	if res, err := demo.PostRaw(context.Background(), http.DefaultClient, in.URL, app, []byte(batch)); err != nil || res.Stored != 5 {
		t.Fatalf("post: %+v %v", res, err)
	}
	const errors = 3 // 404, 503 and no response

	var st struct {
		Environments []struct {
			Metrics []struct {
				Name   string   `json:"name"`
				Values []string `json:"values"`
			} `json:"metrics"`
		} `json:"environments"`
	}
	getJSON(t, key, in.URL+"/v1/o/acme/environments/prod/stats?"+url.Values{
		"select": {"sum(is_error),sum(error_count)"}, "timeRange": {"11/01/2026 00:00~12/01/2026 00:00"}}.Encode(), &st)
	for _, m := range st.Environments[0].Metrics {
		if v, _ := strconv.ParseFloat(m.Values[0], 64); v != errors {
			t.Errorf("Metrics API %s = %s, want %d", m.Name, m.Values[0], errors)
		}
	}

	var usage struct {
		Total struct {
			Calls, Errors int64
		} `json:"total"`
	}
	getJSON(t, key, in.URL+"/v1/usage?org=acme&env=prod&period=2026-11&group=user_id", &usage)
	if usage.Total.Calls != 5 || usage.Total.Errors != errors {
		t.Errorf("usage: %d calls, %d errors; want 5 and %d", usage.Total.Calls, usage.Total.Errors, errors)
	}

	for _, c := range []struct {
		query string
		want  []string
	}{
		{"errors=true", []string{"failed", "no-response", "not-found"}},
		{"errors=false", []string{"failed", "no-response", "not-found", "ok", "redirect"}},
		{"status=0", []string{"no-response"}},
		{"status=404", []string{"not-found"}},
		{"errors=true&status=0", []string{"no-response"}},
	} {
		var evs struct {
			Events []struct {
				ID string `json:"event_id"`
			} `json:"events"`
		}
		getJSON(t, key, in.URL+"/v1/o/acme/environments/prod/events?"+c.query, &evs)
		var got []string
		for _, e := range evs.Events {
			got = append(got, e.ID)
		}
		slices.Sort(got)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("events?%s: %v, want %v", c.query, got, c.want)
		}
	}
	for _, bad := range []string{"status=-1", "status=1000", "status=abc"} {
		req, _ := http.NewRequest(http.MethodGet, in.URL+"/v1/o/acme/environments/prod/events?"+bad, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("events?%s: %d, want 400", bad, resp.StatusCode)
		}
	}
}

// TestTruncationVisible checks that the event stream says which bodies
// were cut at --body-cap, and that a cut JSON body, now a string, says so.
func TestTruncationVisible(t *testing.T) {
	in, app, key := startForTest(t, 32)
	long := `{"message":"` + strings.Repeat("x", 100) + `"}`
	batch := "[" + event("cut", 200, long, `{"ok":true}`) + "]"
	if res, err := demo.PostRaw(context.Background(), http.DefaultClient, in.URL, app, []byte(batch)); err != nil || res.Stored != 1 {
		t.Fatalf("post: %+v %v", res, err)
	}
	var evs struct {
		Events []struct {
			Request struct {
				Body          json.RawMessage `json:"body"`
				BodyTruncated *bool           `json:"body_truncated"`
			} `json:"request"`
			Response struct {
				Body          json.RawMessage `json:"body"`
				BodyTruncated *bool           `json:"body_truncated"`
			} `json:"response"`
		} `json:"events"`
	}
	getJSON(t, key, in.URL+"/v1/o/acme/environments/prod/events", &evs)
	if len(evs.Events) != 1 {
		t.Fatalf("%d events, want 1", len(evs.Events))
	}
	req, resp := evs.Events[0].Request, evs.Events[0].Response
	var text string
	if err := json.Unmarshal(req.Body, &text); err != nil || text != long[:32] {
		t.Errorf("request body %s, want the first 32 bytes as a string, %q", req.Body, long[:32])
	}
	if req.BodyTruncated == nil || !*req.BodyTruncated {
		t.Errorf("request body_truncated = %v, want true", req.BodyTruncated)
	}
	if string(resp.Body) != `{"ok":true}` || resp.BodyTruncated != nil {
		t.Errorf("response body %s, body_truncated %v; want the JSON inline and no body_truncated", resp.Body, resp.BodyTruncated)
	}
}
