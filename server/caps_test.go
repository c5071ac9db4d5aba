package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/detail"
)

func oddEvent(id string, headers int) apimeter.Event {
	e := apimeter.Event{ID: id, Org: "acme", Env: "prod", Method: "GET", URI: "/" + strings.Repeat("u", 20<<10), Path: "/u",
		RequestTime: time.Now().UTC(), Status: 200, Weight: 1, RequestSize: -1, ResponseSize: -1}
	e.ResponseTime = e.RequestTime
	for i := range headers {
		e.RequestHeaders = append(e.RequestHeaders, apimeter.Header{Name: fmt.Sprintf("X-H%d", i), Value: "v"})
	}
	e.ResponseHeaders = apimeter.Headers{{Name: "X-Big", Value: strings.Repeat("b", 20<<10)}}
	return e
}

// TestIngestCutsEventsToCollectorCapsAndMarks stores, through the Ingest
// path every entry point other than the collector uses (gateway, Kafka,
// OTLP, CloudEvents), a call with 1,001 headers, a 20 KB URI and a 20 KB
// header value: it is stored cut to the collector's caps and marked, and
// GET .../events serves it.
func TestIngestCutsEventsToCollectorCapsAndMarks(t *testing.T) {
	e := newEnv(t, server.Config{})
	res, err := e.srv.Ingest(context.Background(), []apimeter.Event{oddEvent("odd-1", 1001)})
	if err != nil || len(res.Stored) != 1 {
		t.Fatalf("Ingest: %+v, %v; want one stored", res, err)
	}
	evs := e.eventsOK(t, "")
	if len(evs) != 1 {
		t.Fatalf("GET events: %d events, want 1", len(evs))
	}
	req := evs[0]["request"].(map[string]any)
	if n := len(req["headers"].(map[string]any)); n != eventcap.DefaultMaxHeaders {
		t.Errorf("stored %d request headers, want %d", n, eventcap.DefaultMaxHeaders)
	}
	if n := len(req["uri"].(string)); n > eventcap.DefaultMaxURIBytes {
		t.Errorf("stored uri of %d bytes, want at most %d", n, eventcap.DefaultMaxURIBytes)
	}
	md, _ := json.Marshal(evs[0]["metadata"])
	m, ok := eventcap.Read(md)
	if want := (eventcap.Cuts{Headers: 1, HeaderValues: 1, URIBytes: 1 + 20<<10}); !ok || m.Cut == nil || *m.Cut != want {
		t.Errorf("metadata %s: want %s.cut %+v", md, eventcap.MarkKey, want)
	}
}

// TestEventsReadServesOversizedStoredRow writes a row no entry point may
// store any more (1,001 headers, as the Kafka consumer once did) straight
// into the store: GET .../events answers 200 with it, marked, instead of
// a 500 for every page holding it.
func TestEventsReadServesOversizedStoredRow(t *testing.T) {
	e := newEnv(t, server.Config{})
	odd := oddEvent("odd-2", 1001)
	if _, err := e.store.Append(context.Background(), []apimeter.Event{odd}); err != nil {
		t.Fatal(err)
	}
	evs := e.eventsOK(t, "")
	if len(evs) != 1 {
		t.Fatalf("GET events: %d events, want 1", len(evs))
	}
	md, _ := evs[0]["metadata"].(map[string]any)
	if md[detail.UnreadableKey] == nil {
		t.Errorf("metadata %v, want %s naming what was left out", md, detail.UnreadableKey)
	}
}

// eventsOK GETs the events of acme/prod and fails unless the answer is 200.
func (e *env) eventsOK(t *testing.T, query string) []map[string]any {
	t.Helper()
	resp, err := e.read("/v1/o/acme/environments/prod/events?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET events: %s %.300s, want 200", resp.Status, b)
	}
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}
