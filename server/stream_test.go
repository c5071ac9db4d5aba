package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/server"
)

func streamEvent(id, user string, status int) string {
	return fmt.Sprintf(`{"event_id":%q,"request":{"time":"2026-11-24T10:00:00.000Z","uri":"https://api.acme.example/accounts/abcdef/message","verb":"GET","headers":{"Authorization":"Bearer secret-token"}},"response":{"status":%d},"user_id":%q,"api_name":"accounts","route":"/accounts/{id}/message"}`, id, status, user)
}

// The stream delivers newly stored events that pass its filter, scrubbed,
// in the events API's shape, and nothing else.
func TestStreamOverHTTP(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/v1/o/acme/environments/prod/events/stream?user_id=513&errors=true&api_name=accounts", nil)
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream answered %d %q, want 200 text/event-stream", resp.StatusCode, ct)
	}
	got := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				got <- d
			}
		}
		close(got)
	}()
	batch := "[" + strings.Join([]string{
		streamEvent("ok-513", "513", 200),
		streamEvent("err-1234", "1234", 500),
		streamEvent("err-513", "513", 503),
	}, ",") + "]"
	if code, out := e.post("/v1/events/batch", []byte(batch)); code != 200 {
		t.Fatalf("batch: %d %v", code, out)
	}
	// A duplicate is not newly stored: it must not be streamed again.
	e.post("/v1/events/batch", []byte(batch))
	if code, out := e.post("/v1/events/batch", []byte("["+streamEvent("err-513-b", "513", 404)+"]")); code != 200 {
		t.Fatalf("batch: %d %v", code, out)
	}
	var ids []string
	for len(ids) < 2 {
		select {
		case d, ok := <-got:
			if !ok {
				t.Fatalf("stream ended after %v", ids)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("data line is not JSON: %q", d)
			}
			ids = append(ids, m["event_id"].(string))
			if h := fmt.Sprint(get(m, "request.headers.Authorization")); !strings.HasPrefix(h, "fp_") {
				t.Errorf("streamed Authorization = %q, want a fingerprint", h)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("waited 10 s for streamed events; got %v", ids)
		}
	}
	if want := "err-513,err-513-b"; strings.Join(ids, ",") != want {
		t.Errorf("streamed %v, want %s (user 513, errors only, each once)", ids, want)
	}
}

func TestStreamBadParameters(t *testing.T) {
	e := newEnv(t, server.Config{})
	for _, q := range []string{"status=abc", "status=42", "errors=maybe"} {
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+"/v1/o/acme/environments/prod/events/stream?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 400 || get(out, "error.code") != "invalid_parameter" {
			t.Errorf("%s: %d %v, want 400 invalid_parameter", q, resp.StatusCode, out)
		}
	}
}

func TestEventsFilterByAPIAndRoute(t *testing.T) {
	e := newEnv(t, server.Config{})
	other := `{"event_id":"orders-1","request":{"time":"2026-11-24T10:00:01.000Z","uri":"https://api.acme.example/orders/7","verb":"GET"},"response":{"status":200},"api_name":"orders","route":"/orders/{id}"}`
	if code, out := e.post("/v1/events/batch", []byte("["+streamEvent("acc-1", "513", 200)+","+other+"]")); code != 200 {
		t.Fatalf("batch: %d %v", code, out)
	}
	for _, tc := range []struct{ query, want string }{
		{"api_name=orders", "orders-1"},
		{"api_name=accounts", "acc-1"},
		{"route=%2Forders%2F%7Bid%7D", "orders-1"},
		{"route=%2Faccounts%2F%7Bid%7D%2Fmessage&api_name=accounts", "acc-1"},
		{"route=%2Fnone", ""},
	} {
		var ids []string
		for _, ev := range e.events(tc.query) {
			ids = append(ids, ev["event_id"].(string))
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("events?%s = %q, want %q", tc.query, got, tc.want)
		}
	}
}

// A stream outlives the server's read and write timeouts, and still
// delivers after them.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	e := newEnv(t, server.Config{Stream: server.StreamConfig{Heartbeat: 100 * time.Millisecond, WriteTimeout: time.Second}})
	e.http.Config.ReadTimeout, e.http.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/v1/o/acme/environments/prod/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+e.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
	}()
	time.Sleep(time.Second) // three times the server's timeouts
	if code, out := e.post("/v1/events/batch", []byte("["+streamEvent("late-1", "513", 200)+"]")); code != 200 {
		t.Fatalf("batch: %d %v", code, out)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-got:
			if !ok {
				t.Fatal("the stream was cut before the event came")
			}
			if strings.Contains(line, `"event_id":"late-1"`) {
				return
			}
		case <-deadline:
			t.Fatal("no event 10 s after it was stored")
		}
	}
}
