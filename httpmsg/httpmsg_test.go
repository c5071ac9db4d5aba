package httpmsg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
)

func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "apim", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors decodes every vector of testdata/apim as its README says.
func TestVectors(t *testing.T) {
	type want struct {
		kind    Kind
		id      string
		method  string
		target  string
		status  int
		reason  string
		headers int
		header  [2]string // one header that must be there
		body    string    // prefix of the body
		bodyLen int
		err     string // part of the error; "" for none
	}
	cases := []struct {
		file string
		want want
	}{
		{"01-get-request.txt", want{kind: Request, id: "c5e1a0b0-8a5f-4c57-9a8e-2f0d1c9e7b61", method: "GET",
			target: "/accounts/abcdef/message?verbose=1", headers: 4, header: [2]string{"X-Forwarded-For", "203.0.113.7"}}},
		{"01-get-response.txt", want{kind: Response, id: "c5e1a0b0-8a5f-4c57-9a8e-2f0d1c9e7b61", status: 200, reason: "OK",
			headers: 2, header: [2]string{"Content-Type", "application/json; charset=utf-8"}, body: `{"my_object":{"my_message":"Hello World!"}}`, bodyLen: 46}},
		{"02-post-truncated-request.txt", want{kind: Request, id: "0b7d5c2e-1f43-4a8e-b6a1-93c4d2e8f017", method: "POST", target: "/orders",
			headers: 3, header: [2]string{"Content-Length", "2035"}, body: `{"name":"widget"`, bodyLen: 1024}},
		{"02-post-truncated-response.txt", want{kind: Response, id: "0b7d5c2e-1f43-4a8e-b6a1-93c4d2e8f017", status: 201, reason: "Created",
			headers: 2, header: [2]string{"Location", "/orders/981"}, body: `{"id":981}`, bodyLen: 10}},
		{"03-request-without-response.txt", want{kind: Request, id: "9d0e6f41-2b7c-4e55-8a90-71f3c5b2a4d8", method: "PUT", target: "/accounts/4412/settings",
			headers: 2, header: [2]string{"Host", "api.contoso.example"}, body: `{"mode":"strict"}`, bodyLen: 17}},
		{"04-response-without-request.txt", want{kind: Response, id: "5a8c2d19-6e3f-4b70-9c14-0e2b7d6f3a95", status: 503, reason: "Service Unavailable",
			headers: 1, header: [2]string{"Retry-After", "30"}}},
		{"05-malformed-no-prefix.txt", want{err: "first line"}},
		{"06-malformed-bad-request-line.txt", want{err: "request line"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			m, err := Decode(vector(t, c.file))
			if c.want.err != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want.err) {
					t.Fatalf("Decode: got error %v, want a malformed-message error about %q", err, c.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			w := c.want
			if m.Kind != w.kind || m.ID != w.id || m.Method != w.method || m.Target != w.target || m.Status != w.status || m.Reason != w.reason {
				t.Errorf("got kind %v id %q method %q target %q status %d reason %q\nwant kind %v id %q method %q target %q status %d reason %q",
					m.Kind, m.ID, m.Method, m.Target, m.Status, m.Reason, w.kind, w.id, w.method, w.target, w.status, w.reason)
			}
			if len(m.Header) != w.headers || m.Header.Get(w.header[0]) != w.header[1] {
				t.Errorf("headers %v: want %d of them with %s: %s", m.Header, w.headers, w.header[0], w.header[1])
			}
			if !bytes.HasPrefix(m.Body, []byte(w.body)) || len(m.Body) != w.bodyLen {
				t.Errorf("body %q (%d bytes): want %d bytes starting %q", clip(string(m.Body)), len(m.Body), w.bodyLen, w.body)
			}
		})
	}
}

// TestPolicyQuirks decodes what the real policy sends besides the vectors.
func TestPolicyQuirks(t *testing.T) {
	cases := []struct {
		name, msg string
		check     func(t *testing.T, m Message)
	}{
		{"lower-case authorization from an HTTP/2 client is dropped",
			"request:a1\nGET /x HTTP/1.1\r\nhost: h\r\nauthorization: Bearer secret\r\nocp-apim-subscription-key: k\r\naccept: */*\r\n\r\n",
			func(t *testing.T, m Message) {
				for _, h := range m.Header {
					if secret(h.Name) || strings.Contains(h.Value, "secret") {
						t.Errorf("secret header kept: %v", h)
					}
				}
				if len(m.Header) != 2 || m.Header.Get("Accept") != "*/*" {
					t.Errorf("headers %v: want host and accept", m.Header)
				}
			}},
		{"no headers at all", "request:a2\nDELETE /items/1 HTTP/1.1\r\n\r\n",
			func(t *testing.T, m Message) {
				if m.Method != "DELETE" || len(m.Header) != 0 || m.Body != nil {
					t.Errorf("got %+v", m)
				}
			}},
		{"odd casing and joined values", "response:a3\nHTTP/1.1 200 OK\r\ncOnTeNt-TyPe: text/plain\r\nVary: Accept, Origin\r\n\r\nhi",
			func(t *testing.T, m Message) {
				if m.Header[0].Name != "cOnTeNt-TyPe" || m.Header.Get("vary") != "Accept, Origin" || string(m.Body) != "hi" {
					t.Errorf("got %+v", m)
				}
			}},
		{"non-ASCII body longer than its Content-Length says nothing of", "response:a4\nHTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\nпривет, мир",
			func(t *testing.T, m Message) {
				if string(m.Body) != "привет, мир" {
					t.Errorf("body %q", m.Body)
				}
			}},
		{"conflicting Content-Length values joined by the policy", "request:a5\nPOST /p HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nabcde",
			func(t *testing.T, m Message) {
				if string(m.Body) != "abcde" || m.Header.Get("Content-Length") != "5, 6" {
					t.Errorf("got %+v", m)
				}
			}},
		{"chunked response", "response:a6\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
			func(t *testing.T, m Message) {
				if string(m.Body) != "{}" {
					t.Errorf("body %q", m.Body)
				}
			}},
		{"empty reason phrase", "response:a7\nHTTP/1.1 204 \r\n\r\n",
			func(t *testing.T, m Message) {
				if m.Status != 204 || m.Reason != "" {
					t.Errorf("status %d reason %q", m.Status, m.Reason)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode([]byte(c.msg))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			c.check(t, m)
		})
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct{ name, msg, err string }{
		{"empty", "", "no line break"},
		{"no id", "request:\nGET / HTTP/1.1\r\n\r\n", "empty message id"},
		{"id with a space", "request:a b\nGET / HTTP/1.1\r\n\r\n", "printable"},
		{"unknown kind", "reply:1\nHTTP/1.1 200 OK\r\n\r\n", "first line"},
		{"no end of headers", "request:1\nGET / HTTP/1.1\r\nHost: x\r\n", "no empty line"},
		{"header without colon", "request:1\nGET / HTTP/1.1\r\nHost x\r\n\r\n", "no colon"},
		{"bad header name", "request:1\nGET / HTTP/1.1\r\nHo st: x\r\n\r\n", "not a header name"},
		{"bad status", "response:1\nHTTP/1.1 abc OK\r\n\r\n", "status line"},
		{"response line in a request", "request:1\nHTTP/1.1 200 OK\r\n\r\n", "request"},
		{"relative target", "request:1\nGET foo HTTP/1.1\r\n\r\n", "request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.msg))
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("got %v, want a malformed-message error containing %q", err, c.err)
			}
		})
	}
}

func TestEncodeLikeThePolicy(t *testing.T) {
	long := strings.Repeat("é", 1500)
	req := Message{Kind: Request, ID: "id-1", Method: "POST", Target: "/a?b=c", Header: apimeter.Headers{
		{Name: "Host", Value: "api.example"}, {Name: "authorization", Value: "Bearer t"},
		{Name: "OCP-APIM-SUBSCRIPTION-KEY", Value: "k"}, {Name: "Accept", Value: "a, b"},
	}, Body: []byte(long)}
	got := string(Encoder{}.Append(nil, &req))
	want := "request:id-1\nPOST /a?b=c HTTP/1.1\r\nHost: api.example\r\nAccept: a, b\r\n\r\n" + strings.Repeat("é", 1024)
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", clip(got), clip(want))
	}
	resp := Message{Kind: Response, ID: "id-1", Status: 404, Reason: "Not Found"}
	if got := string(Encoder{BodyLimit: 10}.Append(nil, &resp)); got != "response:id-1\nHTTP/1.1 404 Not Found\r\n\r\n" {
		t.Fatalf("got %q", got)
	}
	if a, b := NewID(), NewID(); len(a) != 36 || a == b {
		t.Fatal("NewID does not give fresh UUIDs")
	}
}

