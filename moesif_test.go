package apimeter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
	base := func() MoesifEvent {
		return MoesifEvent{
			Request:  MoesifRequest{Time: "2026-11-02T09:00:00Z", URI: "/a", Verb: "GET", Headers: MoesifHeaders{{Name: "x-moesif-transaction-id", Value: "req-tx"}}},
			Response: &MoesifResponse{Status: 200, Headers: MoesifHeaders{{Name: "X-Moesif-Transaction-Id", Value: "resp-tx"}}},
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

func TestScrub(t *testing.T) {
	s := NewScrubber([]string{"X-Internal-Token"}, []string{"session"}, 8)
	e := Event{
		URI:   "https://h/p?a=1&api_key=K1&session=S1",
		Query: "a=1&api_key=K1&session=S1",
		RequestHeaders: Headers{
			{"Authorization", "Bearer T1"}, {"X-API-KEY", "K2"}, {"x-internal-token", "I1"}, {"Accept", "*/*"},
		},
		ResponseHeaders: Headers{{"Set-Cookie", "c=C1"}},
		SessionToken:    "Bearer T1",
		RequestBody:     Body{Text: "héllo wörld"},
		UserAgent:       "bad\xffbyte",
	}
	s.Scrub(&e)
	for _, secret := range []string{"T1", "K1", "K2", "I1", "C1", "S1"} {
		all := e.URI + e.Query + e.SessionToken + e.APIKeyID
		for _, h := range append(e.RequestHeaders, e.ResponseHeaders...) {
			all += h.Value
		}
		if strings.Contains(all, secret) {
			t.Errorf("secret %s survived scrubbing: %+v", secret, e)
		}
	}
	if e.RequestHeaders.Get("accept") != "*/*" {
		t.Errorf("harmless header changed")
	}
	if e.APIKeyID != Fingerprint("K2") {
		t.Errorf("api key id %q, want the fingerprint of the X-API-KEY header", e.APIKeyID)
	}
	if e.SessionToken != Fingerprint("T1") {
		t.Errorf("session token %q, want the fingerprint of the bearer token", e.SessionToken)
	}
	if !e.RequestBody.Truncated || e.RequestBody.Text != "héllo w" || !utf8.ValidString(e.RequestBody.Text) {
		t.Errorf("body capped to %q (truncated %v), want 7 bytes cut at a rune boundary", e.RequestBody.Text, e.RequestBody.Truncated)
	}
	if !utf8.ValidString(e.UserAgent) {
		t.Errorf("invalid UTF-8 kept: %q", e.UserAgent)
	}
	before := e
	s.Scrub(&e)
	if !reflect.DeepEqual(before, e) {
		t.Errorf("Scrub is not idempotent:\n%+v\n%+v", before, e)
	}
}

func TestScanHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want Headers
		err  bool
	}{
		{"strings", `{"A":"1","b":"two"}`, Headers{{"A", "1"}, {"b", "two"}}, false},
		{"arrays", `{"Set-Cookie":["a=1","b=2"],"X":[]}`, Headers{{"Set-Cookie", "a=1, b=2"}, {"X", ""}}, false},
		{"numbers and bools", `{"N":98,"F":-1.5e3,"B":true,"Z":null}`, Headers{{"N", "98"}, {"F", "-1.5e3"}, {"B", "true"}, {"Z", ""}}, false},
		{"escapes", `{"A\"b":"line\nbreak \u00e9"}`, Headers{{"A\"b", "line\nbreak é"}}, false},
		{"whitespace", " { \"A\" : \"1\" ,\n\"B\":[ \"x\" , 2 ] } ", Headers{{"A", "1"}, {"B", "x, 2"}}, false},
		{"empty", `{}`, Headers{}, false},
		{"array", `["a"]`, nil, true},
		{"object value", `{"A":{"b":1}}`, nil, true},
		{"unterminated", `{"A":"1`, nil, true},
		{"missing colon", `{"A" "1"}`, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := scanHeaders([]byte(c.in), nil)
			if (err != nil) != c.err {
				t.Fatalf("scanHeaders(%s) error %v, want error %v", c.in, err, c.err)
			}
			if !c.err && !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("scanHeaders(%s) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}

// FuzzScanHeaders checks the hand-written header scanner against
// encoding/json: whatever encoding/json reads as an object of strings, the
// scanner reads the same, and it never panics.
func FuzzScanHeaders(f *testing.F) {
	for _, s := range []string{`{"A":"1"}`, `{"a":["x","y"]}`, `{"n":1}`, `{"e":"\u00e9\n"}`, `{}`, `[`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := scanHeaders(b, nil)
		var ref map[string]string
		if json.Unmarshal(b, &ref) == nil && ref != nil {
			if err != nil {
				t.Fatalf("scanHeaders(%q) failed (%v) where encoding/json read %v", b, err, ref)
			}
			for _, h := range got {
				if ref[h.Name] != h.Value && strings.Count(string(b), `"`+h.Name+`"`) == 1 && utf8.Valid(b) {
					t.Fatalf("scanHeaders(%q): %q = %q, encoding/json says %q", b, h.Name, h.Value, ref[h.Name])
				}
			}
		}
	})
}

// FuzzDecodeEvent feeds arbitrary bytes through the collector's decoding:
// it must never panic, and an accepted event is well formed.
func FuzzDecodeEvent(f *testing.F) {
	if b, err := os.ReadFile("testdata/moesif/node-batch.json"); err == nil {
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
		NewScrubber(nil, nil, -1).Scrub(&ev)
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
	if b, err := os.ReadFile("testdata/moesif/node-batch.json"); err == nil {
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
		var ref []MoesifEvent
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
			var one MoesifEvent
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

// FuzzValidJSON: for any valid JSON, ValidJSON gives valid JSON of valid
// UTF-8 without a lone surrogate escape, that encoding/json decodes to
// the same value, and is idempotent; for anything, it does not panic.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `"\ud800"`, `"\ud83d\ude00"`, `["\udc00\ud800","\\ud800"]`, "\"\xff\xfe\"", "{\"\xc3\":\"\\uD800x\"}", `"\u12"`, "\"\xed\xa0\x80\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := ValidJSON(b)
		if !json.Valid(b) {
			return
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("ValidJSON(%q) = %q: not valid UTF-8 JSON", b, out)
		}
		if s := loneSurrogateEscape(out); s != "" {
			t.Fatalf("ValidJSON(%q) = %q keeps the lone surrogate %s", b, out, s)
		}
		var vb, vo any
		json.Unmarshal(b, &vb)
		json.Unmarshal(out, &vo)
		if !reflect.DeepEqual(vb, vo) {
			t.Fatalf("ValidJSON(%q) = %q decodes to %#v, the input to %#v", b, out, vo, vb)
		}
		if again := ValidJSON(out); !bytes.Equal(again, out) {
			t.Fatalf("ValidJSON not idempotent: %q -> %q -> %q", b, out, again)
		}
	})
}

// loneSurrogateEscape returns the first \uD800-\uDFFF escape of b that is
// not half of a pair, or "".
func loneSurrogateEscape(b []byte) string {
	for i := 0; i+6 <= len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++
			continue
		}
		r, _ := hex4(b, i+2)
		if r >= 0xD800 && r < 0xDC00 && i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if r2, ok := hex4(b, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
				i += 11
				continue
			}
		}
		if r >= 0xD800 && r <= 0xDFFF {
			return string(b[i : i+6])
		}
		i += 5
	}
	return ""
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

func TestFingerprintOfHash(t *testing.T) {
	for _, key := range []string{"sk_live_1", "", "ключ"} {
		if got, want := FingerprintOfHash(KeyHash(key)), Fingerprint(key); got != want {
			t.Errorf("FingerprintOfHash(KeyHash(%q)) = %q, Fingerprint = %q", key, got, want)
		}
		if !IsFingerprint(Fingerprint(key)) {
			t.Errorf("IsFingerprint(Fingerprint(%q)) is false", key)
		}
	}
}

// TestTargetFields checks that the gateway's target_url and
// target_latency_ms survive FromEvent -> JSON -> DecodeBatch -> ToEvent,
// and that a negative latency is refused with its field named.
func TestTargetFields(t *testing.T) {
	in := Event{ID: "x", RequestTime: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), Method: "GET", URI: "http://a/b",
		Status: 504, TargetURL: "http://127.0.0.1:9/b", TargetLatencyMs: 30000.25, Weight: 1}
	in.ResponseTime = in.RequestTime.Add(30 * time.Second)
	b, err := json.Marshal([]MoesifEvent{FromEvent(&in)})
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
