package capture_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apimeter/apimeter/capture"
)

// countingBody is a request body that records how much was taken from it.
type countingBody struct {
	r    io.Reader
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}
func (b *countingBody) Close() error { return nil }

func TestPartialBodyReadsSeeTheSameBytes(t *testing.T) {
	payload := strings.Repeat("0123456789", 300) // 3000 bytes
	cases := []struct {
		name    string
		read    func(io.Reader) []byte
		logBody bool
	}{
		{"ReadFull 10", func(r io.Reader) []byte { b := make([]byte, 10); n, _ := io.ReadFull(r, b); return b[:n] }, true},
		{"one Read of 7", func(r io.Reader) []byte { b := make([]byte, 7); n, _ := r.Read(b); return b[:n] }, true},
		{"first 2000 bytes", func(r io.Reader) []byte { b, _ := io.ReadAll(io.LimitReader(r, 2000)); return b }, true},
		{"all", func(r io.Reader) []byte { b, _ := io.ReadAll(r); return b }, true},
		{"nothing", func(io.Reader) []byte { return nil }, true},
		{"all, body capture off", func(r io.Reader) []byte { b, _ := io.ReadAll(r); return b }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := func(wrap func(http.Handler) http.Handler) (seen []byte, taken int) {
				body := &countingBody{r: strings.NewReader(payload)}
				h := wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = tc.read(r.Body) }))
				req := httptest.NewRequest("POST", "/", nil)
				req.Body, req.ContentLength = body, int64(len(payload))
				h.ServeHTTP(httptest.NewRecorder(), req)
				return seen, body.read
			}
			bareSeen, bareTaken := run(func(h http.Handler) http.Handler { return h })
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink, LogBody: tc.logBody})
			if err != nil {
				t.Fatal(err)
			}
			seen, taken := run(c.Middleware)
			closeCapture(t, c)
			if !bytes.Equal(seen, bareSeen) || taken != bareTaken {
				t.Fatalf("wrapped handler saw %d bytes and %d were taken from the body; bare: %d and %d", len(seen), taken, len(bareSeen), bareTaken)
			}
			want := ""
			if tc.logBody {
				want = string(bareSeen[:min(len(bareSeen), capture.DefaultMaxBodyBytes)])
			}
			if got := sink.all()[0].RequestBody.Text; got != want {
				t.Fatalf("captured request body %q, want %q", got, want)
			}
		})
	}
}

func TestWrapperKeepsOptionalInterfaces(t *testing.T) {
	type flusher struct {
		http.ResponseWriter
		http.Flusher
	}
	type hijacker struct {
		http.ResponseWriter
		http.Hijacker
	}
	type readerFrom struct {
		http.ResponseWriter
		io.ReaderFrom
	}
	type all struct {
		http.ResponseWriter
		http.Flusher
		http.Hijacker
		io.ReaderFrom
	}
	rec := httptest.NewRecorder()
	cases := []struct {
		name    string
		w       http.ResponseWriter
		f, h, r bool
	}{
		{"plain", struct{ http.ResponseWriter }{rec}, false, false, false},
		{"flusher", flusher{rec, rec}, true, false, false},
		{"hijacker", hijacker{rec, nil}, false, true, false},
		{"readerFrom", readerFrom{rec, nil}, false, false, true},
		{"all", all{rec, rec, nil, nil}, true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := capture.New(capture.Options{Sink: &memSink{}})
			if err != nil {
				t.Fatal(err)
			}
			defer closeCapture(t, c)
			c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, f := w.(http.Flusher)
				_, h := w.(http.Hijacker)
				_, rf := w.(io.ReaderFrom)
				if f != tc.f || h != tc.h || rf != tc.r {
					t.Errorf("wrapped writer: Flusher=%v Hijacker=%v ReaderFrom=%v, want %v %v %v", f, h, rf, tc.f, tc.h, tc.r)
				}
				if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); !ok || u.Unwrap() != tc.w {
					t.Errorf("Unwrap does not return the original writer")
				}
			})).ServeHTTP(tc.w, httptest.NewRequest("GET", "/", nil))
		})
	}
}

func TestStreamingThroughTheWrapper(t *testing.T) {
	sink := &memSink{}
	c, err := capture.New(capture.Options{Sink: sink, LogBody: true})
	if err != nil {
		t.Fatal(err)
	}
	bigFile := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(bigFile, bytes.Repeat([]byte("f"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	next := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next // the client must have "one" before we go on
		io.WriteString(w, "data: two\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
	})
	mux.HandleFunc("GET /deadline", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("ResponseController.SetWriteDeadline through the wrapper: %v", err)
		}
		if err := rc.EnableFullDuplex(); err != nil {
			t.Errorf("ResponseController.EnableFullDuplex through the wrapper: %v", err)
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(bigFile)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		io.Copy(w, f) // ReaderFrom
	})
	app := httptest.NewServer(c.Middleware(mux))
	defer app.Close()

	resp, err := http.Get(app.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest of stream %q", rest)
	}
	for _, p := range []string{"/deadline", "/file"} {
		resp, err := http.Get(app.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if p == "/file" && len(b) != 5000 {
			t.Fatalf("file: got %d bytes, want 5000", len(b))
		}
	}
	closeCapture(t, c)
	byRoute := map[string]string{}
	for _, e := range sink.all() {
		byRoute[e.Route] = e.ResponseBody.Text
		if e.Route == "/file" && e.ResponseSize != 5000 {
			t.Errorf("file response size = %d, want 5000", e.ResponseSize)
		}
	}
	if byRoute["/sse"] != "data: one\n\ndata: two\n\n" || byRoute["/file"] != strings.Repeat("f", capture.DefaultMaxBodyBytes) {
		t.Fatalf("captured bodies %q", byRoute)
	}
}

func TestHijackThroughTheWrapper(t *testing.T) {
	cases := []struct {
		name   string
		hijack func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error)
	}{
		{"Hijacker", func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) { return w.(http.Hijacker).Hijack() }},
		{"ResponseController", func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			return http.NewResponseController(w).Hijack()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			c, err := capture.New(capture.Options{Sink: sink})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan struct{})
			wrapped := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := tc.hijack(w)
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer conn.Close()
				brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				brw.Flush()
				line, _ := brw.ReadString('\n')
				brw.WriteString("echo: " + line)
				brw.Flush()
			}))
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(served)
				wrapped.ServeHTTP(w, r)
			}))
			defer app.Close()
			conn, err := net.Dial("tcp", app.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade answer %v, %v", resp, err)
			}
			io.WriteString(conn, "hello\n")
			line, err := br.ReadString('\n')
			if err != nil || line != "echo: hello\n" {
				t.Fatalf("echo %q, %v", line, err)
			}
			conn.Close()
			<-served
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
			if evs := sink.all(); len(evs) != 1 || evs[0].Status != 101 {
				t.Fatalf("events %+v, want one with status 101", evs)
			}
		})
	}
}
