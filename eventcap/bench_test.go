package eventcap_test

import (
	"encoding/json"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/eventcap"
)

// BenchmarkTruncateWithinCaps is what Ingest pays per event that is within
// the caps (nearly all): one pass over the URI, 24 headers and metadata.
// The floor is Check, the collector's scan of the same fields.
func BenchmarkTruncateWithinCaps(b *testing.B) {
	e := apimeter.Event{URI: "https://api.example.com/v1/accounts/123/messages?x=1", Path: "/v1/accounts/123/messages",
		Metadata: json.RawMessage(`{"plan":"pro","region":"eu"}`)}
	for i := range 12 {
		e.RequestHeaders = append(e.RequestHeaders, apimeter.Header{Name: "X-Req-" + string(rune('a'+i)), Value: "value of a header"})
		e.ResponseHeaders = append(e.ResponseHeaders, apimeter.Header{Name: "X-Resp-" + string(rune('a'+i)), Value: "value of a header"})
	}
	lim := eventcap.Default()
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if lim.Check(&e, -1) != nil {
				b.Fatal("over a cap")
			}
		}
	})
	b.Run("truncate", func(b *testing.B) {
		for b.Loop() {
			if lim.Truncate(&e) {
				b.Fatal("changed")
			}
		}
	})
}
