package moesif

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/scrub"
)

func TestParseTime(t *testing.T) {
	want := time.Date(2024, 5, 1, 12, 34, 56, 789000000, time.UTC)
	for _, c := range []struct {
		name, in string
		want     time.Time
	}{
		{"node", "2024-05-01T12:34:56.789Z", want},
		{"wsgi and java, no zone", "2024-05-01T12:34:56.789", want},
		{"go nanos", "2024-05-01T12:34:56.789000000Z", want},
		{"offset", "2024-05-01T14:34:56.789+02:00", want},
		{"php offset", "2024-05-01T12:34:56.789+0000", want},
		{"no fraction", "2024-05-01T12:34:56Z", want.Truncate(time.Second)},
		{"space", "2024-05-01 12:34:56.789", want},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTime(c.in)
			if err != nil || !got.Equal(c.want) {
				t.Errorf("ParseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
		})
	}
	for _, bad := range []string{"", "yesterday", "2024-13-01T00:00:00Z", "1714566896",
		// In range as written, out of it in UTC.
		"2200-12-31T23:00:00-05:00", "1970-01-01T00:30:00+01:00"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func TestSplitURI(t *testing.T) {
	for _, c := range []struct{ in, path, query string }{
		{"https://api.example.com/a/b?x=1&y=2", "/a/b", "x=1&y=2"},
		{"https://api.example.com", "/", ""},
		{"https://api.example.com?x=1", "/", "x=1"},
		{"/a?x", "/a", "x"},
		{"/a#frag", "/a", ""},
	} {
		p, q := splitURI(c.in)
		if p != c.path || q != c.query {
			t.Errorf("splitURI(%q) = %q, %q; want %q, %q", c.in, p, q, c.path, c.query)
		}
	}
}

func TestToEventIDPrecedence(t *testing.T) {
	base := func() Event {
		return Event{
			Request:  Request{Time: "2026-11-02T09:00:00Z", URI: "/a", Verb: "GET", Headers: Headers{{Name: "x-moesif-transaction-id", Value: "req-tx"}}},
			Response: &Response{Status: 200, Headers: Headers{{Name: "X-Moesif-Transaction-Id", Value: "resp-tx"}}},
		}
	}
	m := base()
	m.EventID = "explicit"
	if ev, _ := m.ToEvent("o", "e", -1); ev.ID != "explicit" {
		t.Errorf("explicit event_id lost: %q", ev.ID)
	}
	m = base()
	if ev, _ := m.ToEvent("o", "e", -1); ev.ID != "req-tx" {
		t.Errorf("request transaction header not used: %q", ev.ID)
	}
	m = base()
	m.Request.Headers = nil
	if ev, _ := m.ToEvent("o", "e", -1); ev.ID != "resp-tx" {
		t.Errorf("response transaction header not used: %q", ev.ID)
	}
	m = base()
	m.Request.Headers, m.Response.Headers = nil, nil
	a, _ := m.ToEvent("o", "e", -1)
	b, _ := m.ToEvent("o", "e", -1)
	m.Response.Status = 500
	c, _ := m.ToEvent("o", "e", -1)
	if a.ID != b.ID || a.ID == c.ID || !strings.HasPrefix(a.ID, "h-") {
		t.Errorf("content ids: same event %q %q, different event %q", a.ID, b.ID, c.ID)
	}
}

// FuzzDecodeEvent feeds arbitrary bytes through the collector's decoding:
// it must never panic, and an accepted event is well formed.
func FuzzDecodeEvent(f *testing.F) {
	if b, err := os.ReadFile("testdata/node-batch.json"); err == nil {
		var raws []json.RawMessage
		json.Unmarshal(b, &raws)
		for _, r := range raws {
			f.Add([]byte(r))
		}
	}
	f.Add([]byte(`{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"response":{"status":200}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := DecodeBatch(append(append([]byte("["), b...), ']'), Limits{})
		if err != nil || len(ms) != 1 {
			return
		}
		m := ms[0]
		ev, err := m.ToEvent("o", "e", 0)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		if ev.ID == "" || ev.Method == "" || ev.RequestTime.IsZero() || ev.Weight < 1 || ev.LatencyMs < 0 {
			t.Fatalf("accepted a malformed event: %+v", ev)
		}
		scrub.New(nil, nil, -1).Scrub(&ev)
		for _, s := range []string{ev.ID, ev.URI, ev.Path, ev.UserID, ev.UserAgent} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 after Scrub: %q", s)
			}
		}
	})
}

// FuzzDecodeBatch checks the fast batch decoder against encoding/json:
// whatever the fast decoder accepts, encoding/json accepts and decodes to
// the same events, and each event gets the same content id and Event from
// both (an event decoded alone, as /v1/events does, too). (Where the fast
// decoder declines, the collector falls back to encoding/json, so
// declining is always safe.)
func FuzzDecodeBatch(f *testing.F) {
	if b, err := os.ReadFile("testdata/node-batch.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`[{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET","headers":{"A":["x",1,true,null]}},"response":{"status":200,"body":{"k":[1,2.5e3,"\u00e9"]}},"weight":10,"metadata":null}]`))
	f.Add([]byte(`[{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"response":{"status":502},"target_url":"http://10.0.0.1:8080/a","target_latency_ms":12.5}]`))
	f.Add([]byte(`[{"request":{"time":"2026-11-02T09:00:00Z","uri":"/a","verb":"GET"},"target_latency_ms":1e400}]`))
	f.Add([]byte(`[null,{},{"Request":{}}]`))
	f.Add([]byte(` [ ] `))
	f.Add([]byte("[{\"request\":{\"headers\":{\"\":[\"\xf0\"]}}}]"))
	f.Add([]byte("[{\"request\":{\"time\":\"2026-11-02T09:00:00Z\",\"uri\":\"/a\xff\",\"verb\":\"GET\",\"headers\":{\"h\xfe\":\"\xf0\"},\"body\":{\"a\":\"\\ud800\xff\"}},\"response\":{\"status\":null},\"metadata\":{\"m\":\"\\udc00\"}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, err := DecodeBatch(b, Limits{})
		if err != nil {
			return
		}
		var ref []Event
		if err := json.Unmarshal(b, &ref); err != nil {
			t.Fatalf("fast decoder accepted %q, encoding/json refuses it: %v", b, err)
		}
		if len(fast) == 0 && len(ref) == 0 {
			return
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("decoders differ on %q:\nfast %+v\njson %+v", b, fast, ref)
		}
		var raws []json.RawMessage
		json.Unmarshal(b, &raws)
		for i := range fast {
			var one Event
			if err := json.Unmarshal(raws[i], &one); err != nil {
				t.Fatalf("event %d %q decodes in a batch, not alone: %v", i, raws[i], err)
			}
			ef, errf := fast[i].ToEvent("o", "e", i)
			er, errr := ref[i].ToEvent("o", "e", i)
			eo, erro := one.ToEvent("o", "e", i)
			if fmt.Sprint(errf) != fmt.Sprint(errr) || fmt.Sprint(errf) != fmt.Sprint(erro) {
				t.Fatalf("event %d of %q: ToEvent errors differ: fast %v, json %v, alone %v", i, b, errf, errr, erro)
			}
			if errf != nil {
				continue
			}
			if ef.ID != er.ID || ef.ID != eo.ID {
				t.Fatalf("event %d of %q: content ids differ: fast %s, json %s, alone %s", i, b, ef.ID, er.ID, eo.ID)
			}
			if !reflect.DeepEqual(ef, er) || !reflect.DeepEqual(ef, eo) {
				t.Fatalf("event %d of %q: events differ:\nfast %+v\njson %+v\nalone %+v", i, b, ef, er, eo)
			}
			for _, s := range []string{ef.ID, ef.URI, ef.UserID, string(ef.Metadata), ef.RequestBody.Text, ef.ResponseBody.Text} {
				if !utf8.ValidString(s) {
					t.Fatalf("event %d of %q: invalid UTF-8 after ToEvent: %q", i, b, s)
				}
			}
			for _, h := range append(ef.RequestHeaders, ef.ResponseHeaders...) {
				if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Value) {
					t.Fatalf("event %d of %q: invalid UTF-8 in header %q: %q", i, b, h.Name, h.Value)
				}
			}
		}
	})
}

// FuzzParseTime: ParseTime never panics, and a time it accepts lies in
// the years 1970 to 2200 in UTC.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2024-05-01T12:34:56.789Z", "2200-12-31T23:00:00-05:00", "1970-01-01T00:30:00+01:00", "2024-05-01 12:34:56", "2024-05-01T12:34:56.789+0000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC || tm.Year() < 1970 || tm.Year() > 2200 {
			t.Fatalf("ParseTime(%q) = %v: outside 1970-2200 UTC", s, tm)
		}
	})
}

// TestTargetFields checks that the gateway's target_url and
// target_latency_ms survive FromEvent -> JSON -> DecodeBatch -> ToEvent,
// and that a negative latency is refused with its field named.
func TestTargetFields(t *testing.T) {
	in := apimeter.Event{ID: "x", RequestTime: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), Method: "GET", URI: "http://a/b",
		Status: 504, TargetURL: "http://127.0.0.1:9/b", TargetLatencyMs: 30000.25, Weight: 1}
	in.ResponseTime = in.RequestTime.Add(30 * time.Second)
	b, err := json.Marshal([]Event{FromEvent(&in)})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := DecodeBatch(b, Limits{})
	if err != nil {
		t.Fatalf("DecodeBatch(%s): %v", b, err)
	}
	out, err := ms[0].ToEvent("o", "e", 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.TargetURL != in.TargetURL || out.TargetLatencyMs != in.TargetLatencyMs {
		t.Fatalf("got target %q %v, want %q %v (wire %s)", out.TargetURL, out.TargetLatencyMs, in.TargetURL, in.TargetLatencyMs, b)
	}
	neg := -1.0
	ms[0].TargetLatencyMs = &neg
	var fe *FieldError
	if _, err := ms[0].ToEvent("o", "e", 3); !errors.As(err, &fe) || fe.Field != "target_latency_ms" || fe.Index != 3 {
		t.Fatalf("negative target_latency_ms: got %v, want a FieldError on target_latency_ms at index 3", err)
	}
}
