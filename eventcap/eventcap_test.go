package eventcap_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
)

// TestTruncatedEventPassesCheck: whatever Truncate leaves passes Check
// (the collector would take it), is valid UTF-8 where it was, and keeps
// the sender's metadata beside the mark.
func TestTruncatedEventPassesCheck(t *testing.T) {
	lim := eventcap.Limits{MaxHeaders: 3, MaxHeaderValueBytes: 5, MaxURIBytes: 7, MaxMetadataBytes: 120}
	for _, c := range []struct {
		name    string
		e       apimeter.Event
		changed bool
		wantCut eventcap.Cuts
		keep    string
	}{
		{"within caps", apimeter.Event{URI: "/a", Metadata: json.RawMessage(`{"plan":"pro"}`)}, false, eventcap.Cuts{}, "plan"},
		{"uri cut inside a character", apimeter.Event{URI: "/ééééé", Metadata: json.RawMessage(`{"plan":"pro"}`)}, true, eventcap.Cuts{URIBytes: 11}, "plan"},
		{"too many headers", apimeter.Event{URI: "/", RequestHeaders: apimeter.Headers{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}, {Name: "c", Value: "3"}, {Name: "d", Value: "4"}}}, true, eventcap.Cuts{Headers: 1}, ""},
		{"long header value", apimeter.Event{URI: "/", ResponseHeaders: apimeter.Headers{{Name: "a", Value: "€€€€"}}}, true, eventcap.Cuts{HeaderValues: 1}, ""},
		{"metadata over", apimeter.Event{URI: "/", Metadata: json.RawMessage(`{"x":"` + strings.Repeat("y", 150) + `"}`)}, true, eventcap.Cuts{MetadataBytes: 158}, ""},
		{"cut after the capture marked an outcome", apimeter.Event{URI: "/ééééé", Metadata: json.RawMessage(`{"apimeter":{"outcome":"aborted","bytes_sent":5,"cut":{"headers":2}}}`)},
			true, eventcap.Cuts{Headers: 2, URIBytes: 11}, "apimeter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := c.e
			if got := lim.Truncate(&e); got != c.changed {
				t.Fatalf("Truncate = %v, want %v", got, c.changed)
			}
			if err := lim.Check(&e, -1); err != nil {
				t.Errorf("after Truncate, Check: %v", err)
			}
			if !utf8.ValidString(e.URI) {
				t.Errorf("uri %q is not valid UTF-8", e.URI)
			}
			for _, h := range append(e.RequestHeaders, e.ResponseHeaders...) {
				if !utf8.ValidString(h.Value) {
					t.Errorf("header %s %q is not valid UTF-8", h.Name, h.Value)
				}
			}
			var md map[string]any
			if len(e.Metadata) > 0 {
				if err := json.Unmarshal(e.Metadata, &md); err != nil {
					t.Fatalf("metadata %s: %v", e.Metadata, err)
				}
			}
			m, marked := eventcap.Read(e.Metadata)
			if marked != c.changed {
				t.Errorf("metadata %s: marked %v, want %v", e.Metadata, marked, c.changed)
			}
			var got eventcap.Cuts
			if m.Cut != nil {
				got = *m.Cut
			}
			if got != c.wantCut {
				t.Errorf("metadata %s: cut %+v, want %+v", e.Metadata, got, c.wantCut)
			}
			if c.name == "cut after the capture marked an outcome" && (m.Outcome != eventcap.OutcomeAborted || m.BytesSent == nil || *m.BytesSent != 5) {
				t.Errorf("metadata %s: the capture's outcome was not kept beside the cut", e.Metadata)
			}
			if c.keep != "" && md[c.keep] == nil {
				t.Errorf("metadata %s lost %q", e.Metadata, c.keep)
			}
		})
	}
}
