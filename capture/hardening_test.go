package capture_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
	"github.com/apimeter/apimeter/eventcap"
	"github.com/apimeter/apimeter/server"
)

// mark is the metadata the capture adds under eventcap.MarkKey.
type mark = eventcap.Mark

func markOf(t *testing.T, e apimeter.Event) (mark, map[string]json.RawMessage) {
	t.Helper()
	var md map[string]json.RawMessage
	var m mark
	if len(e.Metadata) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(e.Metadata, &md); err != nil {
		t.Fatalf("metadata of %s: %v: %s", e.Path, err, e.Metadata)
	}
	if raw, ok := md[eventcap.MarkKey]; ok {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("metadata.%s of %s: %v", eventcap.MarkKey, e.Path, err)
		}
	}
	return m, md
}

// get sends a GET with extra headers and returns the status.
func get(t *testing.T, url string, h map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %.60s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestOddCallsAreCutToTheCollectorsCaps: calls with 1,001 headers, a 20 KB
// header, a 17 KB URI, 1,001 response headers or 70 KB of metadata are
// answered and recorded like the calls around them: cut to the
// collector's caps and marked, so the collector refuses none and stores
// every call of the batch. Both ways of building events (straight to the
// wire, and through an Event when Mask is set) cut the same.
func TestOddCallsAreCutToTheCollectorsCaps(t *testing.T) {
	for _, path := range []string{"record", "event"} {
		t.Run(path, func(t *testing.T) {
			col := startCollector(t)
			opts := capture.Options{Sink: newHTTPSink(t, col.URL, col.AppID), BatchSize: 500,
				Metadata: func(r *http.Request, _ capture.Response) map[string]any {
					switch r.URL.Path {
					case "/bigmeta":
						return map[string]any{"blob": strings.Repeat("m", 70<<10)}
					case "/meta":
						return map[string]any{"plan": "gold"}
					}
					return nil
				}}
			if path == "event" {
				opts.Mask = func(*apimeter.Event) {}
			}
			c, err := capture.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			app := httptest.NewServer(c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/manyresp" {
					for i := range 1001 {
						w.Header().Set(fmt.Sprintf("X-R-%d", i), "v")
					}
				}
				io.WriteString(w, "ok")
			})))
			defer app.Close()

			many := map[string]string{}
			for i := range 1001 {
				many[fmt.Sprintf("X-H-%d", i)] = "v"
			}
			odd := []struct {
				path string
				h    map[string]string
				uri  string
			}{
				{"/manyheaders", many, ""},
				{"/bigheader", map[string]string{"X-Big": strings.Repeat("b", 20<<10)}, ""},
				{"/biguri", nil, "?q=" + strings.Repeat("u", 17<<10)},
				{"/manyresp", nil, ""},
				{"/bigmeta", nil, ""},
			}
			const normal = 45
			for i := range normal {
				if code := get(t, fmt.Sprintf("%s/meta?i=%d", app.URL, i), nil); code != 200 {
					t.Fatalf("normal call: %d", code)
				}
			}
			for _, o := range odd {
				if code := get(t, app.URL+o.path+o.uri, o.h); code != 200 {
					t.Fatalf("%s: %d, want 200", o.path, code)
				}
			}
			closeCapture(t, c)
			st := c.Stats()
			if st.Sent != normal+int64(len(odd)) || st.Failed != 0 || st.Refused != 0 {
				t.Fatalf("stats %+v: want all %d sent, none failed or refused", st, normal+len(odd))
			}
			evs := col.events(t)
			if len(evs) != normal+len(odd) {
				t.Fatalf("stored %d events, want %d", len(evs), normal+len(odd))
			}
			byPath := map[string]apimeter.Event{}
			for _, e := range evs {
				byPath[e.Path] = e
			}
			caps := eventcap.Limits{}.OrDefaults()
			check := func(p string, ok func(e apimeter.Event, m mark) bool, want string) {
				e, found := byPath[p]
				if !found {
					t.Errorf("%s: not stored", p)
					return
				}
				m, _ := markOf(t, e)
				if !ok(e, m) {
					t.Errorf("%s: want %s; stored %d request, %d response headers, uri %d bytes, metadata %.200s", p, want, len(e.RequestHeaders), len(e.ResponseHeaders), len(e.URI), e.Metadata)
				}
			}
			check("/manyheaders", func(e apimeter.Event, m mark) bool {
				// 1,001 sent, with User-Agent, Accept-Encoding and the
				// transaction id: 1,004, of which 4 are left out.
				return len(e.RequestHeaders) == caps.MaxHeaders && m.Cut != nil && m.Cut.Headers == 4
			}, "1000 request headers and the 4 left out counted")
			check("/bigheader", func(e apimeter.Event, m mark) bool {
				return len(e.RequestHeaders.Get("X-Big")) == caps.MaxHeaderValueBytes && m.Cut != nil && m.Cut.HeaderValues == 1
			}, "X-Big cut to the cap, one value counted")
			check("/biguri", func(e apimeter.Event, m mark) bool {
				return len(e.URI) <= caps.MaxURIBytes && len(e.URI) > caps.MaxURIBytes-10 && m.Cut != nil && m.Cut.URIBytes > caps.MaxURIBytes
			}, "the URI cut to the cap, its length kept")
			check("/manyresp", func(e apimeter.Event, m mark) bool {
				// 1,001 and the transaction id; 999 kept and the
				// Content-Length the capture adds.
				return len(e.ResponseHeaders) == caps.MaxHeaders && e.ResponseSize == 2 && m.Cut != nil && m.Cut.Headers == 3
			}, "1000 response headers, Content-Length among them")
			check("/bigmeta", func(e apimeter.Event, m mark) bool {
				return len(e.Metadata) < 1024 && m.Cut != nil && m.Cut.MetadataBytes > caps.MaxMetadataBytes
			}, "the metadata replaced by the mark")
			if e, ok := byPath["/meta"]; ok {
				if m, md := markOf(t, e); m.Cut != nil || m.Outcome != "" || string(md["plan"]) != `"gold"` {
					t.Errorf("a normal call's metadata is %s, want the handler's alone", e.Metadata)
				}
			}
		})
	}
}

