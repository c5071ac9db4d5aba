package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/moesif"
	"github.com/apimeter/apimeter/server"
)

// TestEventsDatedBeyondClockSkewAreRefused: an event dated years ahead is
// refused with a 400 naming the event and request.time, and nothing of its
// batch is stored; one within the skew is accepted.
func TestEventsDatedBeyondClockSkewAreRefused(t *testing.T) {
	ev := func(at time.Time) moesif.Event {
		return moesif.Event{
			Request:  moesif.Request{Time: at.UTC().Format(time.RFC3339Nano), URI: "/orders", Verb: "GET"},
			Response: &moesif.Response{Status: 200},
		}
	}
	now := time.Now()
	e := newEnv(t, server.Config{MaxClockSkew: time.Hour})
	code, out := e.post("/v1/events/batch", marshal(t, []moesif.Event{ev(now), ev(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))}))
	er, _ := out["error"].(map[string]any)
	if msg, _ := er["message"].(string); code != 400 || er["code"] != "invalid_event" || er["field"] != "request.time" || er["index"] != float64(1) ||
		!strings.Contains(msg, "2031-01-01") {
		t.Fatalf("an event dated 2031: %d %v", code, out)
	}
	if rows, _ := e.counts(); rows != 0 {
		t.Errorf("a refused batch stored %d rows", rows)
	}
	if code, out := e.post("/v1/events", marshal(t, ev(now.Add(30*time.Minute)))); code != 200 {
		t.Errorf("an event within the skew: %d %v", code, out)
	}
	if code, out := e.post("/v1/events", marshal(t, ev(now.Add(2*time.Hour)))); code != 400 || out["error"].(map[string]any)["field"] != "request.time" {
		t.Errorf("a single event past the skew: %d %v", code, out)
	}
}
