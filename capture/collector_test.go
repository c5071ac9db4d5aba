package capture_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/apps"
	"github.com/apimeter/apimeter/scrub"
	"github.com/apimeter/apimeter/server"
	"github.com/apimeter/apimeter/store/duckdb"
)

// collector is a real apimeter collector (server.New on a DuckDB file) on a
// loopback port. It keeps the decoded bytes of every batch it received, so
// tests can check what left the capturing process.
type collector struct {
	URL   string
	AppID string
	App   apps.App
	Store *duckdb.Store

	mu  sync.Mutex
	raw [][]byte
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	app, err := apps.Create(dir, "acme", "prod")
	if err != nil {
		t.Fatalf("create app: %v", err)
	}
	reg, err := apps.Open(dir)
	if err != nil {
		t.Fatalf("open apps: %v", err)
	}
	st, err := duckdb.Open(ctx, filepath.Join(dir, "events.duckdb"), duckdb.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	srv := server.New(server.Config{Store: st, Apps: reg, Scrubber: scrub.New(nil, nil, -1)})
	c := &collector{AppID: app.ID, App: app, Store: st}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw := b
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err == nil {
				raw, err = io.ReadAll(zr)
			}
			if err != nil {
				http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		c.mu.Lock()
		c.raw = append(c.raw, raw)
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		srv.ServeHTTP(w, r)
	}))
	c.URL = hs.URL
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	return c
}

// rawPayload is everything the collector received, decoded.
func (c *collector) rawPayload() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.raw, []byte("\n"))
}

func (c *collector) events(t *testing.T) []apimeter.Event {
	t.Helper()
	evs, err := c.Store.Events(context.Background(), apimeter.EventFilter{Org: c.App.Org, Env: c.App.Env, Limit: 1000})
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	return evs
}

// hangingCollector accepts connections and never answers until released.
type hangingCollector struct {
	URL     string
	release chan struct{}
	once    sync.Once
}

func startHangingCollector(t *testing.T) *hangingCollector {
	t.Helper()
	h := &hangingCollector{release: make(chan struct{})}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	h.URL = hs.URL
	t.Cleanup(func() {
		h.Release()
		hs.Close()
	})
	return h
}

func (h *hangingCollector) Release() { h.once.Do(func() { close(h.release) }) }

func closeCapture(t *testing.T, c interface{ Close(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close capture: %v", err)
	}
}

// newDiscardServer is a loopback collector that reads and discards batches.
func newDiscardServer(tb testing.TB) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(hs.Close)
	return hs.URL
}