// TestRefusedEventDoesNotTakeItsBatch: a collector stricter than the
// capture's caps refuses one event of a batch; the sender sends the rest
// again without it, and counts the one refused. A batch refused for its
// size is sent in halves.
func TestRefusedEventDoesNotTakeItsBatch(t *testing.T) {
	cases := []struct {
		name        string
		set         func(*server.Config)
		long        int // calls with a 2 KB URI
		calls       int
		wantStored  int
		wantRefused int64
	}{
		{"one event over the collector's URI cap", func(c *server.Config) { c.MaxURIBytes = 1024 }, 1, 20, 19, 1},
		{"three events over it", func(c *server.Config) { c.MaxURIBytes = 1024 }, 3, 20, 17, 3},
		{"batch over the collector's event count", func(c *server.Config) { c.MaxBatchEvents = 4 }, 0, 10, 10, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col := startCollectorWith(t, tc.set)
			c, err := capture.New(capture.Options{Sink: newHTTPSink(t, col.URL, col.AppID), BatchSize: 500})
			if err != nil {
				t.Fatal(err)
			}
			app := httptest.NewServer(c.Middleware(accountsMux(10)))
			defer app.Close()
			for i := range tc.calls {
				u := fmt.Sprintf("%s/accounts/%d/message", app.URL, i)
				if i%7 == 3 && i/7 < tc.long {
					u += "?pad=" + strings.Repeat("p", 2048)
				}
				get(t, u, nil)
			}
			closeCapture(t, c)
			st := c.Stats()
			if n := len(col.events(t)); n != tc.wantStored || st.Refused != tc.wantRefused || st.Sent != int64(tc.wantStored) || st.Failed != tc.wantRefused {
				t.Fatalf("stored %d, stats %+v; want %d stored and sent, %d refused (and failed)", n, st, tc.wantStored, tc.wantRefused)
			}
		})
	}
}

