package instance

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/apimeter/apimeter/server"
)

// TestShutdownStopsRunningQuery: a read query of hours running under the
// server's query bounds (a one-hour timeout) when the instance closes is
// stopped by the shutdown, answered shutting_down, and Close returns:
// before, the HTTP shutdown waited on it and the store's Close on its
// connection. The 60 s guard only turns a hang into a failure.
func TestShutdownStopsRunningQuery(t *testing.T) {
	f := Config{Listen: "127.0.0.1:0", Data: filepath.Join(t.TempDir(), "data"), BodyCap: 1024, MaxBodyBytes: 1 << 20,
		MaxBatchEvents: 100, DedupeHorizon: time.Hour, DailyInterval: -1, StatsConfig: StatsConfig{QueryTimeout: time.Hour}}
	in, err := Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	q := in.Srv.Queries()
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		ctx, cancel := q.Context(context.Background())
		defer cancel()
		close(started)
		var v any
		err := in.Store.DB().QueryRowContext(ctx, "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000000) b").Scan(&v)
		result <- q.Err(ctx, err)
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- in.Close() }()
	select {
	case err := <-result:
		var ae *server.APIError
		if !errors.As(err, &ae) || ae.Code != "shutting_down" {
			t.Errorf("the running query ended with %v, want shutting_down", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the running query was not stopped by the shutdown")
	}
	select {
	case <-closed:
	case <-time.After(60 * time.Second):
		t.Fatal("Close did not return")
	}
}
