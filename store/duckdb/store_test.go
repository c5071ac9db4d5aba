package duckdb

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/apimeter/apimeter"
	"github.com/apimeter/apimeter/store/storetest"
)

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func(t *testing.T) apimeter.Store {
		path := filepath.Join(t.TempDir(), "events.duckdb")
		return func(t *testing.T) apimeter.Store {
			st, err := Open(context.Background(), path, Options{DailyInterval: -1})
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			return st
		}
	})
}