func TestToEvent(t *testing.T) {
	req, err := Decode(vector(t, "02-post-truncated-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Decode(vector(t, "02-post-truncated-response.txt"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	e := ToEvent(&req, &resp, t0, t0.Add(42*time.Millisecond))
	if e.ID != req.ID || e.Method != "POST" || e.URI != "https://api.contoso.example/orders" || e.Path != "/orders" ||
		e.Status != 201 || e.LatencyMs != 42 || e.RequestSize != 2035 || !e.RequestBody.Truncated || e.ResponseSize != 10 {
		t.Fatalf("got %+v", e)
	}
	e = ToEvent(&req, nil, t0, time.Time{})
	if e.Status != 0 || !strings.Contains(string(e.Metadata), NoResponse) || !e.ResponseTime.Equal(t0) {
		t.Fatalf("request alone: got status %d metadata %s", e.Status, e.Metadata)
	}
	e = ToEvent(nil, &resp, time.Time{}, t0)
	if e.Status != 201 || e.Method != "" || !strings.Contains(string(e.Metadata), NoRequest) || !e.RequestTime.Equal(t0) {
		t.Fatalf("response alone: got %+v", e)
	}
	// And back: FromEvent writes what Decode reads.
	rq, rs := FromEvent(&e, "x")
	if rs == nil || rs.Status != 201 || rq.Kind != Request {
		t.Fatalf("FromEvent: %+v %+v", rq, rs)
	}
}

// TestAppendFromEvent checks that AppendRequest and AppendResponse write
// the very bytes Append writes for FromEvent's messages, which the
// round-trip tests hold to the policy's format.
func TestAppendFromEvent(t *testing.T) {
	long := strings.Repeat("é", 1500)
	hdr := apimeter.Headers{{Name: "Content-Type", Value: "application/json"}, {Name: "authorization", Value: "Bearer secret"},
		{Name: "OCP-APIM-SUBSCRIPTION-KEY", Value: "k"}, {Name: "X-Bad", Value: "a\r\nInjected: 1"}, {Name: "Bad Name", Value: "x"}}
	cases := []struct {
		name string
		e    apimeter.Event
		enc  Encoder
	}{
		{"get with query", apimeter.Event{Method: "GET", Path: "/a/b", Query: "x=1&y=2", Status: 200, RequestHeaders: hdr, ResponseHeaders: hdr,
			ResponseBody: apimeter.Body{Text: `{"ok":true}`}}, Encoder{}},
		{"no method, no path", apimeter.Event{Status: 204}, Encoder{}},
		{"no response", apimeter.Event{Method: "POST", Path: "/p", RequestBody: apimeter.Body{Text: "body"}}, Encoder{}},
		{"long unicode bodies cut", apimeter.Event{Method: "PUT", Path: "/u", Status: 201, RequestBody: apimeter.Body{Text: long},
			ResponseBody: apimeter.Body{Text: long}}, Encoder{}},
		{"own limit", apimeter.Event{Method: "PUT", Path: "/u", Status: 418, RequestBody: apimeter.Body{Text: long}}, Encoder{BodyLimit: 10}},
		{"no bodies", apimeter.Event{Method: "PUT", Path: "/u", Status: 500, RequestBody: apimeter.Body{Text: long}}, Encoder{BodyLimit: -1}},
		{"base64", apimeter.Event{Method: "POST", Path: "/bin", Status: 200, RequestBody: apimeter.Body{Text: "/wD+AQ==", Base64: true},
			ResponseBody: apimeter.Body{Text: "not base64!", Base64: true}}, Encoder{BodyLimit: 3}},
		{"unknown status", apimeter.Event{Method: "GET", Path: "/", Status: 599}, Encoder{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, resp := FromEvent(&c.e, "id-1")
			want := c.enc.Append(nil, &req)
			if got := c.enc.AppendRequest([]byte("prefix"), &c.e, "id-1"); string(got) != "prefix"+string(want) {
				t.Errorf("AppendRequest:\n got %q\nwant %q", got, want)
			}
			want = nil
			if resp != nil {
				want = c.enc.Append(nil, resp)
			}
			if got := c.enc.AppendResponse([]byte("prefix"), &c.e, "id-1"); string(got) != "prefix"+string(want) {
				t.Errorf("AppendResponse:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// BenchmarkDecode reads the APIM request and response vectors, next to
// the reference that hands the head to net/http (the first Decode).
func BenchmarkDecode(b *testing.B) {
	var msgs [][]byte
	for _, name := range []string{"01-get-request.txt", "01-get-response.txt", "02-post-truncated-request.txt", "02-post-truncated-response.txt"} {
		v, err := os.ReadFile(filepath.Join("..", "testdata", "apim", name))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, v)
	}
	for _, c := range []struct {
		name   string
		decode func([]byte) (Message, error)
	}{{"decode", Decode}, {"net-http-reference", decodeNetHTTP}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := c.decode(msgs[i%len(msgs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
