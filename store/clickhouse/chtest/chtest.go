// Package chtest starts a real clickhouse-server for tests (package
// chserver: loopback only, its own configuration and data directory,
// non-default ports). One server serves a whole test binary (Shared); each
// test gets a database of its own (Database).
package chtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apimeter/apimeter/store/clickhouse/chserver"
)

// RequireEnv names the environment variable that turns a missing
// clickhouse-server from a skip into a failure (set in CI).
const RequireEnv = "APIMETER_REQUIRE_CLICKHOUSE"

// ErrNoBinary is returned by Start when clickhouse-server is not installed.
var ErrNoBinary = chserver.ErrNoBinary

// Server is a running clickhouse-server (chserver.Server).
type Server = chserver.Server

// Start starts clickhouse-server with its data in dir and waits until it
// answers (chserver.Start).
func Start(ctx context.Context, dir string) (*Server, error) { return chserver.Start(ctx, dir) }

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedDir  string
	dbSeq      atomic.Int64
)

// Shared returns the test binary's server, starting it on first use. When
// none can be started it skips t, or fails it when RequireEnv is set.
// Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "apimeter-clickhouse-")
		if sharedErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		shared, sharedErr = Start(ctx, sharedDir)
	})
	if sharedErr != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("clickhouse: %v (%s is set, so this is a failure, not a skip)", sharedErr, RequireEnv)
		}
		t.Skipf("clickhouse: %v; skipping (set %s=1 to fail instead)", sharedErr, RequireEnv)
	}
	return shared
}

// Database returns a fresh database name on the shared server for t.
func Database(t testing.TB) string {
	return fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
}

// StopShared stops the shared server, if one was started, and removes its
// directory.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}
