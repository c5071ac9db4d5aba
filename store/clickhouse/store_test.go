package clickhouse

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/clickhouse/chtest"
	"github.com/apimeter/apimeter/store/storetest"
)

// TestMain shares one clickhouse-server among the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	chtest.StopShared()
	os.Exit(code)
}

// openTest opens a store on a fresh database of the shared server.
func openTest(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	dsn := chtest.Shared(t).DSN(chtest.Database(t))
	st, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st, dsn
}

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(t *testing.T) apimeter.Store {
		dsn := chtest.Shared(t).DSN(chtest.Database(t))
		return func(t *testing.T) apimeter.Store {
			st, err := Open(context.Background(), dsn, Options{})
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			return st
		}
	})
}

func TestRetentionSuite(t *testing.T) {
	storetest.RunRetention(t, func(t *testing.T, retention time.Duration) (apimeter.Store, func(time.Time) error) {
		st, err := Open(context.Background(), chtest.Shared(t).DSN(chtest.Database(t)), Options{Retention: retention, RetentionInterval: time.Hour})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		return st, func(now time.Time) error { _, err := st.DropExpired(context.Background(), now); return err }
	})
}
