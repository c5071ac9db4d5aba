package capture_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/capture"
)

func TestHTTPSinkRetries(t *testing.T) {
	cases := []struct {
		name         string
		statuses     []int // answers in order; the last repeats
		wantErr      bool
		wantAttempts int64
	}{
		{"ok first time", []int{200}, false, 1},
		{"503 twice then ok", []int{503, 503, 200}, false, 3},
		{"429 then ok", []int{429, 201}, false, 2},
		{"always 500: bounded", []int{500}, true, 4}, // 1 + MaxRetries(3)
		{"400 is not retried", []int{400}, true, 1},
		{"401 is not retried", []int{401}, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var attempts atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := attempts.Add(1)
				if r.Header.Get("X-Moesif-Application-Id") != "app-1" || r.Header.Get("Content-Encoding") != "gzip" || r.URL.Path != "/v1/events/batch" {
					t.Errorf("request %s %s with app id %q, encoding %q", r.Method, r.URL.Path, r.Header.Get("X-Moesif-Application-Id"), r.Header.Get("Content-Encoding"))
				}
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(tc.statuses[min(int(n)-1, len(tc.statuses)-1)])
			}))
			defer srv.Close()
			sink := newHTTPSink(t, srv.URL, "app-1")
			err := sink.Send(context.Background(), []apimeter.Event{wireTestEvent()})
			if (err != nil) != tc.wantErr || attempts.Load() != tc.wantAttempts {
				t.Fatalf("err = %v after %d attempts; want error %v after %d", err, attempts.Load(), tc.wantErr, tc.wantAttempts)
			}
		})
	}
}

// TestHTTPSinkDoesNotSplitOnAuthErrors: a 401 or 404 refuses any batch
// (wrong application id or URL): the batch fails in one request, rather
// than being split into one request per event.
func TestHTTPSinkDoesNotSplitOnAuthErrors(t *testing.T) {
	for _, code := range []int{401, 403, 404} {
		var attempts atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(code)
		}))
		sink := newHTTPSink(t, srv.URL, "app-1")
		evs := make([]apimeter.Event, 10)
		for i := range evs {
			evs[i] = wireTestEvent()
		}
		err := sink.Send(context.Background(), evs)
		srv.Close()
		if err == nil || attempts.Load() != 1 {
			t.Fatalf("%d: err %v after %d requests; want the batch failed in 1", code, err, attempts.Load())
		}
	}
}

func TestHTTPSinkNetworkErrorsAreRetriedAndBounded(t *testing.T) {
	// A port that refuses connections: bind, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	bounded, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: "http://" + addr, ApplicationID: "app-1", MaxRetries: 3,
		Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = bounded.Send(context.Background(), []apimeter.Event{wireTestEvent()})
	if err == nil || !strings.Contains(err.Error(), "attempt 4") {
		t.Fatalf("err = %v, want a failure after 4 attempts", err)
	}
	sink := newHTTPSink(t, "http://"+addr, "app-1")
	// A cancelled context stops the retries at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sink.Send(ctx, []apimeter.Event{wireTestEvent()}); err == nil || !strings.Contains(err.Error(), "attempt 1") {
		t.Fatalf("err = %v, want a failure on the first attempt with a cancelled context", err)
	}
}

func wireTestEvent() apimeter.Event {
	now := time.Now()
	return apimeter.Event{ID: "e1", Method: "GET", URI: "http://x/y", RequestTime: now, ResponseTime: now, Status: 200, Weight: 1}
}

// Sinks that keep events (not BorrowingSinks) must get events that stay
// intact after the middleware reuses its buffers.
func TestRetainedEventsStayIntact(t *testing.T) {
	sink := &memSink{}
	c, err := capture.New(capture.Options{Sink: sink, LogBody: true, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	h := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", string(b))
		w.Write(b)
	}))
	const n = 200
	for i := range n {
		body := fmt.Sprintf("request-%03d-%s", i, strings.Repeat("p", i))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(body)))
	}
	closeCapture(t, c)
	evs := sink.all()
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		want := fmt.Sprintf("request-%03d-%s", i, strings.Repeat("p", i))
		if e.RequestBody.Text != want || e.ResponseBody.Text != want || e.ResponseHeaders.Get("X-Echo") != want {
			t.Fatalf("event %d: request body %.20q, response body %.20q, header %.20q; want %.20q", i, e.RequestBody.Text, e.ResponseBody.Text, e.ResponseHeaders.Get("X-Echo"), want)
		}
	}
}

func TestHTTPSinkCompressionLevels(t *testing.T) {
	col := startCollector(t)
	cases := []struct {
		name    string
		level   int
		wantErr bool
	}{
		{"zero is the default", 0, false},
		{"best speed", gzip.BestSpeed, false},
		{"best compression", gzip.BestCompression, false},
		{"Huffman only", gzip.HuffmanOnly, false},
		{"stateless", gzip.StatelessCompression, true},
		{"above 9", 10, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink, err := capture.NewHTTPSink(capture.HTTPSinkConfig{URL: col.URL, ApplicationID: col.AppID, CompressionLevel: tc.level})
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewHTTPSink: err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			ev := wireTestEvent()
			ev.ID = fmt.Sprintf("level-%d", i)
			ev.ResponseBody = apimeter.Body{Text: strings.Repeat(`{"k":"v"},`, 50)}
			if err := sink.Send(context.Background(), []apimeter.Event{ev}); err != nil {
				t.Fatalf("send: %v", err)
			}
			for _, e := range col.events(t) {
				if e.ID == ev.ID {
					if e.ResponseBody.Text != ev.ResponseBody.Text {
						t.Fatalf("stored body %.40q..., want %.40q...", e.ResponseBody.Text, ev.ResponseBody.Text)
					}
					return
				}
			}
			t.Fatalf("event %s not stored", ev.ID)
		})
	}
}
