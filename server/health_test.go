package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/server"
)

// TestReadyzNamesWhatFails: /readyz is 503 with Retry-After and names the
// failing check and its error while /healthz stays 200.
func TestReadyzNamesWhatFails(t *testing.T) {
	e := newEnv(t, server.Config{Ready: []server.ReadyCheck{
		{Name: "store", Check: func(context.Context) error { return nil }},
		{Name: "redis", Check: func(context.Context) error { return errors.New("dial tcp 127.0.0.1:6379: connection refused") }},
	}})
	resp, err := http.Get(e.http.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("/readyz: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, want := range []string{`"redis":"dial tcp 127.0.0.1:6379: connection refused"`, `"store":"ok"`, `"code":"not_ready"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("/readyz body %s lacks %s", b, want)
		}
	}
	resp, err = http.Get(e.http.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d, want 200 (the process is up)", resp.StatusCode)
	}
}

// lines is a slog handler that keeps what is logged.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestRejectedBatchesLoggedOncePerSender: a sender repeating a bad batch
// is logged at warn level with its app and org, once per interval, not once
// per batch.
func TestRejectedBatchesLoggedOncePerSender(t *testing.T) {
	var out lines
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := newEnv(t, server.Config{Logger: log})
	for range 50 {
		if code, _ := e.post("/v1/events/batch", []byte(`[{"request":{"verb":"GET"},`)); code != 400 {
			t.Fatalf("bad batch: %d, want 400", code)
		}
	}
	got := strings.Count(out.String(), "batch rejected")
	if got != 1 {
		t.Fatalf("50 identical bad batches logged %d lines, want 1:\n%s", got, out.String())
	}
	for _, want := range []string{"level=WARN", "app=" + apps.ShortID(e.appID), "org=acme", "env=prod", "reason=malformed_json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log line lacks %s:\n%s", want, out.String())
		}
	}
}

// TestLogsNeverPrintTheApplicationID: the application id is a write
// credential; a rejected batch's log line names the app by a short piece of
// its id only.
func TestLogsNeverPrintTheApplicationID(t *testing.T) {
	var out lines
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, server.Config{Logger: log})
	if code, _ := e.post("/v1/events/batch", []byte(`[{"request":{"verb":"GET"}}]`)); code != 400 {
		t.Fatalf("bad batch: %d, want 400", code)
	}
	if !strings.Contains(out.String(), "batch rejected") {
		t.Fatalf("no log line for a rejected batch:\n%s", out.String())
	}
	if strings.Contains(out.String(), e.appID) || strings.Contains(out.String(), e.appID[strings.LastIndexByte(e.appID, '.')+1:][:12]) {
		t.Errorf("the log holds the application id (or a long piece of it):\n%s", out.String())
	}
}
