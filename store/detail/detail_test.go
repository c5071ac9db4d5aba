package detail

import (
	"encoding/json"
	"testing"

	"github.com/apimeter/apimeter"
)

func TestDetailRoundTrip(t *testing.T) {
	e := apimeter.Event{
		Direction: apimeter.Incoming, APIVersion: "1.0", Query: "a=1&b=\"x\"", SessionToken: "fp_1", Tags: "t",
		Metadata:        json.RawMessage(`{"plan":"pro"}`),
		RequestHeaders:  apimeter.Headers{{Name: "A", Value: "1"}, {Name: "b\"c", Value: "line\nbreak"}},
		RequestBody:     apimeter.Body{Text: `{"x":1}`, Truncated: true},
		ResponseHeaders: apimeter.Headers{{Name: "Content-Type", Value: "application/octet-stream"}},
		ResponseBody:    apimeter.Body{Text: "AAEC", Base64: true},
	}
	doc := Append(nil, &e)
	var got apimeter.Event
	if err := Apply(&got, string(doc)); err != nil {
		t.Fatalf("Apply(%s): %v", doc, err)
	}
	if got.Direction != e.Direction || got.APIVersion != e.APIVersion || got.Query != e.Query || got.SessionToken != e.SessionToken ||
		got.Tags != e.Tags || string(got.Metadata) != string(e.Metadata) || got.RequestBody != e.RequestBody || got.ResponseBody != e.ResponseBody ||
		len(got.RequestHeaders) != 2 || got.RequestHeaders[1] != e.RequestHeaders[1] || got.ResponseHeaders[0] != e.ResponseHeaders[0] {
		t.Errorf("detail round trip:\n got %+v\nwant %+v", got, e)
	}
}