// TestCutCallsAreRecordedWithTheirOutcome: a call whose handler breaks off
// its answer (http.ErrAbortHandler, as ReverseProxy does on an upstream
// reset), a client that goes away mid-download, and a handler that panics
// before answering are each recorded: status as sent, the bytes written,
// and how it ended. The panic goes on to the server.
func TestCutCallsAreRecordedWithTheirOutcome(t *testing.T) {
	col := startCollector(t)
	c, err := capture.New(capture.Options{Sink: newHTTPSink(t, col.URL, col.AppID), BatchSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	const chunk, total = 64 << 10, 16 << 20
	handled := make(chan string, 3)
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			w.Header().Set("Content-Length", "5000")
			w.WriteHeader(200)
			w.Write(make([]byte, 1000))
			panic(http.ErrAbortHandler)
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(total))
			buf := make([]byte, chunk)
			for sent := 0; sent < total; sent += chunk {
				if _, err := w.Write(buf); err != nil {
					panic(http.ErrAbortHandler)
				}
			}
		case "/bug":
			panic("handler bug")
		}
	}))
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { handled <- r.URL.Path }()
		h.ServeHTTP(w, r)
	}))
	app.Config.ErrorLog = log.New(io.Discard, "", 0)
	app.Start()
	defer app.Close()

	// Upstream-style reset: the client gets a short body.
	resp, err := http.Get(app.URL + "/reset")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("reset call: the client read a whole answer, want a cut one")
	}
	<-handled
	// A client that reads 2 MB of 16 MB and closes its connection.
	conn, err := net.Dial("tcp", app.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.CopyN(io.Discard, conn, 2<<20); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	<-handled
	if _, err := http.Get(app.URL + "/bug"); err == nil {
		t.Fatal("panicking handler: the client got an answer")
	}
	<-handled
	closeCapture(t, c)

	byPath := map[string]apimeter.Event{}
	for _, e := range col.events(t) {
		byPath[e.Path] = e
	}
	if len(byPath) != 3 {
		t.Fatalf("stored %d calls (%v), want the 3 cut ones", len(byPath), byPath)
	}
	for _, w := range []struct {
		path, outcome string
		status        int
		sent          func(int64) bool
	}{
		{"/reset", capture.OutcomeReset, 200, func(n int64) bool { return n == 1000 }},
		{"/download", capture.OutcomeAborted, 200, func(n int64) bool { return n >= 2<<20 && n < total }},
		{"/bug", capture.OutcomePanic, 0, func(n int64) bool { return n == 0 }},
	} {
		e := byPath[w.path]
		m, _ := markOf(t, e)
		if e.Status != w.status || m.Outcome != w.outcome || m.BytesSent == nil || !w.sent(*m.BytesSent) {
			t.Errorf("%s: stored status %d, metadata %s; want status %d, outcome %s and the bytes sent", w.path, e.Status, e.Metadata, w.status, w.outcome)
		}
	}
}

// TestClientIPIsTheTrustedProxysAddress: ForwardedFor takes the address
// the proxy in front appended (the last of X-Forwarded-For), never the
// leftmost a client wrote, and only an IP; a ClientIP callback returning
// anything but an IP leaves the peer's address in the event.
func TestClientIPIsTheTrustedProxysAddress(t *testing.T) {
	cases := []struct {
		name, xff, want string
	}{
		{"none: the peer", "", "127.0.0.1"},
		{"one hop", "203.0.113.7", "203.0.113.7"},
		{"client-written values before the proxy's", "6.6.6.6, 10.0.0.1, 203.0.113.7", "203.0.113.7"},
		{"the proxy's is not an IP: the peer", "203.0.113.7, not-an-ip<script>", "127.0.0.1"},
		{"IPv6", "2001:db8::1", "2001:db8::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink, ClientIP: capture.ForwardedFor})
			if err != nil {
				t.Fatal(err)
			}
			app := httptest.NewServer(c.Middleware(accountsMux(10)))
			defer app.Close()
			h := map[string]string{}
			if tc.xff != "" {
				h["X-Forwarded-For"] = tc.xff
			}
			get(t, app.URL+"/accounts/1/message", h)
			closeCapture(t, c)
			if evs := sink.all(); len(evs) != 1 || evs[0].ClientIP != tc.want {
				t.Fatalf("recorded %+v, want client IP %s", evs, tc.want)
			}
		})
	}
	// A callback that returns what a client wrote.
	sink := &memSink{}
	c, err := capture.New(capture.Options{Sink: sink, ClientIP: func(r *http.Request) string { return r.Header.Get("X-Client") }})
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(c.Middleware(accountsMux(10)))
	defer app.Close()
	get(t, app.URL+"/accounts/1/message", map[string]string{"X-Client": "not-an-ip<script>"})
	closeCapture(t, c)
	if evs := sink.all(); len(evs) != 1 || evs[0].ClientIP != "127.0.0.1" {
		t.Fatalf("recorded %+v, want the peer's address", evs)
	}
}
