package capture

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/moesif"
)

func wireEvent() apimeter.Event {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 123456000, time.UTC)
	return apimeter.Event{
		ID: "tx-1", Direction: apimeter.Incoming, APIName: "accounts", Route: "/accounts/{id}/message",
		RequestTime: t0, ResponseTime: t0.Add(1500 * time.Microsecond),
		Method: "POST", URI: "http://api.example.com/accounts/1/message?x=1", ClientIP: "10.0.0.1",
		RequestHeaders:  apimeter.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "User-Agent", Value: "t/1"}},
		RequestBody:     apimeter.Body{Text: `{"a":[1,2,{"b":"c"}]}`},
		Status:          201,
		ResponseHeaders: apimeter.Headers{{Name: "Content-Length", Value: "12"}},
		ResponseBody:    apimeter.Body{Text: "plain \"text\"\n\t\x01 é \u2028"},
		UserID:          "513", CompanyID: "abcdef", SessionToken: "fp_0011223344556677", APIKeyID: "fp_8899",
		Tags: "t", Metadata: json.RawMessage(`{"plan":"gold"}`), Weight: 4,
	}
}

func TestWireRoundTrip(t *testing.T) {
	trunc := wireEvent()
	trunc.RequestBody = apimeter.Body{Text: `{"cut":`, Truncated: true}
	bin := wireEvent()
	bin.ResponseBody = apimeter.Body{Text: "AAEC/w==", Base64: true}
	empty := wireEvent()
	empty.RequestBody, empty.ResponseBody, empty.Metadata, empty.Weight = apimeter.Body{}, apimeter.Body{}, nil, 1
	badUTF8 := wireEvent()
	badUTF8.UserID = "a\xffb"
	cases := []struct {
		name string
		ev   apimeter.Event
		want func(e *apimeter.Event)
	}{
		{"full", wireEvent(), nil},
		{"truncated JSON body goes as text", trunc, nil},
		{"base64 body", bin, func(e *apimeter.Event) { e.ResponseBody = apimeter.Body{Text: "AAEC/w==", Base64: true} }},
		{"no bodies, weight 1", empty, nil},
		{"invalid UTF-8 replaced", badUTF8, func(e *apimeter.Event) { e.UserID = "a\ufffdb" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := appendBatch(nil, []apimeter.Event{tc.ev})
			var ms []moesif.Event
			if err := json.Unmarshal(b, &ms); err != nil {
				t.Fatalf("not valid JSON: %v\n%s", err, b)
			}
			got, err := ms[0].ToEvent("o", "e", 0)
			if err != nil {
				t.Fatalf("collector rejects it: %v\n%s", err, b)
			}
			want := tc.ev
			if tc.want != nil {
				tc.want(&want)
			}
			want.Org, want.Env = "o", "e"
			want.RequestBody.Truncated = false // the schema has no flag for it
			want.LatencyMs = 1.5
			want.UserAgent = want.RequestHeaders.Get("User-Agent")
			want.Path, want.Query = "/accounts/1/message", "x=1"
			want.RequestSize = int64(len(want.RequestBody.Text))
			if want.RequestBody.Text == "" {
				want.RequestSize = -1
			}
			want.ResponseSize = 12
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				t.Fatalf("round trip changed the event:\n got %s\nwant %s\nwire %s", gj, wj, b)
			}
		})
	}
}

func TestAppendWireTimeMatchesAppendFormat(t *testing.T) {
	cases := []struct {
		name string
		t    time.Time
	}{
		{"unix epoch", time.Unix(0, 0)},
		{"before the epoch", time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC)},
		{"leap day", time.Date(2024, 2, 29, 12, 0, 0, 1_000, time.UTC)},
		{"end of a century year not leap", time.Date(2100, 2, 28, 23, 59, 59, 0, time.UTC)},
		{"400-year leap", time.Date(2000, 2, 29, 1, 2, 3, 456_789_000, time.UTC)},
		{"first year", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"last year", time.Date(9999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
		{"out of range year falls back", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"negative year falls back", time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"other zone", time.Date(2026, 11, 24, 1, 30, 0, 5_000, time.FixedZone("x", -7*3600))},
		{"now", time.Now()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := string(appendWireTime(nil, tc.t)), tc.t.UTC().Format(wireTime); got != want {
				t.Fatalf("appendWireTime = %s, want %s", got, want)
			}
		})
	}
	// And a spread of instants over the whole range.
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 100000 {
		tm := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
		if got, want := string(appendWireTime(nil, tm)), tm.UTC().Format(wireTime); got != want {
			t.Fatalf("appendWireTime(%v) = %s, want %s", tm.Unix(), got, want)
		}
	}
}
