package kafka_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/eventcap"
)

// TestConsumerCapsOversizedCallAndEventsStillRead feeds a call whose
// request carries 1,001 headers (one more than any entry point may store)
// and a 20 KB header value, beside an ordinary call: both are stored, the
// odd one cut down to the collector's caps and marked, and GET .../events
// answers 200 with both (the odd row made it answer 500 before).
func TestConsumerCapsOversizedCallAndEventsStillRead(t *testing.T) {
	c := newCluster(t)
	s := newStack(t)
	f := newFeeder(t, c)
	cons, _ := startConsumer(t, c, s, "caps", nil)

	var req strings.Builder
	req.WriteString("request:0d0d0d0d-0000-4000-8000-000000000001\nGET /odd HTTP/1.1\r\nHost: api.example\r\n")
	for i := range 1001 {
		fmt.Fprintf(&req, "X-H%d: v\r\n", i)
	}
	req.WriteString("X-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n")
	now := time.Now()
	f.write(t,
		reqRecord([]byte(req.String()), now),
		respRecord([]byte("response:0d0d0d0d-0000-4000-8000-000000000001\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), now),
		reqRecord(vector(t, "01-get-request.txt"), now),
		respRecord(vector(t, "01-get-response.txt"), now),
	)
	waitFor(t, "two calls stored", 30*time.Second, func() (bool, string) {
		st := cons.Stats()
		return st.Stored == 2, fmt.Sprintf("%+v", st)
	})
	if got := cons.Stats().Truncated; got != 1 {
		t.Errorf("Truncated = %d, want 1", got)
	}

	hr, _ := http.NewRequest(http.MethodGet, s.url+"/v1/o/acme/environments/prod/events", nil)
	hr.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET events: %s %.300s, want 200", resp.Status, body)
	}
	var out struct {
		Events []struct {
			Request struct {
				URI     string            `json:"uri"`
				Headers map[string]string `json:"headers"`
			} `json:"request"`
			Metadata map[string]any `json:"metadata"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Events) != 2 {
		t.Fatalf("GET events: %d events, want 2", len(out.Events))
	}
	found := false
	for _, e := range out.Events {
		if !strings.HasSuffix(e.Request.URI, "/odd") {
			continue
		}
		found = true
		if n := len(e.Request.Headers); n > 1000 {
			t.Errorf("odd call stored with %d request headers, want at most 1000", n)
		}
		if e.Metadata[eventcap.MarkKey] == nil {
			t.Errorf("odd call not marked: metadata %v, want %s", e.Metadata, eventcap.MarkKey)
		}
	}
	if !found {
		t.Errorf("the odd call is missing from %s", body)
	}
}
