package alerts_test

import (
	"encoding/json"
	"testing"

	"github.com/apimeter/apimeter/alerts"
)

// FuzzRuleJSON: a rule body sent to the API is decoded and checked
// without panicking; a rule that passes Check passes it again unchanged
// (Check is idempotent: what is stored is what was checked).
func FuzzRuleJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"errs","org":"acme","env":"prod","metric":"error_rate","per":"company","window":"10m","threshold":0.05,"min_volume":50,"for":"2m"}`,
		`{"id":"slow","org":"acme","env":"prod","metric":"p95(total_response_time)","route":"/checkout","window":"5m","threshold":800,"filter":"response_status_code ge 500 or request_verb eq 'DELETE'"}`,
		`{"id":"silent","org":"acme","env":"prod","kind":"absence","api":"payments","window":"15m","status":200}`,
		`{"id":"q","org":"acme","env":"prod","kind":"quota","per":"user","limit":1000,"percent":80,"channels":[{"type":"slack","url":"https://hooks.slack.com/x"}]}`,
		`{"id":"w","org":"a","env":"b","metric":"sum(message_count)","window":"1s","channels":[{"type":"webhook","url":"http://x","secret":"0123456789abcdef"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r alerts.Rule
		if json.Unmarshal(b, &r) != nil {
			return
		}
		if r.Check() != nil {
			return
		}
		again := r
		if err := again.Check(); err != nil {
			t.Fatalf("a checked rule fails a second check: %v\n%s", err, b)
		}
	})
}
